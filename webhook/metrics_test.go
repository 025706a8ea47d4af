package webhook_test

import (
	"go/ast"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/internal/testrig/gosource"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/webhook"
)

// A fresh receiver exports at 0 every webhook result for each command
// label and every follows result: the values the code counts with (the result constants, the literals passed
// to WithLabelValues).
func TestCountersStartAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	webhook.NewMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]map[string]float64{} // family -> sorted "k=v,..." -> value
	for _, mf := range mfs {
		if mf.GetType().String() != "COUNTER" {
			continue
		}
		exported[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			var kv []string
			for _, lp := range m.GetLabel() {
				kv = append(kv, lp.GetName()+"="+lp.GetValue())
			}
			exported[mf.GetName()][strings.Join(kv, ",")] = m.GetCounter().GetValue()
		}
	}
	results, follows := sourceLabelValues(t)
	if len(results) < 6 || len(follows) < 4 {
		t.Fatalf("found results %v and follows results %v in the source: has the code changed shape?", results, follows)
	}
	var want []struct{ family, labels string }
	for _, cmd := range []string{tencent.CommandFollowAdd, tencent.CommandFollowDelete, "other"} {
		for _, r := range results {
			want = append(want, struct{ family, labels string }{"followpush_webhooks_total", "command=" + cmd + ",result=" + r})
		}
	}
	for _, r := range follows {
		want = append(want, struct{ family, labels string }{"followpush_follows_total", "result=" + r})
	}
	for _, w := range want {
		v, ok := exported[w.family][w.labels]
		if !ok || v != 0 {
			t.Errorf("%s{%s}: exported %v at %v; want it at 0 from the start", w.family, w.labels, ok, v)
		}
	}
}

// sourceLabelValues returns the values of the webhook result constants
// (result...) and the literals passed to follows.WithLabelValues in the
// package's non-test files.
func sourceLabelValues(t *testing.T) (results, follows []string) {
	t.Helper()
	gosource.Inspect(t, ".", func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if strings.HasPrefix(name.Name, "result") && i < len(n.Values) {
					if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						results = append(results, v)
					}
				}
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "WithLabelValues" {
				return true
			}
			if holder, ok := sel.X.(*ast.SelectorExpr); !ok || holder.Sel.Name != "follows" {
				return true
			}
			for _, a := range n.Args {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					follows = append(follows, v)
				}
			}
		}
		return true
	})
	return results, follows
}
