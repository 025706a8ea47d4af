package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/followpush/followpush/tasks"
)

// Every default -h (and docs/configuration.md) states is the value a
// program uses when the setting is unset: loading with the setting set to
// its stated default gives the same configuration as loading without it.
// Defaults stated in words ("(required)", "(embedded in-memory Redis)")
// are not values and are skipped, as is standalone's API_TOKEN (a
// sentence: the token depends on LISTEN_ADDR).
func TestStatedDefaultsAreTheDefaults(t *testing.T) {
	t.Parallel()
	base := map[Program]map[string]string{
		ProgramReceiver:   {"TENCENT_SDKAPPID": "1400000001"},
		ProgramWorker:     {"FCM_PROJECT_ID": "p"},
		ProgramStandalone: {"API_TOKEN": "a-token-of-sixteen-bytes"},
	}
	load := func(p Program, m map[string]string) (any, error) {
		getenv := func(k string) string { return m[k] }
		switch p {
		case ProgramReceiver:
			return LoadReceiver(getenv)
		case ProgramWorker:
			w, err := LoadWorker(getenv)
			w.Texts = nil // parsed templates hold functions; checked below
			return w, err
		default:
			s, err := LoadStandalone(getenv)
			s.Worker.Texts = nil
			return s, err
		}
	}
	checked := 0
	for _, p := range []Program{ProgramReceiver, ProgramWorker, ProgramStandalone} {
		unset, err := load(p, base[p])
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, s := range Settings {
			def := s.DefaultFor(p)
			if !s.UsedBy(p) || def == "" || strings.HasPrefix(def, "(") || s.Name == "API_TOKEN" && p == ProgramStandalone {
				continue
			}
			m := map[string]string{s.Name: def}
			for k, v := range base[p] {
				m[k] = v
			}
			set, err := load(p, m)
			if err != nil {
				t.Errorf("%s: %s=%q, its stated default, is refused: %v", p, s.Name, def, err)
				continue
			}
			if !reflect.DeepEqual(unset, set) {
				t.Errorf("%s: %s=%q, its stated default, gives another configuration than leaving it unset", p, s.Name, def)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Errorf("checked %d defaults: the skip rule skips too much", checked)
	}
	// The texts: PUSH_TITLE and PUSH_BODY at their stated defaults render
	// as the built-in English does.
	w, err := LoadWorker(env(map[string]string{"FCM_PROJECT_ID": "p"}))
	if err != nil {
		t.Fatal(err)
	}
	w2, err := LoadWorker(env(map[string]string{"FCM_PROJECT_ID": "p", "PUSH_TITLE": setting("PUSH_TITLE").Default, "PUSH_BODY": setting("PUSH_BODY").Default}))
	if err != nil {
		t.Fatal(err)
	}
	f := tasks.Follow{From: "alice", To: "bob"}
	a, err1 := w.Texts.RenderLocale("en", f)
	b, err2 := w2.Texts.RenderLocale("en", f)
	if err1 != nil || err2 != nil || a != b {
		t.Errorf("texts at the stated defaults render %+v (%v), unset %+v (%v)", b, err2, a, err1)
	}
}

func setting(name string) Setting {
	for _, s := range Settings {
		if s.Name == name {
			return s
		}
	}
	panic("no setting " + name)
}
