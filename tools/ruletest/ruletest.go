// Package ruletest runs Prometheus alerting-rule unit tests written in the
// format of `promtool test rules` with Prometheus's own Go packages: its
// PromQL engine (promql), series notation (promql/parser), rule file
// parser (model/rulefmt) and alert templates (template). promtool itself
// is not needed: building it downloads 1.8 GB of modules and takes many
// minutes, too long for CI.
//
// It evaluates alerting rules as Prometheus's rule manager does
// (rules.AlertingRule.Eval, mirrored here rather than imported, because
// that package pulls in the notifier and service discovery with their
// cloud SDKs): every evaluation_interval from time 0, each rule's query
// at that time over the input series loaded so far; a result series
// becomes a pending alert with the rule's labels and templated
// annotations, firing once it has been active for the rule's `for`; an
// alert whose series is gone is resolved. An alert test compares, as
// promtool does, the firing alerts of the rule at eval_time (an eval_time
// between two evaluations is compared with the earlier one), labels and
// annotations exactly; a rule whose evaluation fails fails the test.
//
// What is supported is what followpush's tests use: rule_files (relative
// to the test file), evaluation_interval, and tests with name, interval,
// input_series and alert_rule_test. Anything else in a test file
// (promql_expr_test, group_eval_order, external_labels, ...), a recording
// rule, keep_firing_for or a histogram sample is refused, not half-run.
//
// It is a module of its own so that Prometheus's dependencies stay out of
// followpush's go.mod; CI runs its tests (`cd tools/ruletest && go test
// ./...`).
package ruletest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// File is a test file: the rule files it tests and its test groups.
type File struct {
	RuleFiles          []string       `yaml:"rule_files"`
	EvaluationInterval model.Duration `yaml:"evaluation_interval,omitempty"`
	Tests              []Group        `yaml:"tests"`
}

// Group is one test group: input series and the alerts expected of them.
type Group struct {
	Name        string         `yaml:"name,omitempty"`
	Interval    model.Duration `yaml:"interval,omitempty"`
	InputSeries []Series       `yaml:"input_series"`
	AlertTests  []AlertTest    `yaml:"alert_rule_test,omitempty"`
}

// Series is one input series in promtool's notation, e.g. series
// 'up{job="x"}' with values '1x10 0x5'.
type Series struct {
	Series string `yaml:"series"`
	Values string `yaml:"values"`
}

// AlertTest expects exactly ExpAlerts of the alert Alertname to be firing
// at EvalTime.
type AlertTest struct {
	EvalTime  model.Duration  `yaml:"eval_time"`
	Alertname string          `yaml:"alertname"`
	ExpAlerts []ExpectedAlert `yaml:"exp_alerts"`
}

// ExpectedAlert is one firing alert: its labels (alertname is added) and
// annotations.
type ExpectedAlert struct {
	ExpLabels      map[string]string `yaml:"exp_labels"`
	ExpAnnotations map[string]string `yaml:"exp_annotations"`
}

// Result is what running a test file found.
type Result struct {
	// Failures are the test cases whose firing alerts differ from the
	// expected ones, and errors evaluating rules.
	Failures []string
	// Fired counts, per alert name, the passing cases that expect it to
	// fire.
	Fired map[string]int
}

// Load reads a test file, refusing unknown fields (as promtool does).
func Load(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	var f File
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	for i, rf := range f.RuleFiles {
		if !filepath.IsAbs(rf) {
			f.RuleFiles[i] = filepath.Join(filepath.Dir(path), rf)
		}
	}
	return f, nil
}

// Run runs every test group of the test file at path. The error is for a
// file (or rule file) that cannot be read or run at all.
func Run(path string) (Result, error) {
	f, err := Load(path)
	if err != nil {
		return Result{}, err
	}
	if len(f.RuleFiles) == 0 || len(f.Tests) == 0 {
		return Result{}, fmt.Errorf("%s: no rule_files or no tests", path)
	}
	p := parser.NewParser(parser.Options{})
	var rules []*alertRule
	for _, rf := range f.RuleFiles {
		rs, err := loadRules(rf, p)
		if err != nil {
			return Result{}, err
		}
		rules = append(rules, rs...)
	}
	res := Result{Fired: map[string]int{}}
	for i, g := range f.Tests {
		if g.Name == "" {
			g.Name = fmt.Sprintf("unnamed#%d", i)
		}
		if g.Interval == 0 {
			g.Interval = f.EvaluationInterval
		}
		failures, err := g.run(p, time.Duration(f.EvaluationInterval), rules, res.Fired)
		if err != nil {
			return res, fmt.Errorf("%s: test %q: %w", path, g.Name, err)
		}
		res.Failures = append(res.Failures, failures...)
	}
	return res, nil
}

// alertRule is one alerting rule of a rule file, parsed.
type alertRule struct {
	name        string
	expr        string
	hold        time.Duration
	labels      labels.Labels
	annotations labels.Labels
}

// loadRules parses the alerting rules of a rule file with Prometheus's
// rule file parser (which also checks the expressions and templates).
func loadRules(file string, p parser.Parser) ([]*alertRule, error) {
	rgs, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", file, errors.Join(errs...))
	}
	var out []*alertRule
	for _, g := range rgs.Groups {
		if g.Interval != 0 || g.QueryOffset != nil || g.Limit != 0 || len(g.Labels) > 0 {
			return nil, fmt.Errorf("%s: group %s: interval, query_offset, limit and labels are not supported", file, g.Name)
		}
		for _, r := range g.Rules {
			if r.Record != "" || r.KeepFiringFor != 0 {
				return nil, fmt.Errorf("%s: group %s: recording rules and keep_firing_for are not supported", file, g.Name)
			}
			out = append(out, &alertRule{
				name: r.Alert, expr: r.Expr, hold: time.Duration(r.For),
				labels: labels.FromMap(r.Labels), annotations: labels.FromMap(r.Annotations),
			})
		}
	}
	return out, nil
}

// run evaluates the rules over g's series from time 0 to the last
// eval_time, every evalInterval, and compares the firing alerts at each
// eval_time.
func (g Group) run(p parser.Parser, evalInterval time.Duration, rules []*alertRule, fired map[string]int) ([]string, error) {
	st, err := loadSeries(g.InputSeries, time.Duration(g.Interval))
	if err != nil {
		return nil, fmt.Errorf("input_series: %w", err)
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:               10000, // promtool's
		Timeout:                  100 * time.Second,
		NoStepSubqueryIntervalFn: func(int64) int64 { return evalInterval.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	tests := slices.Clone(g.AlertTests)
	sort.SliceStable(tests, func(i, j int) bool { return tests[i].EvalTime < tests[j].EvalTime })
	var last time.Duration
	for _, t := range tests {
		if t.Alertname == "" {
			return nil, fmt.Errorf("an alert_rule_test at %s has no alertname", t.EvalTime)
		}
		last = max(last, time.Duration(t.EvalTime))
	}

	ctx := context.Background()
	active := make([]map[uint64]*alert, len(rules))
	for i := range active {
		active[i] = map[uint64]*alert{}
	}
	var failures []string
	next := 0
	for at := time.Duration(0); at <= last; at += evalInterval {
		ts := time.Unix(0, 0).UTC().Add(at)
		st.upto = ts.UnixMilli() // the samples loaded so far, as promtool's loader does
		query := func(ctx context.Context, qs string, t time.Time) (promql.Vector, error) {
			return instantQuery(ctx, engine, st, qs, t)
		}
		for i, r := range rules {
			if err := r.eval(ctx, ts, query, active[i]); err != nil {
				return append(failures, fmt.Sprintf("%s: rule %s at %s: %v", g.Name, r.name, at, err)), nil
			}
		}
		for ; next < len(tests) && time.Duration(tests[next].EvalTime) < at+evalInterval; next++ {
			t := tests[next]
			var got []string
			for i, r := range rules {
				if r.name == t.Alertname {
					got = append(got, firing(active[i])...)
				}
			}
			slices.Sort(got)
			want := expected(t)
			if !slices.Equal(got, want) {
				failures = append(failures, fmt.Sprintf("%s: %s at %s:\n  want %q\n  got  %q", g.Name, t.Alertname, t.EvalTime, want, got))
			} else if len(want) > 0 {
				fired[t.Alertname]++
			}
		}
	}
	return failures, nil
}

// alert is one alert instance of a rule.
type alert struct {
	labels, annotations labels.Labels
	activeAt            time.Time
	firing              bool
}

// eval is Prometheus's rules.AlertingRule.Eval (v3.x) for a rule without
// keep_firing_for: the query's result series become pending alerts (rule
// labels and annotations templated with each series' labels and value),
// alerts active for the rule's hold duration fire, and alerts whose
// series is gone are resolved (and dropped: only firing alerts are
// compared).
func (r *alertRule) eval(ctx context.Context, ts time.Time, query template.QueryFunc, active map[uint64]*alert) error {
	res, err := query(ctx, r.expr, ts)
	if err != nil {
		return err
	}
	seen := map[uint64]*alert{}
	for _, smpl := range res {
		data := template.AlertTemplateData(smpl.Metric.Map(), nil, "", smpl)
		defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
		expand := func(text string) string {
			out, err := template.NewTemplateExpander(ctx, defs+text, "__alert_"+r.name, data,
				model.Time(timestamp.FromTime(ts)), query, &url.URL{}, nil).Expand()
			if err != nil {
				return fmt.Sprintf("<error expanding template: %s>", err)
			}
			return out
		}
		lb := labels.NewBuilder(smpl.Metric)
		lb.Del(labels.MetricName)
		r.labels.Range(func(l labels.Label) { lb.Set(l.Name, expand(l.Value)) })
		lb.Set(labels.AlertName, r.name)
		sb := labels.NewScratchBuilder(0)
		r.annotations.Range(func(a labels.Label) { sb.Add(a.Name, expand(a.Value)) })
		sb.Sort()
		ls := lb.Labels()
		h := ls.Hash()
		if _, dup := seen[h]; dup {
			return errors.New("vector contains metrics with the same labelset after applying alert labels")
		}
		seen[h] = &alert{labels: ls, annotations: sb.Labels(), activeAt: ts}
	}
	for h, a := range seen {
		if old, ok := active[h]; ok {
			old.annotations = a.annotations
			continue
		}
		active[h] = a
	}
	for h, a := range active {
		if _, ok := seen[h]; !ok {
			delete(active, h)
			continue
		}
		a.firing = ts.Sub(a.activeAt) >= r.hold
	}
	return nil
}

// instantQuery is rules.EngineQueryFunc: an instant query whose scalar
// result becomes a one-sample vector.
func instantQuery(ctx context.Context, engine *promql.Engine, q storage.Queryable, qs string, t time.Time) (promql.Vector, error) {
	query, err := engine.NewInstantQuery(ctx, q, nil, qs, t)
	if err != nil {
		return nil, err
	}
	defer query.Close()
	res := query.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v, nil
	case promql.Scalar:
		return promql.Vector{{T: v.T, F: v.V, Metric: labels.EmptyLabels()}}, nil
	}
	return nil, errors.New("rule result is not a vector or scalar")
}

// firing returns the firing alerts as their labels and annotations in
// Prometheus's text form.
func firing(active map[uint64]*alert) []string {
	var out []string
	for _, a := range active {
		if a.firing {
			out = append(out, a.labels.String()+" "+a.annotations.String())
		}
	}
	return out
}

// expected returns t's expected alerts in the form of [firing], sorted.
func expected(t AlertTest) []string {
	var out []string
	for _, a := range t.ExpAlerts {
		l := map[string]string{labels.AlertName: t.Alertname}
		for k, v := range a.ExpLabels {
			l[k] = v
		}
		out = append(out, labels.FromMap(l).String()+" "+labels.FromMap(a.ExpAnnotations).String())
	}
	slices.Sort(out)
	return out
}

// store holds the input series; queries see the samples up to upto (ms).
type store struct {
	series []storedSeries
	upto   int64
}

type storedSeries struct {
	labels  labels.Labels
	samples []chunks.Sample
}

// loadSeries reads input series in promtool's notation (values at
// interval steps from time 0; "_" omits a step, "stale" is a staleness
// marker), with Prometheus's series parser.
func loadSeries(in []Series, interval time.Duration) (*store, error) {
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true, EnableUnquotedUTF8Names: true})
	st := &store{}
	seen := map[uint64]bool{}
	for _, s := range in {
		ls, vals, err := p.ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", s.Series, s.Values, err)
		}
		if seen[ls.Hash()] {
			return nil, fmt.Errorf("%s: given twice", s.Series)
		}
		seen[ls.Hash()] = true
		ss := storedSeries{labels: ls}
		for i, v := range vals {
			if v.Histogram != nil {
				return nil, fmt.Errorf("%s: histogram samples are not supported", s.Series)
			}
			if !v.Omitted {
				ss.samples = append(ss.samples, floatSample{t: (time.Duration(i) * interval).Milliseconds(), f: v.Value})
			}
		}
		st.series = append(st.series, ss)
	}
	return st, nil
}

// Querier implements storage.Queryable.
func (s *store) Querier(int64, int64) (storage.Querier, error) { return s, nil }

// Select implements storage.Querier: the series matching every matcher,
// with their samples up to s.upto.
func (s *store) Select(_ context.Context, sortSeries bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
	for _, ss := range s.series {
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches(ss.labels.Get(m.Name)) }) {
			n := sort.Search(len(ss.samples), func(i int) bool { return ss.samples[i].T() > s.upto })
			out = append(out, storage.NewListSeries(ss.labels, ss.samples[:n]))
		}
	}
	if sortSeries {
		sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	}
	return &seriesSet{series: out, i: -1}
}

// LabelValues implements storage.Querier (unused by rule evaluation).
func (s *store) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

// LabelNames implements storage.Querier (unused by rule evaluation).
func (s *store) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

// Close implements storage.Querier.
func (s *store) Close() error { return nil }

// seriesSet is a storage.SeriesSet over a slice.
type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// floatSample is a chunks.Sample holding a float.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }
