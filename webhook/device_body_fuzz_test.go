package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/devices"
)

// FuzzDeviceBody feeds arbitrary bodies to the device API's body reader: it
// never panics, every failure is a bad-body error (400), and it accepts
// exactly what refDeviceBody, a strict decoder built on encoding/json,
// accepts, with the same values.
func FuzzDeviceBody(f *testing.F) {
	for _, s := range []string{
		``, " \t\r\n", "\u00a0", `{}`, ` { } `, `null`, `[]`, `"android"`, `{} {}`, `{}x`, `{`,
		`{"platform":"android"}`, `{"platform":"IOS","locale":"zh-CN"}`, `{"locale":"pt-BR","platform":"web"}`,
		`{"platform":1}`, `{"platform":null}`, `{"locale":null}`, `{"platform":true}`, `{"platform":["ios"]}`,
		`{"platform":{"a":1}}`, `{"platform":"web","extra":true}`, `{"extra":{"platform":"ios"}}`,
		`{"PLATFORM":"ios"}`, `{"Platform":"ios"}`, `{"Locale":"en"}`,
		`{"platform":"ios","platform":"android"}`, `{"locale":"en","locale":"en"}`,
		`{"\u0070latform":"ios"}`, `{"platform":"ios","\u0070latform":"web"}`,
		`{"platform":"i\u006fs"}`, `{"locale":"\ud800"}`, "{\"locale\":\"\xff\"}",
		`{"platform":"ios",}`, `{"platform" "ios"}`, `{"platform":"ios"`,
		`{"extra":` + strings.Repeat("[", MaxNesting) + strings.Repeat("]", MaxNesting) + `}`,
		`{"platform":"` + strings.Repeat("a", maxDeviceBody) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("PUT", "/v1/users/u/devices/t", bytes.NewReader(body))
		reg, err := readDeviceBody(r)
		want, ok := refDeviceBody(body)
		if ok != (err == nil) {
			t.Fatalf("readDeviceBody error %v, reference ok=%v (%+v)", err, ok, want)
		}
		if err != nil {
			if !errors.Is(err, errBadDeviceBody) {
				t.Fatalf("error %v is not a bad-body error", err)
			}
			return
		}
		if diff := cmp.Diff(want, reg); diff != "" {
			t.Fatalf("readDeviceBody differs from the reference (-ref +got):\n%s", diff)
		}
		// Whatever was read is then validated by the registry; the two
		// validators must not panic either.
		_ = devices.ValidatePlatform(reg.Platform)
		_ = devices.ValidateLocale(reg.Locale)
	})
}

// refDeviceBody is readDeviceBody's decoding written the slow, obvious way
// with encoding/json: refStructure (json.Decoder.Token) rejects duplicate
// keys, deep nesting and trailing data; a map of raw values then gives the
// fields, exact names only, each a JSON string or null (= absent); other
// fields are ignored unless they are a known name in another case.
func refDeviceBody(body []byte) (devices.Registration, bool) {
	var reg devices.Registration
	if len(body) > maxDeviceBody {
		return reg, false
	}
	if len(bytes.Trim(body, " \t\r\n")) == 0 {
		return reg, true
	}
	if !utf8.Valid(body) || !refStructure(body) {
		return reg, false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return reg, false
	}
	for name, raw := range top {
		known := name == "platform" || name == "locale"
		if !known {
			if strings.EqualFold(name, "platform") || strings.EqualFold(name, "locale") {
				return reg, false
			}
			continue
		}
		if string(raw) == "null" {
			continue
		}
		var v string
		if raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
			return reg, false
		}
		if name == "platform" {
			reg.Platform = strings.ToLower(v)
		} else {
			reg.Locale = v
		}
	}
	return reg, true
}
