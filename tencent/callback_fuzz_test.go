package tencent

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/testrig/jsonref"
)

// FuzzParse checks Parse against its invariants and against refParse, a
// slow, obvious parser built on encoding/json.
func FuzzParse(f *testing.F) {
	samples, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(samples) == 0 {
		f.Fatalf("no samples in testdata: %v", err)
	}
	for _, name := range samples {
		body, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, q := range []string{"", CommandFollowAdd, CommandFollowDelete, c2c} {
			f.Add(q, body, uint8(0))
		}
		f.Add("", body, uint8(1))
		f.Add("", body[:len(body)/2], uint8(0))
		f.Add("", append(bytes.Clone(body), "{}"...), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"EventTime"`), []byte(`"From_Account"`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"UserID_002"`), []byte(`"UserID_001"`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"UserID_003"`), []byte(`"UserID_002"`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"UserID_002"`), []byte(`""`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"UserID_002"`), []byte(`null`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"UserID_002"`), []byte(`2`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`"To_Account"`), []byte(`"To\u005fAccount"`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`1702018343678`), []byte(`1.7e12`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`1702018343678`), []byte(`-1`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`1702018343678`), []byte(`9223372036854775808`), 1), uint8(0))
		f.Add("", bytes.Replace(body, []byte(`_001`), []byte("_\xff"), 1), uint8(0))
	}
	f.Add(CommandFollowAdd, []byte(addBody(addEntries(append(numbered(20), "u3", "a", "")...))), uint8(0))
	f.Add(CommandFollowDelete, []byte(delBody(`["b","b","a","","`+id33+`","\u0063"]`)), uint8(3))
	f.Add(c2c, []byte(`{"a":{"b":[{"c":1,"d":{"c":2}}]},"e":[]}`), uint8(0))
	f.Add("", []byte(nested(MaxNesting)), uint8(0))
	f.Add("", []byte(`{`+manyKeys(20, "k3")+`}`), uint8(0))

	f.Fuzz(func(t *testing.T, query string, body []byte, maxFollows uint8) {
		lim := Limits{MaxFollows: int(maxFollows)}
		in := bytes.Clone(body)
		got, err := Parse(query, body, lim)
		if !bytes.Equal(in, body) {
			t.Fatal("Parse modified the body")
		}

		again, err2 := Parse(query, body, lim)
		if diff := cmp.Diff(got, again); diff != "" || errString(err) != errString(err2) {
			t.Fatalf("Parse is not deterministic: %v / %v\n%s", err, err2, diff)
		}

		want, ok := refParse(query, body, lim)
		if ok != (err == nil) {
			t.Fatalf("Parse error %v, reference parser ok=%v (want %+v)", err, ok, want)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if diff := cmp.Diff(Callback{}, got); diff != "" {
				t.Fatalf("Callback returned with an error:\n%s", diff)
			}
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Parse differs from the reference parser (-ref +Parse):\n%s", diff)
		}

		// Invariants, independent of the reference parser.
		if !utf8.Valid(body) || !json.Valid(body) {
			t.Fatal("accepted a body that is not valid UTF-8 JSON")
		}
		if got.Command == "" || (query != "" && got.Command != query) {
			t.Fatalf("Command %q for query %q", got.Command, query)
		}
		if got.Command != CommandFollowAdd && got.Command != CommandFollowDelete {
			if diff := cmp.Diff(Callback{Command: got.Command}, got); diff != "" {
				t.Fatalf("unknown command returned more than its name:\n%s", diff)
			}
			return
		}
		if ValidateUserID(got.From) != nil {
			t.Fatalf("invalid From %q", got.From)
		}
		if got.EventTime <= 0 {
			t.Fatalf("EventTime %d", got.EventTime)
		}
		if got.To != nil && len(got.To) == 0 {
			t.Fatal("To is empty but not nil")
		}
		seen := make(map[string]bool)
		for _, to := range got.To {
			switch {
			case ValidateUserID(to) != nil:
				t.Fatalf("invalid To %q", to)
			case to == got.From:
				t.Fatalf("self-follow %q kept", to)
			case seen[to]:
				t.Fatalf("repeat %q kept", to)
			}
			seen[to] = true
		}
		entries := listLen(t, body, got.Command)
		if len(got.To)+got.Skipped != entries {
			t.Fatalf("len(To) %d + Skipped %d != %d list entries", len(got.To), got.Skipped, entries)
		}
		if got.Invalid < 0 || got.Invalid > got.Skipped {
			t.Fatalf("Invalid %d, Skipped %d", got.Invalid, got.Skipped)
		}
		max := lim.MaxFollows
		if max == 0 {
			max = DefaultMaxFollows
		}
		if entries == 0 || entries > max {
			t.Fatalf("accepted a list of %d entries (limit %d)", entries, max)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// listLen returns the length of the followee list of an accepted body.
func listLen(t *testing.T, body []byte, command string) int {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	name := "FollowList"
	if command == CommandFollowDelete {
		name = "To_Account"
	}
	var list []json.RawMessage
	if err := json.Unmarshal(top[name], &list); err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// refParse is Parse written the slow, obvious way with encoding/json, for
// comparison. It reports only whether the body is accepted.
func refParse(query string, body []byte, lim Limits) (Callback, bool) {
	if !utf8.Valid(body) || !jsonref.Structure(body, MaxNesting) {
		return Callback{}, false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return Callback{}, false
	}
	isNull := func(raw json.RawMessage) bool { return raw == nil || string(raw) == "null" }

	cmd := query
	if raw := top["CallbackCommand"]; !isNull(raw) {
		var b string
		if err := json.Unmarshal(raw, &b); err != nil {
			return Callback{}, false
		}
		if cmd == "" {
			cmd = b
		} else if b != cmd {
			return Callback{}, false
		}
	}
	switch cmd {
	case "":
		return Callback{}, false
	case CommandFollowAdd, CommandFollowDelete:
	default:
		return Callback{Command: cmd}, true
	}

	cb := Callback{Command: cmd}
	if raw := top["From_Account"]; isNull(raw) || json.Unmarshal(raw, &cb.From) != nil || ValidateUserID(cb.From) != nil {
		return Callback{}, false
	}

	max := lim.MaxFollows
	if max <= 0 {
		max = DefaultMaxFollows
	}
	name := "FollowList"
	if cmd == CommandFollowDelete {
		name = "To_Account"
	}
	var list []json.RawMessage
	if raw := top[name]; isNull(raw) || json.Unmarshal(raw, &list) != nil || len(list) == 0 || len(list) > max {
		return Callback{}, false
	}
	var ids []*string // nil: no To_Account
	for _, e := range list {
		if isNull(e) {
			return Callback{}, false
		}
		raw := e
		if cmd == CommandFollowAdd {
			var entry map[string]json.RawMessage
			if json.Unmarshal(e, &entry) != nil {
				return Callback{}, false
			}
			raw = entry["To_Account"]
		}
		if isNull(raw) {
			ids = append(ids, nil)
			continue
		}
		var id string
		if json.Unmarshal(raw, &id) != nil {
			return Callback{}, false
		}
		ids = append(ids, &id)
	}

	raw := top["EventTime"]
	if isNull(raw) || !(raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9') ||
		strings.ContainsAny(string(raw), ".eE") {
		return Callback{}, false
	}
	t, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || t <= 0 {
		return Callback{}, false
	}
	cb.EventTime = t

	seen := make(map[string]bool)
	for _, id := range ids {
		switch {
		case id == nil || ValidateUserID(*id) != nil:
			cb.Skipped++
			cb.Invalid++
		case *id == cb.From || seen[*id]:
			cb.Skipped++
		default:
			seen[*id] = true
			cb.To = append(cb.To, *id)
		}
	}
	return cb, true
}
