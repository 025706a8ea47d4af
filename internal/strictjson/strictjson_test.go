package strictjson_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/followpush/followpush/internal/strictjson"
)

type inner struct {
	Start string `json:"start"`
}

type outer struct {
	Mode  *string `json:"mode"`
	Inner *inner  `json:"inner"`
	Tags  []inner `json:"tags"`
}

// Decode refuses what would lose or change data, names the problem, and
// accepts what clients add; nested objects that decode into structs are
// checked for field names in another case too.
func TestDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, want string // want: "" ok, else a piece of the error
	}{
		{``, ""},
		{" \n", ""},
		{`{}`, ""},
		{`{"mode":"all","extra":{"deep":[1,2,{"x":null}]}}`, ""},
		{`{"mode":null,"inner":{"start":"22:00"}}`, ""},
		{`{"MODE":"all"}`, `member "MODE": names are case-sensitive, want "mode"`},
		{`{"inner":{"Start":"22:00"}}`, `member "Start": names are case-sensitive, want "start"`},
		{`{"tags":[{"Start":"x"}]}`, ""}, // array elements are not checked
		{`{"mode":"a","mode":"b"}`, `duplicate object member name "mode"`},
		{`{"inner":{"start":"a","start":"b"}}`, `duplicate object member name "start"`},
		{`{"mode":1}`, `member "/mode": want a string, got a number`},
		{`{"inner":"x"}`, `member "/inner": want an object, got a string`},
		{`{"inner":{"start":true}}`, `member "/inner/start": want a string, got true`},
		{`{} {}`, `data after the JSON object`},
		{`[]`, `body is not a JSON object`},
		{`null`, `body is not a JSON object`},
		{"{\"mode\":\"\xff\"}", `invalid UTF-8`},
		{`{"extra":` + strings.Repeat("[", strictjson.MaxDepth) + strings.Repeat("]", strictjson.MaxDepth) + `}`, `nested deeper than 32 levels`},
		{`{"extra":` + strings.Repeat("[", strictjson.MaxDepth-1) + strings.Repeat("]", strictjson.MaxDepth-1) + `}`, ""},
	} {
		var v outer
		err := strictjson.Decode([]byte(tc.body), &v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want no error", tc.body, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, strictjson.ErrInvalid)):
			t.Errorf("%q: %v, want an ErrInvalid with %q", tc.body, err, tc.want)
		}
	}
	var v outer
	if err := strictjson.Decode([]byte(`{"mode":"summary","inner":{"start":"22:00"}}`), &v); err != nil || *v.Mode != "summary" || v.Inner.Start != "22:00" {
		t.Fatalf("decoded %+v, %v", v, err)
	}
}
