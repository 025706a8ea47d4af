package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// latencyStats are nearest-rank percentiles of a set of durations, in
// milliseconds.
type latencyStats struct {
	N     int     `json:"n"`
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Hist counts samples up to each bound in ms (the last bucket: above).
	Hist map[string]int `json:"hist,omitempty"`
}

var histBounds = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}

func latencies(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	slices.Sort(d)
	rank := func(q float64) float64 {
		i := int(q*float64(len(d))+0.999999) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	hist := map[string]int{}
	for _, x := range d {
		label := fmt.Sprintf(">%g", histBounds[len(histBounds)-1])
		for _, b := range histBounds {
			if ms(x) <= b {
				label = fmt.Sprintf("≤%g", b)
				break
			}
		}
		hist[label]++
	}
	return latencyStats{N: len(d), P50ms: rank(0.50), P90ms: rank(0.90), P99ms: rank(0.99), MaxMs: ms(d[len(d)-1]), Hist: hist}
}

func (l latencyStats) String() string {
	if l.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s / p99 %s / max %s ms", num(l.P50ms), num(l.P99ms), num(l.MaxMs))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// num formats a figure with about three significant digits.
func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100 || v <= -100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10 || v <= -10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1 || v <= -1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// row is one line of the results table.
type row struct {
	Section  string `json:"section"`
	Figure   string `json:"figure"`
	Value    string `json:"value"`
	Baseline string `json:"baseline,omitempty"`
	Ratio    string `json:"ratio,omitempty"`
	Target   string `json:"target,omitempty"`
	Verdict  string `json:"verdict,omitempty"` // "met", "MISSED" or "" (no target)
	// Others is the most CPU (cores) other processes on the machine used
	// during the phases behind this figure: above ~0.3 the figure is noisy.
	Others string         `json:"others_cores,omitempty"`
	Data   map[string]any `json:"data,omitempty"`
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// phaseRecord is the detail of one measured phase, for the JSON output.
type phaseRecord struct {
	Name      string             `json:"name"`
	Spec      *loadSpec          `json:"spec,omitempty"`
	Load      *loadStats         `json:"load,omitempty"`
	Delivery  *delivery          `json:"delivery,omitempty"`
	Workers   int                `json:"workers,omitempty"`
	SinkMs    float64            `json:"sink_latency_ms,omitempty"`
	Cores     map[string]float64 `json:"cores,omitempty"` // CPU cores used per process during the phase
	SinkConns int64              `json:"sink_connections,omitempty"`
	// RedisCalls are Redis commands per task (per follow) in the phase.
	RedisCalls     map[string]float64 `json:"redis_calls_per_task,omitempty"`
	RedisCallsText string             `json:"-"`
	Extra          map[string]any     `json:"extra,omitempty"`
}

// machine describes where the figures were taken.
type machine struct {
	CPUs         int    `json:"cpus"`
	CPUModel     string `json:"cpu_model"`
	MemTotal     string `json:"mem_total"`
	Kernel       string `json:"kernel"`
	Go           string `json:"go"`
	Redis        string `json:"redis"`
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvgStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// report is everything one run measured.
type report struct {
	Command     string         `json:"command"`
	Scenario    string         `json:"scenario"`
	Started     time.Time      `json:"started"`
	Duration    string         `json:"duration"`
	Machine     machine        `json:"machine"`
	Settings    map[string]any `json:"settings"`
	Rows        []row          `json:"rows"`
	Phases      []phaseRecord  `json:"phases"`
	LogProblems []logProblem   `json:"log_problems"`
	Failures    []string       `json:"failures"`

	noise float64 // max "others" cores since markNoise
}

// markNoise starts a new group of phases for the Others column.
func (r *report) markNoise() { r.noise = 0 }

func (r *report) add(x row) {
	if x.Section != "cost" && x.Section != "correctness" && x.Others == "" {
		x.Others = fmt.Sprintf("%.2f", r.noise)
	}
	r.Rows = append(r.Rows, x)
}

func (r *report) phase(p phaseRecord) {
	r.noise = max(r.noise, p.Cores["others"])
	r.Phases = append(r.Phases, p)
}

func (r *report) fail(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// print writes the human-readable report.
func (r *report) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nfollowpush load test: scenario %s, %s\n", r.Scenario, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s RAM, Linux %s, %s, redis %s; load average %s at start, %s at end\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.Go, m.Redis, m.LoadAvgStart, m.LoadAvgEnd)
	fmt.Fprintf(w, "command: %s\n", r.Command)
	fmt.Fprintf(w, "took %s\n\n", r.Duration)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tFIGURE\tVALUE\tBASELINE (same run)\tRATIO\tTARGET\tRESULT\tOTHERS")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Section, x.Figure, x.Value, dash(x.Baseline), dash(x.Ratio), dash(x.Target), dash(x.Verdict), dash(x.Others))
	}
	tw.Flush()
	fmt.Fprintln(w, "OTHERS: the most CPU cores other processes on the machine used during the phases behind a figure (shared machine noise).")
	fmt.Fprintln(w, "\nCPU cores used per process during each phase (2.0 = both cores of a 2-core machine):")
	for _, p := range r.Phases {
		if len(p.Cores) == 0 {
			continue
		}
		names := make([]string, 0, len(p.Cores))
		for n := range p.Cores {
			names = append(names, n)
		}
		slices.Sort(names)
		var parts []string
		total := 0.0
		for _, n := range names {
			if n == "others" {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", n, p.Cores[n]))
			total += p.Cores[n]
		}
		if o, ok := p.Cores["others"]; ok {
			parts = append(parts, fmt.Sprintf("(ours %.2f; other processes on the machine %.2f)", total, o))
		}
		extra := ""
		if p.SinkConns > 0 {
			extra = fmt.Sprintf("; sink accepted %d TCP connections", p.SinkConns)
		}
		fmt.Fprintf(w, "  %-40s %s%s\n", p.Name+":", strings.Join(parts, ", "), extra)
	}
	fmt.Fprintln(w, "\nRedis commands per task (follow) during each phase (commands run inside Lua scripts included):")
	for _, p := range r.Phases {
		if p.RedisCallsText != "" {
			fmt.Fprintf(w, "  %-40s %s\n", p.Name+":", p.RedisCallsText)
		}
	}
	if len(r.LogProblems) > 0 {
		fmt.Fprintln(w, "\nwarnings and errors the programs logged (program level msg: count):")
		for i, p := range r.LogProblems {
			if i == 20 {
				fmt.Fprintf(w, "  ... %d more kinds\n", len(r.LogProblems)-i)
				break
			}
			fmt.Fprintf(w, "  %s: %d\n", p.Line, p.Count)
		}
	}
	if len(r.Failures) > 0 {
		fmt.Fprintln(w, "\nCORRECTNESS FAILURES:")
		for _, f := range r.Failures {
			fmt.Fprintln(w, "  "+f)
		}
	} else {
		webhooks := "every webhook was answered 200 OK"
		for _, x := range r.Rows {
			if strings.HasSuffix(x.Figure, "webhooks not answered 200 OK") {
				webhooks = "some webhooks were not answered 200 OK (see the table)"
			}
		}
		fmt.Fprintln(w, "\ncorrectness: every checked follow produced exactly one push; "+webhooks)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
