package deploycheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// documentedMetrics are the metrics the README documents (Operations,
// Metrics), with their type: the dashboard shows each of them. They must
// match webhook/metrics.go and notifier/metrics.go; TestDefinedMetrics
// checks that they do.
var documentedMetrics = map[string]string{
	"followpush_webhooks_total":            "Counter",
	"followpush_webhook_duration_seconds":  "Histogram",
	"followpush_follows_total":             "Counter",
	"followpush_enqueue_duration_seconds":  "Histogram",
	"followpush_device_api_requests_total": "Counter",
	"followpush_tasks_total":               "Counter",
	"followpush_pushes_total":              "Counter",
	"followpush_tokens_deleted_total":      "Counter",
	"followpush_tokens_kept_total":         "Counter",
	"followpush_push_delay_seconds":        "Histogram",
}

// metricSources are the files that define followpush's metrics.
var metricSources = []string{"webhook/metrics.go", "notifier/metrics.go"}

// metricDefRE finds a metric definition: the Name of a prometheus
// CounterOpts / GaugeOpts / HistogramOpts / SummaryOpts literal.
var metricDefRE = regexp.MustCompile(`(Counter|Gauge|Histogram|Summary)Opts\{\s*Name:\s*"(followpush_[a-z_]+)"`)

// metricRefRE finds a metric referenced by a query.
var metricRefRE = regexp.MustCompile(`followpush_[a-z_]+`)

// definedMetrics returns the metric names defined in the sources with
// their type (Counter, Histogram, ...).
func definedMetrics(t *testing.T) map[string]string {
	t.Helper()
	metrics := map[string]string{}
	for _, f := range metricSources {
		b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		ms := metricDefRE.FindAllSubmatch(b, -1)
		if len(ms) == 0 {
			t.Fatalf("%s: found no metric definitions (has the code changed shape? update metricDefRE)", f)
		}
		for _, m := range ms {
			metrics[string(m[2])] = string(m[1])
		}
	}
	return metrics
}

// checkMetricRefs checks every followpush_ name in text: it must be a
// defined metric, a histogram's _bucket/_sum/_count series, never a bare
// histogram name nor a counter with histogram suffixes. It returns the
// metrics referenced.
func checkMetricRefs(where, text string, defined map[string]string) (map[string]bool, []error) {
	var errs []error
	used := map[string]bool{}
	for _, ref := range metricRefRE.FindAllString(text, -1) {
		name, suffix := ref, ""
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(ref, s); ok {
				if _, def := defined[base]; def {
					name, suffix = base, s
				}
			}
		}
		kind, ok := defined[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: %s is not a followpush metric (%s)", where, ref, strings.Join(metricSources, ", ")))
		case kind == "Histogram" && suffix == "":
			errs = append(errs, fmt.Errorf("%s: %s is a histogram: query %s_bucket, _sum or _count", where, ref, ref))
		case kind != "Histogram" && suffix != "":
			errs = append(errs, fmt.Errorf("%s: %s: %s is a %s, it has no %s series", where, ref, name, kind, suffix))
		}
		used[name] = true
	}
	return used, errs
}

// checkExpr does the sanity checks a PromQL expression can get without a
// PromQL parser: brackets and quotes balance.
func checkExpr(where, expr string) error {
	if strings.TrimSpace(expr) == "" {
		return fmt.Errorf("%s: empty expr", where)
	}
	var stack []byte
	pairs := map[byte]byte{')': '(', ']': '[', '}': '{'}
	inQuote := byte(0)
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case inQuote != 0:
			if c == '\\' {
				i++
			} else if c == inQuote {
				inQuote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			inQuote = c
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pairs[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return fmt.Errorf("%s: unbalanced %q in %q", where, c, expr)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inQuote != 0 || len(stack) > 0 {
		return fmt.Errorf("%s: unclosed quote or bracket in %q", where, expr)
	}
	return nil
}

// ruleFile is a Prometheus rule file; decoded strictly, so a misspelt key
// fails.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var alertNameRE = regexp.MustCompile(`^Followpush[A-Z][A-Za-z0-9]+$`)

// checkAlerts checks deploy/prometheus/alerts.yaml.
func checkAlerts(b []byte, defined map[string]string) []error {
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		return []error{fmt.Errorf("alerts.yaml: %v", err)}
	}
	var errs []error
	if len(rf.Groups) == 0 {
		errs = append(errs, fmt.Errorf("alerts.yaml: no groups"))
	}
	names := map[string]bool{}
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			errs = append(errs, fmt.Errorf("alerts.yaml: group name %q empty or repeated", g.Name))
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			errs = append(errs, fmt.Errorf("alerts.yaml: group %s has no rules", g.Name))
		}
		for i, r := range g.Rules {
			where := fmt.Sprintf("alerts.yaml %s rule %d (%s)", g.Name, i+1, r.Alert)
			if r.Record != "" || r.Alert == "" {
				errs = append(errs, fmt.Errorf("%s: want an alerting rule (alert, no record)", where))
			}
			if !alertNameRE.MatchString(r.Alert) || names[r.Alert] {
				errs = append(errs, fmt.Errorf("%s: alert name must be unique and look like FollowpushSomething", where))
			}
			names[r.Alert] = true
			if err := checkExpr(where, r.Expr); err != nil {
				errs = append(errs, err)
			}
			used, merrs := checkMetricRefs(where, r.Expr, defined)
			errs = append(errs, merrs...)
			if len(used) == 0 {
				errs = append(errs, fmt.Errorf("%s: expr uses no followpush metric", where))
			}
			if r.For == "" {
				errs = append(errs, fmt.Errorf("%s: no for (use 0m to fire at once, deliberately)", where))
			} else if _, err := time.ParseDuration(r.For); err != nil {
				errs = append(errs, fmt.Errorf("%s: for %q: %v", where, r.For, err))
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				errs = append(errs, fmt.Errorf("%s: labels.severity %q, want critical, warning or info", where, r.Labels["severity"]))
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					errs = append(errs, fmt.Errorf("%s: no annotations.%s", where, a))
				}
			}
		}
	}
	return errs
}

type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

// checkDashboard checks deploy/grafana/followpush.json: it parses, every
// panel but rows queries something, the queries use defined metrics, and
// every documented metric is on the dashboard.
func checkDashboard(b []byte, defined map[string]string) []error {
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return []error{fmt.Errorf("followpush.json: %v", err)}
	}
	var errs []error
	if d.Title == "" || d.UID == "" {
		errs = append(errs, fmt.Errorf("followpush.json: no title or uid"))
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("followpush.json panel %d %q", p.ID, p.Title)
			if ids[p.ID] {
				errs = append(errs, fmt.Errorf("%s: id repeated", where))
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" {
				errs = append(errs, fmt.Errorf("%s: no title", where))
			}
			if len(p.Targets) == 0 {
				errs = append(errs, fmt.Errorf("%s: no targets", where))
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] {
					errs = append(errs, fmt.Errorf("%s: refId %q repeated", where, tg.RefID))
				}
				refs[tg.RefID] = true
				if err := checkExpr(where, tg.Expr); err != nil {
					errs = append(errs, err)
					continue
				}
				u, merrs := checkMetricRefs(where, tg.Expr, defined)
				errs = append(errs, merrs...)
				for m := range u {
					used[m] = true
				}
			}
		}
	}
	walk(d.Panels)
	for _, m := range slices.Sorted(maps.Keys(documentedMetrics)) {
		if !used[m] {
			errs = append(errs, fmt.Errorf("followpush.json: no panel shows %s", m))
		}
	}
	return errs
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	report(t, checkAlerts(readDeployFiles(t)["prometheus/alerts.yaml"], definedMetrics(t)))
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	report(t, checkDashboard(readDeployFiles(t)["grafana/followpush.json"], definedMetrics(t)))
}

// TestDefinedMetrics makes sure the metric scan of the sources finds the
// documented metrics with their types, so the checks above are not vacuous
// and documentedMetrics is not stale.
func TestDefinedMetrics(t *testing.T) {
	t.Parallel()
	defined := definedMetrics(t)
	for _, name := range slices.Sorted(maps.Keys(documentedMetrics)) {
		if got, want := defined[name], documentedMetrics[name]; got != want {
			t.Errorf("metric scan of %v: %s is %q, want %s", metricSources, name, got, want)
		}
	}
}
