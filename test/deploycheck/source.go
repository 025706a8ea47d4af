package deploycheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
)

// MetricSources are the files, relative to the module root, that define
// followpush's own metrics.
var MetricSources = []string{"webhook/metrics.go", "devices/api.go", "preferences/api.go", "notifier/metrics.go", "history/metrics.go"}

// SourceMetrics reads the metric definitions in [MetricSources] under the
// module root: every prometheus.CounterOpts, GaugeOpts, HistogramOpts or
// SummaryOpts literal passed to a constructor, with its Name and, for a
// vector (a New...Vec constructor), the label names passed next to it. It
// fails when a file defines none (the code changed shape) or a definition
// cannot be read.
func SourceMetrics(moduleRoot string) (Schema, error) {
	s := Schema{}
	for _, f := range MetricSources {
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, filepath.Join(moduleRoot, filepath.FromSlash(f)), nil, 0)
		if err != nil {
			return nil, err
		}
		n := 0
		var bad error
		ast.Inspect(file, func(node ast.Node) bool {
			call, ok := node.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 || bad != nil {
				return bad == nil
			}
			lit, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			kind := strings.ToLower(strings.TrimSuffix(sel.Sel.Name, "Opts"))
			switch kind {
			case "counter", "gauge", "histogram", "summary":
			default:
				return true
			}
			where := fset.Position(lit.Pos()).String()
			name := ""
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if id, isID := kv.Key.(*ast.Ident); isID && id.Name == "Name" {
					name, err = stringLit(kv.Value)
					if err != nil {
						bad = fmt.Errorf("%s: Name: %v", where, err)
						return false
					}
				}
			}
			if name == "" {
				bad = fmt.Errorf("%s: %s without a literal Name", where, sel.Sel.Name)
				return false
			}
			m := Metric{Type: kind, Labels: map[string]bool{}, Source: f}
			if isVecConstructor(call) {
				labels, ok := call.Args[1].(*ast.CompositeLit)
				if !ok {
					bad = fmt.Errorf("%s: %s: label names are not a []string literal", where, name)
					return false
				}
				for _, e := range labels.Elts {
					l, err := stringLit(e)
					if err != nil {
						bad = fmt.Errorf("%s: %s label: %v", where, name, err)
						return false
					}
					m.Labels[l] = true
				}
			}
			if _, dup := s[name]; dup {
				bad = fmt.Errorf("%s: %s defined twice", where, name)
				return false
			}
			s[name] = m
			n++
			return true
		})
		if bad != nil {
			return nil, bad
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no metric definitions found (has the code changed shape? update SourceMetrics)", f)
		}
	}
	return s, nil
}

// isVecConstructor reports whether call is a New...Vec constructor, whose
// second argument is the label names (New...Func constructors take a
// function there).
func isVecConstructor(call *ast.CallExpr) bool {
	var name string
	switch fn := call.Fun.(type) {
	case *ast.SelectorExpr:
		name = fn.Sel.Name
	case *ast.Ident:
		name = fn.Name
	}
	return strings.HasSuffix(name, "Vec")
}

func stringLit(e ast.Expr) (string, error) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", fmt.Errorf("not a string literal")
	}
	return strconv.Unquote(b.Value)
}
