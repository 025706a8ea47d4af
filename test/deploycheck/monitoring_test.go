package deploycheck

import (
	"context"
	"fmt"
	"go/ast"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/followpush/followpush/internal/queuemetrics"
	"github.com/followpush/followpush/internal/testrig/gosource"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

// documentedMetrics are followpush's own metrics with their types, as
// docs/operations.md documents them (Metrics). TestDefinedMetrics checks that they
// are exactly the metrics the files of MetricSources define, so that the
// scan is not vacuous and this list is not stale.
var documentedMetrics = map[string]string{
	"followpush_webhooks_total":                  "counter",
	"followpush_webhook_duration_seconds":        "histogram",
	"followpush_follows_total":                   "counter",
	"followpush_enqueue_duration_seconds":        "histogram",
	"followpush_device_api_requests_total":       "counter",
	"followpush_preference_api_requests_total":   "counter",
	"followpush_spool_depth":                     "gauge",
	"followpush_spool_bytes":                     "gauge",
	"followpush_tasks_total":                     "counter",
	"followpush_pushes_total":                    "counter",
	"followpush_tokens_deleted_total":            "counter",
	"followpush_tokens_kept_total":               "counter",
	"followpush_push_delay_seconds":              "histogram",
	"followpush_digests_total":                   "counter",
	"followpush_digest_followers":                "histogram",
	"followpush_rate_limited_total":              "counter",
	"followpush_sender_id_mismatch_breaker_open": "gauge",
	"followpush_history_write_failures_total":    "counter",
	"followpush_history_api_requests_total":      "counter",
}

// valueLabels are the labels whose values come from string constants in
// the code; a query matching result="unavailabel" would never fire.
var valueLabels = []string{"result", "outcome", "reason"}

// labelValuePackages are, per metric source file, the packages whose
// string literals are the values of valueLabels (notifier's task results
// include delivery's verdicts).
var labelValuePackages = map[string][]string{
	"webhook/metrics.go":  {"webhook"},
	"devices/api.go":      {"devices"},
	"preferences/api.go":  {"preferences"},
	"notifier/metrics.go": {"notifier", "delivery", "notifier/fcm"},
	"history/metrics.go":  {"history"},
}

// Every file of the module that defines a metric is in MetricSources, so
// a metric defined in a new place is checked like the others.
func TestMetricSourcesComplete(t *testing.T) {
	t.Parallel()
	listed := map[string]bool{}
	for _, f := range MetricSources {
		listed[f] = true
	}
	found := 0
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			// tools/ are modules of their own; test/ holds test suites.
			if rel == "tools" || rel == "test" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if regexp.MustCompile(`prometheus\.(Counter|Gauge|Histogram|Summary)Opts\{`).Match(b) {
			found++
			if !listed[rel] {
				t.Errorf("%s defines metrics but is not in MetricSources", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < len(MetricSources) {
		t.Errorf("found %d files defining metrics, MetricSources lists %d", found, len(MetricSources))
	}
}

// stringLiterals returns every string literal in the non-test Go files of
// the package directory dir (relative to the module root).
func stringLiterals(t *testing.T, dir string) map[string]bool {
	t.Helper()
	lits := map[string]bool{}
	gosource.Inspect(t, filepath.Join(repoRoot, dir), func(n ast.Node) bool {
		if b, ok := n.(*ast.BasicLit); ok && b.Kind == token.STRING {
			if s, err := strconv.Unquote(b.Value); err == nil {
				lits[s] = true
			}
		}
		return true
	})
	return lits
}

// followpushSchema returns followpush's own metrics as the code defines
// them, with the values of valueLabels taken from the code's constants.
func followpushSchema(t *testing.T) Schema {
	t.Helper()
	s, err := SourceMetrics(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	lits := map[string]map[string]bool{}
	for src, pkgs := range labelValuePackages {
		lits[src] = map[string]bool{}
		for _, p := range pkgs {
			maps.Copy(lits[src], stringLiterals(t, p))
		}
	}
	for name, m := range s {
		m.Values = map[string]map[string]bool{}
		for _, l := range valueLabels {
			if m.Labels[l] {
				if lits[m.Source] == nil {
					t.Fatalf("%s is defined in %s: add it to labelValuePackages", name, m.Source)
				}
				m.Values[l] = lits[m.Source]
			}
		}
		s[name] = m
	}
	return s
}

// asynqSchema returns the queue metrics the workers export, as the real
// collector (app.RegisterQueueMetrics) exports them from a real Redis
// holding one task of queue follow and one of a shard queue (tasks.Shards):
// names, types, labels, and the values of queue and state.
func asynqSchema(t *testing.T) Schema {
	t.Helper()
	srv := redistest.Start(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: srv.Addr()})
	defer client.Close()
	task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.EnqueueContext(ctx, task); err != nil {
		t.Fatal(err)
	}
	// And one in a shard of FOLLOW_QUEUE_SHARDS=6: queries must cover both.
	if _, err := client.EnqueueContext(ctx, task, asynq.Queue(tasks.ShardQueue(0, 6))); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	queuemetrics.Register(reg, srv.Client(t))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	s := SchemaFromFamilies(mfs)
	if len(s) < 5 {
		t.Fatalf("asynq's collector exported only %v", slices.Sorted(maps.Keys(s)))
	}
	for name := range s {
		if !strings.HasPrefix(name, "asynq_") {
			t.Fatalf("asynq's collector exported %s", name)
		}
	}
	return s
}

// deploySchema is every metric a query in deploy/ may use: followpush's
// own and asynq's queue metrics.
func deploySchema(t *testing.T) Schema {
	t.Helper()
	return followpushSchema(t).Merge(asynqSchema(t))
}

// checkAlerts checks deploy/prometheus/alerts.yaml: structure, and every
// query against schema.
func checkAlerts(b []byte, schema Schema) []error {
	rf, err := ParseRules(b)
	if err != nil {
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
			used, qerrs := CheckQuery(Query{Where: where, Expr: r.Expr}, schema)
			errs = append(errs, qerrs...)
			errs = append(errs, checkNotDeprecated(where, used)...)
			if len(qerrs) == 0 && len(used) == 0 {
				errs = append(errs, fmt.Errorf("%s: expr uses no metric", where))
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

var alertNameRE = regexp.MustCompile(`^Followpush[A-Z][A-Za-z0-9]+$`)

// checkDashboard checks deploy/grafana/followpush.json: it parses, panel
// ids are unique, every panel but rows queries something, the queries use
// schema's metrics and labels, and every metric of schema is on a panel.
func checkDashboard(b []byte, schema Schema) []error {
	d, err := ParseDashboard(b)
	if err != nil {
		return []error{fmt.Errorf("followpush.json: %v", err)}
	}
	var errs []error
	if d.Title == "" || d.UID == "" {
		errs = append(errs, fmt.Errorf("followpush.json: no title or uid"))
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]Panel)
	walk = func(ps []Panel) {
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
				u, qerrs := CheckQuery(Query{Where: where, Expr: tg.Expr}, schema)
				errs = append(errs, qerrs...)
				errs = append(errs, checkNotDeprecated(where, u)...)
				maps.Copy(used, u)
			}
		}
	}
	walk(d.Panels)
	deprecated := queuemetrics.DeprecatedQueueMetrics()
	for _, m := range slices.Sorted(maps.Keys(schema)) {
		if !used[m] && deprecated[m] == "" {
			errs = append(errs, fmt.Errorf("followpush.json: no panel shows %s", m))
		}
	}
	return errs
}

// checkNotDeprecated reports the metrics of used that are exported only
// for old rules and dashboards (app.DeprecatedQueueMetrics).
func checkNotDeprecated(where string, used map[string]bool) []error {
	var errs []error
	for old, name := range queuemetrics.DeprecatedQueueMetrics() {
		if used[old] {
			errs = append(errs, fmt.Errorf("%s: uses %s, exported only for old rules (untyped); use %s", where, old, name))
		}
	}
	return errs
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	report(t, checkAlerts(readDeployFiles(t)[AlertsFile], deploySchema(t)))
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	report(t, checkDashboard(readDeployFiles(t)[DashboardFile], deploySchema(t)))
}

// TestDefinedMetrics: the scan of the sources finds exactly the documented
// metrics, with their types, and every label value the scan takes from
// the code includes the values the alerts rely on.
func TestDefinedMetrics(t *testing.T) {
	t.Parallel()
	s := followpushSchema(t)
	got := map[string]string{}
	for name, m := range s {
		got[name] = m.Type
	}
	if d := cmp.Diff(documentedMetrics, got); d != "" {
		t.Errorf("metrics defined in %v (-documentedMetrics +defined):\n%s", MetricSources, d)
	}
	for _, c := range []struct{ metric, label, value string }{
		{"followpush_webhooks_total", "result", "unavailable"},
		{"followpush_pushes_total", "outcome", "quota_exceeded"},
		{"followpush_tasks_total", "result", "stale"},
	} {
		if !s[c.metric].Values[c.label][c.value] {
			t.Errorf("%s{%s}: the code's constants lack %q: the value scan is broken", c.metric, c.label, c.value)
		}
	}
}

// TestQueryChecks proves the checks of CheckQuery can fail, on queries
// small enough to show exactly what each catches.
func TestQueryChecks(t *testing.T) {
	t.Parallel()
	s := Schema{
		"a_total": {Type: "counter", Labels: map[string]bool{"result": true}, Values: map[string]map[string]bool{"result": {"ok": true, "bad": true}}},
		"h":       {Type: "histogram", Labels: map[string]bool{"command": true}},
		"q":       {Type: "gauge", Labels: map[string]bool{"queue": true}},
	}
	tests := []struct {
		expr, want string // want "" = no error
	}{
		{`sum by (result) (rate(a_total{result=~"ok|bad"}[5m]))`, ""},
		{`histogram_quantile(0.99, sum by (le, command) (rate(h_bucket[$__rate_interval])))`, ""},
		{`sum(rate(h_sum[5m])) / sum(rate(h_count[5m]))`, ""},
		{`max by (queue) (q{queue="follow"}) > 60 and on (queue) q offset 5m`, ""},
		{`up{job=~"x-.*"} == 0`, ""},
		{`absent(up{job="x"} == 1)`, ""},
		{`sum(rate(a_totl[5m]))`, "a_totl is not an exported metric"},
		{`sum(rate(h[5m]))`, "h is a histogram"},
		{`sum(rate(a_total_count[5m]))`, "it has no _count series"},
		{`sum(rate(a_total{outcome="ok"}[5m]))`, "a_total has no label outcome"},
		{`sum(rate(a_total{result="unknown"}[5m]))`, `"unknown" is not a value of result`},
		{`sum(rate(a_total{result=~"ok|bda"}[5m]))`, `"bda" is not a value of result`},
		{`sum by (reslt) (rate(a_total[5m]))`, "groups by reslt"},
		{`sum(rate(a_total[5m])`, "unclosed"},
		{`sum(rate(a_total{result="ok}[5m]))`, "unterminated string"},
		{``, "empty expression"},
	}
	for _, tt := range tests {
		_, errs := CheckQuery(Query{Where: "test", Expr: tt.expr}, s)
		switch {
		case tt.want == "" && len(errs) > 0:
			t.Errorf("%s: unexpected errors %v", tt.expr, errs)
		case tt.want != "" && !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tt.want) }):
			t.Errorf("%s: want an error containing %q, got %v", tt.expr, tt.want, errs)
		}
	}
}

// OperationsDoc is the operations guide, relative to the repository
// root: its "Metrics" section names every metric, and its "Runbook" has a
// section for every alert, which the alert's runbook_url links to.
const OperationsDoc = "docs/operations.md"

// RunbookURL is where every alert's runbook_url points, followed by "#"
// and the anchor of the alert's own section of [OperationsDoc]: that file
// on the project's home (the module path's repository).
const RunbookURL = "https://github.com/followpush/followpush/blob/main/" + OperationsDoc

// readOperationsDoc returns the text of [OperationsDoc].
func readOperationsDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, OperationsDoc))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docSection returns the "## <title>" section of a Markdown text, up to
// the next "## " heading (its "### " subsections included).
func docSection(t *testing.T, text, title string) string {
	t.Helper()
	start := strings.Index(text, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("%s has no ## %s section", OperationsDoc, title)
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	return text
}

var metricMentionRE = regexp.MustCompile("`((?:followpush|asynq)_[a-z_]+)(\\{([a-z_,]*)\\})?")

// TestOperationsDocMetrics checks the Metrics section of docs/operations.md
// against the metrics the programs export: every metric it names exists,
// with exactly the labels it gives in braces, and every metric is named
// there.
func TestOperationsDocMetrics(t *testing.T) {
	t.Parallel()
	report(t, checkMetricsDoc(docSection(t, readOperationsDoc(t), "Metrics"), deploySchema(t)))
}

func checkMetricsDoc(text string, s Schema) []error {
	var errs []error
	seen := map[string]bool{}
	for _, m := range metricMentionRE.FindAllStringSubmatch(text, -1) {
		name := m[1]
		metric, ok := s[name]
		if !ok {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(name, suf); cut && s[base].Type == "histogram" {
					name, metric, ok = base, s[base], true
				}
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s Metrics names %s, which no program exports", OperationsDoc, m[1]))
			continue
		}
		seen[name] = true
		if m[2] == "" {
			continue
		}
		var labels []string
		if m[3] != "" {
			labels = strings.Split(m[3], ",")
		}
		slices.Sort(labels)
		if want := slices.Sorted(maps.Keys(metric.Labels)); !slices.Equal(labels, want) {
			errs = append(errs, fmt.Errorf("%s Metrics: %s{%s}, but its labels are {%s}", OperationsDoc, m[1], m[3], strings.Join(want, ",")))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s)) {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("%s Metrics does not name %s", OperationsDoc, name))
		}
	}
	return errs
}

var headingRE = regexp.MustCompile(`(?m)^(#{1,6}) +(.+?) *#*$`)

// anchors returns the anchor of every heading of a Markdown text, as
// GitHub makes them: lower case, punctuation but '-' and '_' dropped,
// spaces turned into '-', and "-1", "-2", ... added to repeats; mapped to
// the heading's text.
func anchors(text string) map[string]string {
	out := map[string]string{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		m := headingRE.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(m[2]) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		out[a] = m[2]
	}
	return out
}

var runbookHeadingRE = regexp.MustCompile(`(?m)^### +(Followpush[A-Za-z0-9]+)\s*$`)

// TestRunbookCoversAlerts: the runbook of docs/operations.md has a section
// ("### <alert>") for every alert in deploy/prometheus/alerts.yaml, and
// for no other; every alert's runbook_url is [RunbookURL] with the anchor
// of its own section, an anchor docs/operations.md has.
func TestRunbookCoversAlerts(t *testing.T) {
	t.Parallel()
	doc := readOperationsDoc(t)
	report(t, checkRunbook(doc, docSection(t, doc, "Runbook"), readDeployFiles(t)[AlertsFile]))
}

func checkRunbook(doc, runbook string, alerts []byte) []error {
	rf, err := ParseRules(alerts)
	if err != nil {
		return []error{err}
	}
	docAnchors := anchors(doc)
	rules := map[string]bool{}
	var errs []error
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			rules[r.Alert] = true
			url := r.Annotations["runbook_url"]
			base, anchor, ok := strings.Cut(url, "#")
			switch {
			case url == "":
				errs = append(errs, fmt.Errorf("alerts.yaml %s: no annotations.runbook_url", r.Alert))
			case base != RunbookURL || !ok:
				errs = append(errs, fmt.Errorf("alerts.yaml %s: runbook_url %q, want %s#<anchor>", r.Alert, url, RunbookURL))
			case docAnchors[anchor] == "":
				errs = append(errs, fmt.Errorf("alerts.yaml %s: runbook_url's anchor #%s is no heading of %s", r.Alert, anchor, OperationsDoc))
			case docAnchors[anchor] != r.Alert:
				errs = append(errs, fmt.Errorf("alerts.yaml %s: runbook_url's anchor #%s is the section %q of %s, not the alert's own", r.Alert, anchor, docAnchors[anchor], OperationsDoc))
			}
		}
	}
	documented := map[string]bool{}
	for _, m := range runbookHeadingRE.FindAllStringSubmatch(runbook, -1) {
		documented[m[1]] = true
	}
	return append(errs, sameKeys(rules, documented,
		OperationsDoc+" Runbook has no section for alert %s",
		OperationsDoc+" Runbook has a section for %s, which alerts.yaml does not define")...)
}

var jobNameRE = regexp.MustCompile(`(?m)^\s*- job_name:\s*(\S+)\s*$`)

// TestScrapeJobs: every up{job=...} in the alerts and the dashboard
// matches a scrape job that deploy/README.md tells operators to define,
// and names a job (an up without one would watch every target).
func TestScrapeJobs(t *testing.T) {
	t.Parallel()
	files := readDeployFiles(t)
	report(t, checkScrapeJobs(files["README.md"], files[AlertsFile], files[DashboardFile]))
}

func checkScrapeJobs(readme, alerts, dashboard []byte) []error {
	var jobs []string
	for _, m := range jobNameRE.FindAllSubmatch(readme, -1) {
		jobs = append(jobs, string(m[1]))
	}
	if len(jobs) < 2 {
		return []error{fmt.Errorf("deploy/README.md shows scrape jobs %v, want the receiver's and the worker's", jobs)}
	}
	aq, err := AlertQueries(alerts)
	if err != nil {
		return []error{err}
	}
	dq, err := DashboardQueries(dashboard)
	if err != nil {
		return []error{err}
	}
	var errs []error
	n := 0
	for _, q := range append(aq, dq...) {
		sels, _, err := ParseQuery(q.Expr)
		if err != nil {
			continue // reported by the query checks
		}
		for _, sel := range sels {
			if sel.Name != Up {
				continue
			}
			n++
			i := slices.IndexFunc(sel.Matchers, func(m Matcher) bool { return m.Label == "job" })
			if i < 0 {
				errs = append(errs, fmt.Errorf("%s: up without a job matcher watches every target Prometheus scrapes", q.Where))
				continue
			}
			m := sel.Matchers[i]
			var match func(string) bool
			switch m.Op {
			case "=":
				match = func(j string) bool { return j == m.Value }
			case "=~":
				re, err := regexp.Compile("^(?:" + m.Value + ")$")
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: job=~%q: %v", q.Where, m.Value, err))
					continue
				}
				match = re.MatchString
			default:
				errs = append(errs, fmt.Errorf("%s: up{job%s%q}: want = or =~", q.Where, m.Op, m.Value))
				continue
			}
			if !slices.ContainsFunc(jobs, match) {
				errs = append(errs, fmt.Errorf("%s: up{job%s%q} matches none of the scrape jobs deploy/README.md defines (%v)", q.Where, m.Op, m.Value, jobs))
			}
		}
	}
	if n == 0 {
		errs = append(errs, fmt.Errorf("no alert watches up: a dead receiver or worker would go unnoticed"))
	}
	return errs
}

// TestOperationsDocChecksCatchMistakes feeds the checks of
// docs/operations.md the real files with one mistake each, so that
// TestOperationsDocMetrics and TestRunbookCoversAlerts can fail.
func TestOperationsDocChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	doc := readOperationsDoc(t)
	alerts := string(readDeployFiles(t)[AlertsFile])
	schema := deploySchema(t)
	const url = RunbookURL + "#"
	tests := []struct {
		name, file, old, new, want string
	}{
		{"per-state queue size", "Metrics", "`asynq_queue_size{queue}`", "`asynq_queue_size{queue,state}`", "asynq_queue_size{queue,state}, but its labels are {queue}"},
		{"metric left out", "Metrics", "`followpush_rate_limited_total`", "rate-limited sends", "does not name followpush_rate_limited_total"},
		{"metric that does not exist", "Metrics", "`followpush_spool_bytes`", "`followpush_spool_size_bytes`", "names followpush_spool_size_bytes, which no program exports"},
		{"label left out", "Metrics", "`followpush_webhooks_total{command,result}`", "`followpush_webhooks_total{result}`", "followpush_webhooks_total{result}, but its labels are {command,result}"},
		{"alert without a section", "doc", "### FollowpushTaskErrors\n", "### Task errors\n", "no section for alert FollowpushTaskErrors"},
		{"section for no alert", "doc", "### FollowpushQueuePaused\n", "### FollowpushQueuePaused\n\n### FollowpushQueueStuck\n", "section for FollowpushQueueStuck, which alerts.yaml does not define"},
		{"runbook_url missing", "alerts", "\n          runbook_url: " + url + "followpushqueuepaused", "", "FollowpushQueuePaused: no annotations.runbook_url"},
		{"runbook_url elsewhere", "alerts", "runbook_url: " + url + "followpushqueuepaused", "runbook_url: https://example.com/runbook#followpushqueuepaused", "runbook_url \"https://example.com/runbook#followpushqueuepaused\""},
		{"anchor of no heading", "alerts", url + "followpushqueuepaused", url + "followpush-queue-paused", "anchor #followpush-queue-paused is no heading"},
		{"anchor of another alert's section", "alerts", url + "followpushqueuepaused", url + "followpushtaskerrors", "FollowpushQueuePaused: runbook_url's anchor #followpushtaskerrors is the section \"FollowpushTaskErrors\""},
		{"section renamed, anchor stale", "doc", "### FollowpushQueuePaused\n", "### FollowpushQueuePaused (queue follow)\n", "anchor #followpushqueuepaused is no heading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text := map[string]string{"Metrics": docSection(t, doc, "Metrics"), "doc": doc, "alerts": alerts}[tt.file]
			if !strings.Contains(text, tt.old) {
				t.Fatalf("%s no longer contains %q: update this case", tt.file, tt.old)
			}
			text = strings.Replace(text, tt.old, tt.new, 1)
			var errs []error
			switch tt.file {
			case "Metrics":
				errs = checkMetricsDoc(text, schema)
			case "doc":
				errs = checkRunbook(text, docSection(t, text, "Runbook"), []byte(alerts))
			case "alerts":
				errs = checkRunbook(doc, docSection(t, doc, "Runbook"), []byte(text))
			}
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tt.want) }) {
				t.Errorf("want an error containing %q, got %v", tt.want, errs)
			}
		})
	}
}

// AlertTestsFile holds the unit tests of the alert rules, in the format of
// `promtool test rules` (run by tools/ruletest).
const AlertTestsFile = "prometheus/alerts_test.yaml"

// TestAlertRuleTestsCoverEveryAlert: the rule unit tests test alerts.yaml,
// and have, for every alert it defines, a case where it fires; they name
// no other alert. (Whether the cases pass is tools/ruletest's job.)
func TestAlertRuleTestsCoverEveryAlert(t *testing.T) {
	t.Parallel()
	files := readDeployFiles(t)
	report(t, checkAlertTests(files[AlertTestsFile], files[AlertsFile]))
}

func checkAlertTests(tests, alerts []byte) []error {
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(tests, &tf); err != nil {
		return []error{fmt.Errorf("%s: %v", AlertTestsFile, err)}
	}
	rf, err := ParseRules(alerts)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if !slices.Equal(tf.RuleFiles, []string{path.Base(AlertsFile)}) {
		errs = append(errs, fmt.Errorf("%s: rule_files %v, want [%s]", AlertTestsFile, tf.RuleFiles, path.Base(AlertsFile)))
	}
	defined, firing := map[string]bool{}, map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			defined[r.Alert] = true
		}
	}
	for _, tg := range tf.Tests {
		for _, at := range tg.AlertRuleTest {
			if !defined[at.Alertname] {
				errs = append(errs, fmt.Errorf("%s tests %s, which alerts.yaml does not define", AlertTestsFile, at.Alertname))
			}
			if len(at.ExpAlerts) > 0 {
				firing[at.Alertname] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(defined)) {
		if !firing[name] {
			errs = append(errs, fmt.Errorf("%s: no test expects %s to fire", AlertTestsFile, name))
		}
	}
	return errs
}
