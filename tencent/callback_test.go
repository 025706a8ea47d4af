package tencent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	id32 = "abcdefghijklmnopqrstuvwxyz012345"  // 32 bytes: the longest valid UserID
	id33 = "abcdefghijklmnopqrstuvwxyz0123456" // 33 bytes: one too long
	c2c  = "C2C.CallbackAfterSendMsg"
)

// readSample returns testdata/name.
func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addBody is a FollowAdd body from "a" at 1702018343678 with the given
// FollowList JSON.
func addBody(list string) string {
	return `{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"a","FollowList":` +
		list + `,"EventTime":1702018343678}`
}

// delBody is a FollowDelete body from "a" at 1702018343678 with the given
// To_Account JSON.
func delBody(list string) string {
	return `{"CallbackCommand":"Follow.CallbackAfterFollowDelete","From_Account":"a","To_Account":` +
		list + `,"EventTime":1702018343678}`
}

// addEntries is a FollowList of the given To_Account strings.
func addEntries(ids ...string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"To_Account":%q}`, id)
	}
	b.WriteByte(']')
	return b.String()
}

// numbered returns n distinct UserIDs u0, u1, ...
func numbered(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%d", i)
	}
	return ids
}

// nested returns an unknown-command body whose field "x" nests arrays so
// that the deepest container is at depth levels (the top object is 1).
func nested(levels int) string {
	return `{"CallbackCommand":"X.Y","x":` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `}`
}

func TestParseSamples(t *testing.T) {
	t.Parallel()
	add := Callback{
		Command:   CommandFollowAdd,
		From:      "UserID_001",
		To:        []string{"UserID_002", "UserID_003"},
		EventTime: 1702018343678,
	}
	del := add
	del.Command = CommandFollowDelete
	tests := []struct {
		file  string
		query string
		want  Callback
	}{
		{"follow-add.json", CommandFollowAdd, add},
		{"follow-add.json", "", add},
		{"follow-delete.json", CommandFollowDelete, del},
		{"follow-delete.json", "", del},
		{"c2c-after-send-msg.json", c2c, Callback{Command: c2c}},
		{"c2c-after-send-msg.json", "", Callback{Command: c2c}},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/query="+tt.query, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.query, readSample(t, tt.file), Limits{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseGood(t *testing.T) {
	t.Parallel()
	const et = 1702018343678
	many := numbered(40)
	manyWithRepeats := append(append([]string{}, many...), many[3], many[39], many[17], "a")
	tests := []struct {
		name  string
		query string
		body  string
		lim   Limits
		want  Callback
	}{
		{
			name:  "unknown fields anywhere",
			query: CommandFollowAdd,
			body: `{"SdkAppid":1400000000,"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"a",
				"FollowList":[{"Extra":{"x":[1,2.5e3,true,null]},"To_Account":"b","Later":"z"}],
				"EventTime":1702018343678,"New":null,"Nested":{"deep":[{"k":"v"}]}}`,
			want: Callback{Command: CommandFollowAdd, From: "a", To: []string{"b"}, EventTime: et},
		},
		{
			name:  "self-follow skipped",
			query: CommandFollowAdd,
			body:  addBody(addEntries("a", "b")),
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b"}, EventTime: et, Skipped: 1},
		},
		{
			name:  "repeats collapsed in list order",
			query: CommandFollowAdd,
			body:  addBody(addEntries("c", "b", "c", "d", "b")),
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"c", "b", "d"}, EventTime: et, Skipped: 2},
		},
		{
			name:  "repeats collapsed in a long list",
			query: CommandFollowAdd,
			body:  addBody(addEntries(manyWithRepeats...)),
			want:  Callback{Command: CommandFollowAdd, From: "a", To: many, EventTime: et, Skipped: 4},
		},
		{
			name:  "invalid entries skipped and counted",
			query: CommandFollowAdd,
			body:  addBody(`[{"To_Account":""},{},{"To_Account":null},{"To_Account":"` + id33 + `"},{"To_Account":"b"},{"Other":1}]`),
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b"}, EventTime: et, Skipped: 5, Invalid: 5},
		},
		{
			name:  "nothing left",
			query: CommandFollowAdd,
			body:  addBody(`[{"To_Account":"a"},{"To_Account":""},{"To_Account":"a"}]`),
			want:  Callback{Command: CommandFollowAdd, From: "a", EventTime: et, Skipped: 3, Invalid: 1},
		},
		{
			name:  "delete skips invalid, self and repeats",
			query: CommandFollowDelete,
			body:  delBody(`["", "b", "` + id33 + `", "b", "a", "c"]`),
			want:  Callback{Command: CommandFollowDelete, From: "a", To: []string{"b", "c"}, EventTime: et, Skipped: 4, Invalid: 2},
		},
		{
			name:  "delete with nothing left",
			query: CommandFollowDelete,
			body:  delBody(`["a"]`),
			want:  Callback{Command: CommandFollowDelete, From: "a", EventTime: et, Skipped: 1},
		},
		{
			name:  "32-byte UserIDs",
			query: CommandFollowAdd,
			body:  `{"From_Account":"` + id32 + `","FollowList":[{"To_Account":"` + id32[1:] + `x"}],"EventTime":1}`,
			want:  Callback{Command: CommandFollowAdd, From: id32, To: []string{id32[1:] + "x"}, EventTime: 1},
		},
		{
			name:  "multi-byte UserIDs count bytes",
			query: CommandFollowDelete,
			body:  `{"From_Account":"` + strings.Repeat("é", 16) + `","To_Account":["` + strings.Repeat("ü", 16) + `","` + strings.Repeat("ü", 17) + `"],"EventTime":1}`,
			want:  Callback{Command: CommandFollowDelete, From: strings.Repeat("é", 16), To: []string{strings.Repeat("ü", 16)}, EventTime: 1, Skipped: 1, Invalid: 1},
		},
		{
			name:  "escapes are decoded before comparing",
			query: CommandFollowAdd,
			body:  `{"From\u005fAccount":"\u0061","FollowList":[{"To_Account":"a"},{"To_Account":"\u0062"},{"To_Account":"b"},{"To_Account":"\"/\\"}],"EventTime":1}`,
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b", `"/\`}, EventTime: 1, Skipped: 2},
		},
		{
			name:  "escaped body command equal to the query",
			query: CommandFollowDelete,
			body:  `{"CallbackCommand":"Follow.CallbackAfterFollow\u0044elete","From_Account":"a","To_Account":["b"],"EventTime":1}`,
			want:  Callback{Command: CommandFollowDelete, From: "a", To: []string{"b"}, EventTime: 1},
		},
		{
			name:  "body command null, query has it",
			query: CommandFollowDelete,
			body:  `{"CallbackCommand":null,"From_Account":"a","To_Account":["b"],"EventTime":1}`,
			want:  Callback{Command: CommandFollowDelete, From: "a", To: []string{"b"}, EventTime: 1},
		},
		{
			name:  "whitespace around and inside",
			query: CommandFollowAdd,
			body:  " \r\n\t{ \"From_Account\" : \"a\" ,\n\"FollowList\" : [ { \"To_Account\" : \"b\" } , {\"To_Account\":\"c\"} ] , \"EventTime\" : 7 }\n\n",
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b", "c"}, EventTime: 7},
		},
		{
			name:  "largest EventTime",
			query: CommandFollowAdd,
			body:  `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":9223372036854775807}`,
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b"}, EventTime: 9223372036854775807},
		},
		{
			name:  "follow add ignores a top-level To_Account",
			query: CommandFollowAdd,
			body:  `{"From_Account":"a","To_Account":"zzz","FollowList":[{"To_Account":"b"}],"EventTime":1}`,
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b"}, EventTime: 1},
		},
		{
			name:  "follow delete ignores FollowList",
			query: CommandFollowDelete,
			body:  `{"From_Account":"a","FollowList":7,"To_Account":["b"],"EventTime":1}`,
			want:  Callback{Command: CommandFollowDelete, From: "a", To: []string{"b"}, EventTime: 1},
		},
		{
			name:  "list at the limit",
			query: CommandFollowAdd,
			body:  addBody(addEntries("b", "c")),
			lim:   Limits{MaxFollows: 2},
			want:  Callback{Command: CommandFollowAdd, From: "a", To: []string{"b", "c"}, EventTime: et},
		},
		{
			name:  "list at the default limit",
			query: CommandFollowAdd,
			body:  addBody(addEntries(numbered(DefaultMaxFollows)...)),
			want:  Callback{Command: CommandFollowAdd, From: "a", To: numbered(DefaultMaxFollows), EventTime: et},
		},
		{
			name: "unknown command from the body",
			body: `{"X":[[[]]],"CallbackCommand":"Group.CallbackAfterCreateGroup","From_Account":7}`,
			want: Callback{Command: "Group.CallbackAfterCreateGroup"},
		},
		{
			name:  "unknown command: follow fields are not checked",
			query: "State.StateChange",
			body:  `{"EventTime":"soon","FollowList":{},"To_Account":[1]}`,
			want:  Callback{Command: "State.StateChange"},
		},
		{
			name:  "unknown command: empty object",
			query: c2c,
			body:  `{}`,
			want:  Callback{Command: c2c},
		},
		{
			name: "nesting at the limit",
			body: nested(MaxNesting),
			want: Callback{Command: "X.Y"},
		},
		{
			name:  "many distinct keys",
			query: c2c,
			body:  `{` + manyKeys(100, "") + `}`,
			want:  Callback{Command: c2c},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.query, []byte(tt.body), tt.lim)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// manyKeys returns n object members "k0":0,"k1":1,... and then, when extra
// is not "", one more member with key extra.
func manyKeys(n int, extra string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	if extra != "" {
		fmt.Fprintf(&b, `,%q:0`, extra)
	}
	return b.String()
}

func TestParseBad(t *testing.T) {
	t.Parallel()
	add, del := CommandFollowAdd, CommandFollowDelete
	tests := []struct {
		name   string
		query  string
		body   string
		lim    Limits
		reason string // expected in the error message
	}{
		// Not one JSON object.
		{"invalid UTF-8", add, `{"From_Account":"a` + "\xff" + `","FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "not valid UTF-8"},
		{"invalid UTF-8 in an unknown field", c2c, `{"x":"` + "\xc3\x28" + `"}`, Limits{}, "not valid UTF-8"},
		{"empty body", add, ``, Limits{}, "empty body"},
		{"whitespace only", add, " \n", Limits{}, "empty body"},
		{"top-level array", add, `[` + addBody(`[{"To_Account":"b"}]`) + `]`, Limits{}, "not a JSON object"},
		{"top-level string", add, `"{}"`, Limits{}, "not a JSON object"},
		{"top-level null", add, `null`, Limits{}, "not a JSON object"},
		{"top-level number", add, `1`, Limits{}, "not a JSON object"},
		{"unknown command, array", c2c, `[]`, Limits{}, "not a JSON object"},
		{"unknown command, string", c2c, `"x"`, Limits{}, "not a JSON object"},
		{"unknown command, null", c2c, `null`, Limits{}, "not a JSON object"},
		{"byte order mark", add, "\ufeff" + addBody(`[{"To_Account":"b"}]`), Limits{}, "not a JSON object"},
		{"trailing garbage", add, addBody(`[{"To_Account":"b"}]`) + `x`, Limits{}, "data after the JSON object"},
		{"second object", add, addBody(`[{"To_Account":"b"}]`) + ` {}`, Limits{}, "data after the JSON object"},
		{"trailing comma after object", c2c, `{},`, Limits{}, "data after the JSON object"},
		{"truncated", add, addBody(`[{"To_Account":"b"}]`)[:40], Limits{}, "unexpected end of JSON input"},
		{"unknown command truncated", c2c, `{"a":[1,2`, Limits{}, "unexpected end of JSON input"},
		{"missing colon", c2c, `{"a" 1}`, Limits{}, "invalid character '1'"},
		{"trailing comma in object", c2c, `{"a":1,}`, Limits{}, "invalid character '}'"},
		{"trailing comma in array", c2c, `{"a":[1,]}`, Limits{}, "invalid character ']'"},
		{"single quotes", c2c, `{'a':1}`, Limits{}, `invalid character '\''`},
		{"bad escape", c2c, `{"a":"\x41"}`, Limits{}, "invalid character 'x'"},
		{"short unicode escape", c2c, `{"a":"\u12"}`, Limits{}, `invalid character '"'`},
		{"control character in string", c2c, "{\"a\":\"\t\"}", Limits{}, `invalid character '\t'`},
		{"leading zero", c2c, `{"a":01}`, Limits{}, "invalid character '1'"},
		{"bare minus", c2c, `{"a":-}`, Limits{}, "invalid character '}'"},
		{"fraction without digits", c2c, `{"a":1.}`, Limits{}, "invalid character '}'"},
		{"exponent without digits", c2c, `{"a":1e+}`, Limits{}, "invalid character '}'"},
		{"NaN", c2c, `{"a":NaN}`, Limits{}, "invalid character 'N'"},
		{"misspelt literal", c2c, `{"a":nul}`, Limits{}, "invalid character '}'"},
		{"comment", c2c, `{"a":1 /* hi */}`, Limits{}, "invalid character '/'"},
		{"nesting too deep", "", nested(MaxNesting + 1), Limits{}, "nesting deeper than 32"},

		// Duplicate keys.
		{"duplicate top-level key", add, `{"From_Account":"a","From_Account":"b","FollowList":[{"To_Account":"c"}],"EventTime":1}`, Limits{}, `duplicate key "From_Account"`},
		{"duplicate command", "", `{"CallbackCommand":"Follow.CallbackAfterFollowAdd","CallbackCommand":"X.Y"}`, Limits{}, `duplicate key "CallbackCommand"`},
		{"duplicate key in FollowList entry", add, addBody(`[{"To_Account":"b","To_Account":"c"}]`), Limits{}, `duplicate key "To_Account"`},
		{"duplicate key deep in unknown field", c2c, `{"MsgBody":[{"MsgContent":{"Text":"a","Text":"b"}}]}`, Limits{}, `duplicate key "Text"`},
		{"duplicate key spelt with an escape", add, `{"From_Account":"a","From\u005fAccount":"b"}`, Limits{}, `duplicate key "From_Account"`},
		{"duplicate key in a large object", c2c, `{` + manyKeys(100, "k57") + `}`, Limits{}, `duplicate key "k57"`},
		{"sibling objects may share keys, not within", c2c, `{"a":{"x":1},"b":{"x":1,"y":2,"x":3}}`, Limits{}, `duplicate key "x"`},

		// CallbackCommand.
		{"command mismatch", del, addBody(`[{"To_Account":"b"}]`), Limits{}, "differs from"},
		{"command mismatch on unknown command", c2c, addBody(`[{"To_Account":"b"}]`), Limits{}, "differs from"},
		{"body command empty string", add, `{"CallbackCommand":"","From_Account":"a"}`, Limits{}, "differs from"},
		{"no command", "", `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "no CallbackCommand"},
		{"no command, body null", "", `{"CallbackCommand":null}`, Limits{}, "no CallbackCommand"},
		{"no command, body empty", "", `{"CallbackCommand":""}`, Limits{}, "no CallbackCommand"},
		{"command a number", add, `{"CallbackCommand":1}`, Limits{}, "CallbackCommand: got number"},
		{"command an object", "", `{"CallbackCommand":{"a":"b"}}`, Limits{}, "CallbackCommand: got object"},
		{"command an array", c2c, `{"CallbackCommand":["C2C.CallbackAfterSendMsg"]}`, Limits{}, "CallbackCommand: got array"},

		// From_Account.
		{"From_Account missing", add, `{"FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "missing From_Account"},
		{"From_Account null", add, `{"From_Account":null,"FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "missing From_Account"},
		{"From_Account a number", add, `{"From_Account":1,"FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "From_Account: got number"},
		{"From_Account an array", del, `{"From_Account":["a"],"To_Account":["b"],"EventTime":1}`, Limits{}, "From_Account: got array"},
		{"From_Account a boolean", del, `{"From_Account":true,"To_Account":["b"],"EventTime":1}`, Limits{}, "From_Account: got boolean"},
		{"From_Account empty", add, `{"From_Account":"","FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "empty From_Account"},
		{"From_Account too long", del, `{"From_Account":"` + id33 + `","To_Account":["b"],"EventTime":1}`, Limits{}, "From_Account longer than 32 bytes"},

		// FollowList.
		{"FollowList missing", add, `{"From_Account":"a","EventTime":1}`, Limits{}, "missing FollowList"},
		{"FollowList null", add, addBody(`null`), Limits{}, "missing FollowList"},
		{"FollowList an object", add, addBody(`{"To_Account":"b"}`), Limits{}, "FollowList: got object"},
		{"FollowList a string", add, addBody(`"b"`), Limits{}, "FollowList: got string"},
		{"FollowList empty", add, addBody(`[]`), Limits{}, "empty FollowList"},
		{"FollowList over the limit", add, addBody(addEntries("b", "c", "d")), Limits{MaxFollows: 2}, "FollowList has 3 entries, more than 2"},
		{"FollowList over the default limit", add, addBody(addEntries(numbered(DefaultMaxFollows + 1)...)), Limits{}, "more than 1000"},
		{"FollowList entry a string", add, addBody(`[{"To_Account":"b"},"c"]`), Limits{}, "FollowList[1]: got string"},
		{"FollowList entry null", add, addBody(`[null]`), Limits{}, "FollowList[0]: got null"},
		{"FollowList entry an array", add, addBody(`[["b"]]`), Limits{}, "FollowList[0]: got array"},
		{"FollowList To_Account a number", add, addBody(`[{"To_Account":"b"},{"To_Account":2}]`), Limits{}, "FollowList[1].To_Account: got number"},
		{"FollowList To_Account an array", add, addBody(`[{"To_Account":["b"]}]`), Limits{}, "FollowList[0].To_Account: got array"},
		{"FollowList To_Account an object", add, addBody(`[{"To_Account":{}}]`), Limits{}, "FollowList[0].To_Account: got object"},
		{"FollowList To_Account a boolean", add, addBody(`[{"To_Account":false}]`), Limits{}, "FollowList[0].To_Account: got boolean"},

		// To_Account of FollowDelete.
		{"To_Account missing", del, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":1}`, Limits{}, "missing To_Account"},
		{"To_Account null", del, delBody(`null`), Limits{}, "missing To_Account"},
		{"To_Account a string", del, delBody(`"b"`), Limits{}, "To_Account: got string"},
		{"To_Account an object", del, delBody(`{"b":1}`), Limits{}, "To_Account: got object"},
		{"To_Account empty", del, delBody(`[]`), Limits{}, "empty To_Account"},
		{"To_Account over the limit", del, delBody(`["b","c","d"]`), Limits{MaxFollows: 2}, "To_Account has 3 entries, more than 2"},
		{"To_Account element a number", del, delBody(`["b",3]`), Limits{}, "To_Account[1]: got number"},
		{"To_Account element null", del, delBody(`[null]`), Limits{}, "To_Account[0]: got null"},
		{"To_Account element an object", del, delBody(`[{"To_Account":"b"}]`), Limits{}, "To_Account[0]: got object"},

		// EventTime.
		{"EventTime missing", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}]}`, Limits{}, "missing EventTime"},
		{"EventTime null", del, `{"From_Account":"a","To_Account":["b"],"EventTime":null}`, Limits{}, "missing EventTime"},
		{"EventTime a string", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":"1702018343678"}`, Limits{}, "EventTime: got string"},
		{"EventTime a boolean", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":true}`, Limits{}, "EventTime: got boolean"},
		{"EventTime a fraction", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":1702018343678.5}`, Limits{}, "not an integer"},
		{"EventTime with .0", del, `{"From_Account":"a","To_Account":["b"],"EventTime":1.0}`, Limits{}, "not an integer"},
		{"EventTime with an exponent", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":1.702018343678e12}`, Limits{}, "not an integer"},
		{"EventTime with a capital exponent", del, `{"From_Account":"a","To_Account":["b"],"EventTime":17E11}`, Limits{}, "not an integer"},
		{"EventTime negative", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":-1702018343678}`, Limits{}, "not positive"},
		{"EventTime minus zero", del, `{"From_Account":"a","To_Account":["b"],"EventTime":-0}`, Limits{}, "not positive"},
		{"EventTime zero", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":0}`, Limits{}, "EventTime is zero"},
		{"EventTime past int64", add, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":9223372036854775808}`, Limits{}, "out of range"},
		{"EventTime huge", del, `{"From_Account":"a","To_Account":["b"],"EventTime":1` + strings.Repeat("0", 400) + `}`, Limits{}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.query, []byte(tt.body), tt.lim)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want an error wrapping ErrMalformed", got, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Parse error %q does not say %q", err, tt.reason)
			}
			if diff := cmp.Diff(Callback{}, got); diff != "" {
				t.Errorf("Parse returned a Callback with an error (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseErrorMessageIsShort checks that a huge offending key or value is
// cut in the error message (the message is logged).
func TestParseErrorMessageIsShort(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 100_000)
	for _, body := range []string{
		`{"` + long + `":1,"` + long + `":2}`,
		`{"CallbackCommand":"` + long + `"}`,
		`{"From_Account":"a","To_Account":["b"],"EventTime":1.` + strings.Repeat("5", 100_000) + `}`,
	} {
		_, err := Parse(CommandFollowDelete, []byte(body), Limits{})
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse: %v, want ErrMalformed", err)
		}
		if n := len(err.Error()); n > 200 {
			t.Errorf("error message is %d bytes long: %.100q...", n, err)
		}
	}
}

// TestParseDoesNotKeepBody checks that the returned strings do not share
// memory with the body, which the caller may reuse.
func TestParseDoesNotKeepBody(t *testing.T) {
	t.Parallel()
	body := []byte(addBody(addEntries("b", "c")))
	got, err := Parse("", body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	want := Callback{Command: CommandFollowAdd, From: "a", To: []string{"b", "c"}, EventTime: 1702018343678}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Callback changed with the body (-want +got):\n%s", diff)
	}
}

func BenchmarkParse(b *testing.B) {
	for _, n := range []int{1, 20} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("UserID_%03d", i+2)
		}
		body := []byte(`{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"UserID_001","FollowList":` +
			addEntries(ids...) + `,"EventTime":1702018343678}`)
		b.Run(fmt.Sprintf("followees=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				cb, err := Parse(CommandFollowAdd, body, Limits{})
				if err != nil || len(cb.To) != n {
					b.Fatalf("Parse = %+v, %v", cb, err)
				}
			}
		})
	}
}
