package notifier

import (
	"go/ast"
	"go/token"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/internal/testrig/gosource"
)

// Every label value the worker's code counts with is exported at 0 by a
// fresh Metrics, before anything happened: the literal values passed to
// WithLabelValues anywhere in the package, and every value of the
// non-literal ones (push outcomes, policy verdicts, digestNotSent's
// results).
func TestCountersStartAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]map[string]float64{} // family -> label value -> value
	for _, mf := range mfs {
		if mf.GetType().String() != "COUNTER" {
			continue
		}
		exported[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				exported[mf.GetName()][lp.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	// The counters by the field that holds them; reportResult's counter is
	// either of the task counters.
	families := map[string][]string{
		"tasks":         {"followpush_tasks_total"},
		"summaries":     {"followpush_digests_total"},
		"pushes":        {"followpush_pushes_total"},
		"tokensDeleted": {"followpush_tokens_deleted_total"},
		"tokensKept":    {"followpush_tokens_kept_total"},
		"counter":       {"followpush_tasks_total", "followpush_digests_total"},
	}
	want := map[string][]string{}
	for field, lits := range labelLiterals(t) {
		fams, ok := families[field]
		if !ok {
			t.Errorf("WithLabelValues on %s, which this test does not know: add it", field)
		}
		for _, f := range fams {
			want[f] = append(want[f], lits...)
		}
	}
	for _, o := range pushOutcomes {
		want["followpush_pushes_total"] = append(want["followpush_pushes_total"], string(o))
	}
	want["followpush_tasks_total"] = append(want["followpush_tasks_total"], "cooldown", "aggregated", "capped")
	want["followpush_tokens_deleted_total"] = append(want["followpush_tokens_deleted_total"], "unregistered", "invalid_token", "sender_id_mismatch")
	want["followpush_tokens_kept_total"] = append(want["followpush_tokens_kept_total"], "sender_id_mismatch")
	want["followpush_digests_total"] = append(want["followpush_digests_total"], "empty", "deferred", "superseded") // summaryNotSent's result
	if len(want["followpush_tasks_total"]) < 8 || len(want["followpush_digests_total"]) < 8 {
		t.Fatalf("found too few label values in the source (%v): has the code changed shape?", want)
	}
	for fam, values := range want {
		for _, v := range values {
			got, ok := exported[fam][v]
			if !ok || got != 0 {
				t.Errorf("%s{%q}: exported %v at %v; want it at 0 from the start", fam, v, ok, got)
			}
		}
	}
}

// labelLiterals returns, by the name of the field or variable holding the
// counter, the string literals passed to WithLabelValues, or as the result
// of Handler.count, in the package's non-test files.
func labelLiterals(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	gosource.Inspect(t, ".", func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "WithLabelValues" && sel.Sel.Name != "count" {
			return true
		}
		counter, args := sel.X, call.Args
		if sel.Sel.Name == "count" { // h.count(ctx, counter, result): a task result
			if len(args) != 3 {
				return true
			}
			counter, args = args[1], args[2:]
		}
		var holder string
		switch x := counter.(type) {
		case *ast.SelectorExpr:
			holder = x.Sel.Name
		case *ast.Ident:
			holder = x.Name
		}
		for _, a := range args {
			if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				if !slices.Contains(out[holder], v) {
					out[holder] = append(out[holder], v)
				}
			}
		}
		return true
	})
	return out
}
