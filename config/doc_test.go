package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated settings table of docs/configuration.md")

// configurationDoc is the guide whose settings table is generated from
// [Settings].
const configurationDoc = "../docs/configuration.md"

// Markers around the generated table in configurationDoc.
const (
	tableBegin = "<!-- settings table: generated from config.Settings by `go generate ./config`; do not edit -->"
	tableEnd   = "<!-- end of settings table -->"
)

// settingsTable renders Settings as a Markdown table: per setting, its
// default in each program that reads it ("—" where a program does not).
func settingsTable() string {
	var b strings.Builder
	b.WriteString("| setting | receiver | worker | standalone | meaning |\n| --- | --- | --- | --- | --- |\n")
	cell := func(s Setting, p Program) string {
		if !s.UsedBy(p) {
			return "—"
		}
		d := s.DefaultFor(p)
		switch {
		case d == "":
			return "unset"
		case strings.HasPrefix(d, "(") || strings.Contains(d, " on loopback"):
			return strings.Trim(d, "()")
		}
		return "`" + d + "`"
	}
	esc := strings.NewReplacer("|", `\|`)
	for _, s := range Settings {
		b.WriteString("| `" + s.Name + "` | " + esc.Replace(cell(s, ProgramReceiver)) + " | " + esc.Replace(cell(s, ProgramWorker)) + " | " +
			esc.Replace(cell(s, ProgramStandalone)) + " | " + esc.Replace(s.Help) + " |\n")
	}
	return b.String()
}

// The settings table of docs/configuration.md is the one Settings gives
// (-h prints the same): run `go generate ./config` after changing a
// setting.
func TestConfigurationDocIsCurrent(t *testing.T) {
	b, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers of the generated table", configurationDoc)
	}
	want := doc[:i] + tableBegin + "\n\n" + settingsTable() + "\n" + doc[j:]
	if want == doc {
		return
	}
	if *update {
		if err := os.WriteFile(configurationDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's settings table is not the one config.Settings gives: run go generate ./config", configurationDoc)
}
