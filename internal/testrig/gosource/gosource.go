// Package gosource walks a package's own Go source, for tests that check
// the code against what it exports or documents (the label values it
// counts with, the strings it logs).
package gosource

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// Inspect calls [ast.Inspect] with visit on each non-test Go file in dir.
// It fails t when dir holds no Go file or a file does not parse.
func Inspect(t testing.TB, dir string, visit func(ast.Node) bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (%v)", dir, err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, visit)
	}
}
