package main

import (
	"os"
	"strings"
	"testing"

	"github.com/followpush/followpush/config"
)

// The README's Quick start shows the walkthrough standalone prints with
// its defaults, line for line.
func TestReadmeShowsTheWalkthrough(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadStandalone(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printWalkthrough(&b, cfg, "http://127.0.0.1:8080")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := "```sh\n" + strings.Trim(b.String(), "\n") + "\n```\n"
	if !strings.Contains(string(readme), want) {
		t.Errorf("README.md's Quick start lacks the walkthrough standalone prints:\n%s", want)
	}
}
