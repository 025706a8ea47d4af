package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

// Metric describes one metric family as a query may use it.
type Metric struct {
	// Type is "counter", "gauge", "histogram", "summary" or "untyped".
	Type string
	// Labels are the family's label names (a histogram's le and a
	// summary's quantile not included).
	Labels map[string]bool
	// Values, when not nil for a label, are every value that label takes:
	// a query matching another value never matches anything. Labels
	// without an entry are not checked.
	Values map[string]map[string]bool
	// Source is the file defining the metric, for followpush's own metrics
	// read by [SourceMetrics].
	Source string
}

// Schema is the metrics a query may use, by family name.
type Schema map[string]Metric

// TargetLabels are the labels Prometheus adds to every scraped series.
var TargetLabels = []string{"job", "instance"}

// Up is the series Prometheus itself records per scrape target.
const Up = "up"

// Query is one PromQL expression from a deploy/ file.
type Query struct {
	Where string // file and rule or panel, for messages
	Expr  string // the PromQL expression
}

// Selector is one metric selector of a query: a name and label matchers.
type Selector struct {
	Name     string    // the metric name ("" for a selector without one)
	Matchers []Matcher // the label matchers, as written
}

// Matcher is one label matcher of a selector.
type Matcher struct {
	Label, Op, Value string // e.g. "job", "=~", "followpush-.*"
}

// SchemaFromFamilies describes gathered or scraped metric families. Label
// values are recorded as seen (Metric.Values), which is every value only
// for collectors that always export every value.
func SchemaFromFamilies(mfs []*dto.MetricFamily) Schema {
	s := Schema{}
	for _, mf := range mfs {
		m := Metric{Type: strings.ToLower(mf.GetType().String()), Labels: map[string]bool{}, Values: map[string]map[string]bool{}}
		for _, pm := range mf.GetMetric() {
			for _, lp := range pm.GetLabel() {
				m.Labels[lp.GetName()] = true
				if m.Values[lp.GetName()] == nil {
					m.Values[lp.GetName()] = map[string]bool{}
				}
				m.Values[lp.GetName()][lp.GetValue()] = true
			}
		}
		s[mf.GetName()] = m
	}
	return s
}

// WithoutValues returns s with no label values recorded, so that only names
// and label names are checked.
func (s Schema) WithoutValues() Schema {
	out := Schema{}
	for name, m := range s {
		m.Values = nil
		out[name] = m
	}
	return out
}

// Merge returns the union of s and other (other wins on a name in both).
func (s Schema) Merge(other Schema) Schema {
	out := maps.Clone(s)
	if out == nil {
		out = Schema{}
	}
	maps.Copy(out, other)
	return out
}

// promKeywords are PromQL words that are neither metric names nor
// functions.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "inf": true, "nan": true,
}

// groupingWords take a parenthesised list of label names.
var groupingWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true,
}

type promToken struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'v' Grafana variable, 'p' punctuation/operator
	text string
}

var (
	identRE  = regexp.MustCompile(`^[A-Za-z_:][A-Za-z0-9_:]*`)
	numberRE = regexp.MustCompile(`^(0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?[a-zA-Z]*([0-9]+[a-zA-Z]+)*)`)
	varRE    = regexp.MustCompile(`^\$(\{[^}]*\}|[A-Za-z0-9_]+)`)
	opRE     = regexp.MustCompile(`^(=~|!~|!=|==|>=|<=|[-+*/%^=<>(){}\[\],@])`)
)

// tokenize splits a PromQL expression (with Grafana's $variables) into
// tokens.
func tokenize(expr string) ([]promToken, error) {
	var toks []promToken
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // comment to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(expr) && expr[j] != c; j++ {
				if expr[j] == '\\' && c != '`' && j+1 < len(expr) {
					j++
				}
				b.WriteByte(expr[j])
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, promToken{'s', b.String()})
			i = j + 1
		case varRE.MatchString(expr[i:]):
			m := varRE.FindString(expr[i:])
			toks = append(toks, promToken{'v', m})
			i += len(m)
		case identRE.MatchString(expr[i:]):
			m := identRE.FindString(expr[i:])
			toks = append(toks, promToken{'i', m})
			i += len(m)
		case numberRE.MatchString(expr[i:]):
			m := numberRE.FindString(expr[i:])
			toks = append(toks, promToken{'n', m})
			i += len(m)
		case opRE.MatchString(expr[i:]):
			m := opRE.FindString(expr[i:])
			toks = append(toks, promToken{'p', m})
			i += len(m)
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
		}
	}
	return toks, nil
}

// ParseQuery returns the metric selectors of a PromQL expression and the
// label names its by/without/on/ignoring/group_left/group_right clauses
// name. It is not a full PromQL parser: it finds selectors and label lists
// and checks that brackets balance, which is what the metric checks need.
func ParseQuery(expr string) (sels []Selector, grouping []string, err error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil, errors.New("empty expression")
	}
	toks, err := tokenize(expr)
	if err != nil {
		return nil, nil, err
	}
	var stack []string
	closing := map[string]string{")": "(", "]": "[", "}": "{"}
	for _, t := range toks {
		if t.kind != 'p' {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			stack = append(stack, t.text)
		case ")", "]", "}":
			if len(stack) == 0 || stack[len(stack)-1] != closing[t.text] {
				return nil, nil, fmt.Errorf("unbalanced %q", t.text)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return nil, nil, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	next := func(i int) promToken {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return promToken{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == 'p' && t.text == "[": // range or subquery: durations only
			for i < len(toks) && toks[i].text != "]" {
				i++
			}
		case t.kind == 'i' && t.text == "offset":
			i++
		case t.kind == 'i' && groupingWords[t.text] && next(i).text == "(":
			for i += 2; i < len(toks) && toks[i].text != ")"; i++ {
				switch {
				case toks[i].kind == 'i':
					grouping = append(grouping, toks[i].text)
				case toks[i].text != ",":
					return nil, nil, fmt.Errorf("%s (...): unexpected %q", t.text, toks[i].text)
				}
			}
		case t.kind == 'i' && promKeywords[t.text]:
		case t.kind == 'i' && (next(i).text == "(" || next(i).text == "by" || next(i).text == "without"):
			// a function, or an aggregation (its by/without clause may come first)
		case t.kind == 'i' || (t.kind == 'p' && t.text == "{"):
			sel := Selector{}
			if t.kind == 'i' {
				sel.Name = t.text
				if next(i).text != "{" {
					sels = append(sels, sel)
					continue
				}
				i++
			}
			for i++; i < len(toks) && toks[i].text != "}"; i++ {
				if toks[i].text == "," {
					continue
				}
				if toks[i].kind != 'i' || i+2 >= len(toks) || toks[i+1].kind != 'p' || toks[i+2].kind != 's' {
					return nil, nil, fmt.Errorf("selector %s: want label op \"value\" at %q", sel.Name, toks[i].text)
				}
				m := Matcher{Label: toks[i].text, Op: toks[i+1].text, Value: toks[i+2].text}
				switch m.Op {
				case "=", "!=", "=~", "!~":
				default:
					return nil, nil, fmt.Errorf("selector %s: matcher operator %q", sel.Name, m.Op)
				}
				if m.Label == "__name__" && m.Op == "=" {
					sel.Name = m.Value
				} else {
					sel.Matchers = append(sel.Matchers, m)
				}
				i += 2
			}
			if sel.Name == "" {
				return nil, nil, errors.New("a selector without a metric name")
			}
			sels = append(sels, sel)
		}
	}
	return sels, grouping, nil
}

// alternationRE matches a regular expression that is a plain list of
// alternatives (a|b|c), the only regex matchers whose values are checked.
var alternationRE = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)

// resolve returns the family a selector's name refers to, and the series
// suffix (_bucket, _sum, _count) it adds to a histogram or summary.
func (s Schema) resolve(name string) (family string, m Metric, suffix string, ok bool) {
	if name == Up {
		return Up, Metric{Type: "gauge", Labels: map[string]bool{}}, "", true
	}
	if m, ok := s[name]; ok {
		return name, m, "", true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, cut := strings.CutSuffix(name, suf); cut {
			if m, ok := s[base]; ok {
				return base, m, suf, true
			}
		}
	}
	return "", Metric{}, "", false
}

// CheckQuery checks q against s: every selector names a metric of s (or
// up), a histogram only through its _bucket, _sum and _count series and
// nothing else through those suffixes; every matcher names a label of its
// metric, with a value the label takes when s knows them; every grouping
// label is a label of a metric the query uses. It returns the families
// used.
func CheckQuery(q Query, s Schema) (used map[string]bool, errs []error) {
	sels, grouping, err := ParseQuery(q.Expr)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %v in %q", q.Where, err, q.Expr)}
	}
	used = map[string]bool{}
	available := map[string]bool{}
	for _, l := range TargetLabels {
		available[l] = true
	}
	for _, sel := range sels {
		family, m, suffix, ok := s.resolve(sel.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s is not an exported metric", q.Where, sel.Name))
			continue
		}
		used[family] = true
		switch {
		case m.Type == "histogram" && suffix == "":
			errs = append(errs, fmt.Errorf("%s: %s is a histogram: query %s_bucket, _sum or _count", q.Where, sel.Name, sel.Name))
		case m.Type == "summary" && suffix == "_bucket":
			errs = append(errs, fmt.Errorf("%s: %s is a summary: it has no _bucket series", q.Where, family))
		case m.Type != "histogram" && m.Type != "summary" && suffix != "":
			errs = append(errs, fmt.Errorf("%s: %s: %s is a %s, it has no %s series", q.Where, sel.Name, family, m.Type, suffix))
		}
		labels := maps.Clone(m.Labels)
		if labels == nil {
			labels = map[string]bool{}
		}
		for _, l := range TargetLabels {
			labels[l] = true
		}
		if suffix == "_bucket" {
			labels["le"] = true
		}
		if m.Type == "summary" && suffix == "" {
			labels["quantile"] = true
		}
		maps.Copy(available, labels)
		for _, mt := range sel.Matchers {
			if !labels[mt.Label] {
				errs = append(errs, fmt.Errorf("%s: %s has no label %s (it has %v)", q.Where, family, mt.Label, slices.Sorted(maps.Keys(labels))))
				continue
			}
			known := m.Values[mt.Label]
			if known == nil {
				continue
			}
			var values []string
			switch {
			case mt.Op == "=" || mt.Op == "!=":
				values = []string{mt.Value}
			case alternationRE.MatchString(mt.Value):
				values = strings.Split(mt.Value, "|")
			}
			if mt.Op == "=~" && values == nil {
				// Any other regular expression must match some value
				// (anchored, as Prometheus anchors it).
				re, err := regexp.Compile("^(?:" + mt.Value + ")$")
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %s{%s%s%q}: %v", q.Where, family, mt.Label, mt.Op, mt.Value, err))
					continue
				}
				if !slices.ContainsFunc(slices.Collect(maps.Keys(known)), re.MatchString) {
					errs = append(errs, fmt.Errorf("%s: %s{%s%s%q}: matches no value of %s (known: %v)", q.Where, family, mt.Label, mt.Op, mt.Value, mt.Label, slices.Sorted(maps.Keys(known))))
				}
			}
			for _, v := range values {
				if !known[v] {
					errs = append(errs, fmt.Errorf("%s: %s{%s%s%q}: %q is not a value of %s (known: %v)", q.Where, family, mt.Label, mt.Op, mt.Value, v, mt.Label, slices.Sorted(maps.Keys(known))))
				}
			}
		}
	}
	for _, l := range grouping {
		if !available[l] {
			errs = append(errs, fmt.Errorf("%s: groups by %s, a label of none of the metrics it uses (%v)", q.Where, l, slices.Sorted(maps.Keys(used))))
		}
	}
	return used, errs
}

// RuleFile is a Prometheus rule file; decode it strictly, so a misspelt key
// fails.
type RuleFile struct {
	// Groups are the file's rule groups.
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []Rule `yaml:"rules"`
	} `yaml:"groups"`
}

// Rule is one alerting (or recording) rule.
type Rule struct {
	Alert       string            `yaml:"alert"`       // alert name (alerting rules)
	Record      string            `yaml:"record"`      // series name (recording rules)
	Expr        string            `yaml:"expr"`        // the PromQL expression
	For         string            `yaml:"for"`         // how long it must hold before firing
	Labels      map[string]string `yaml:"labels"`      // severity, ...
	Annotations map[string]string `yaml:"annotations"` // summary, description, runbook_url
}

// ParseRules decodes a Prometheus rule file strictly.
func ParseRules(b []byte) (RuleFile, error) {
	var rf RuleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		return rf, err
	}
	return rf, nil
}

// AlertQueries returns the expression of every rule of a rule file.
func AlertQueries(b []byte) ([]Query, error) {
	rf, err := ParseRules(b)
	if err != nil {
		return nil, fmt.Errorf("alerts.yaml: %w", err)
	}
	var qs []Query
	for _, g := range rf.Groups {
		for i, r := range g.Rules {
			qs = append(qs, Query{Where: fmt.Sprintf("alerts.yaml %s rule %d (%s)", g.Name, i+1, r.Alert+r.Record), Expr: r.Expr})
		}
	}
	return qs, nil
}

// Dashboard is the part of a Grafana dashboard the checks read.
type Dashboard struct {
	Title  string  `json:"title"`  // the dashboard's title
	UID    string  `json:"uid"`    // its stable id
	Panels []Panel `json:"panels"` // its top-level panels and rows
}

// Panel is one Grafana panel (or row, whose collapsed panels it holds).
type Panel struct {
	ID    int    `json:"id"`    // unique in the dashboard
	Type  string `json:"type"`  // "timeseries", "stat", "row", ...
	Title string `json:"title"` // shown above the panel
	// Targets are the panel's queries.
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	// Panels are a collapsed row's panels.
	Panels []Panel `json:"panels"`
}

// ParseDashboard decodes a Grafana dashboard.
func ParseDashboard(b []byte) (Dashboard, error) {
	var d Dashboard
	err := json.Unmarshal(b, &d)
	return d, err
}

// DashboardQueries returns the expression of every target of every panel.
func DashboardQueries(b []byte) ([]Query, error) {
	d, err := ParseDashboard(b)
	if err != nil {
		return nil, fmt.Errorf("followpush.json: %w", err)
	}
	var qs []Query
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				qs = append(qs, Query{Where: fmt.Sprintf("followpush.json panel %d %q target %s", p.ID, p.Title, t.RefID), Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return qs, nil
}

// AlertsFile and DashboardFile are the paths, relative to deploy/, of the
// Prometheus rules and the Grafana dashboard.
const (
	AlertsFile    = "prometheus/alerts.yaml"
	DashboardFile = "grafana/followpush.json"
)

// DeployQueries returns every query of the alert rules and the dashboard
// under deployDir.
func DeployQueries(deployDir string) ([]Query, error) {
	var all []Query
	for _, f := range []struct {
		name  string
		parse func([]byte) ([]Query, error)
	}{{AlertsFile, AlertQueries}, {DashboardFile, DashboardQueries}} {
		b, err := os.ReadFile(filepath.Join(deployDir, filepath.FromSlash(f.name)))
		if err != nil {
			return nil, err
		}
		qs, err := f.parse(b)
		if err != nil {
			return nil, err
		}
		all = append(all, qs...)
	}
	return all, nil
}
