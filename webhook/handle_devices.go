package webhook

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/followpush/followpush/devices"
)

var errBadDeviceBody = errors.New("bad device body")

// maxDeviceBody bounds the optional JSON body of PUT .../devices/{token}.
const maxDeviceBody = 4 << 10

// requireAPIToken guards the device API: 503 when no API token is
// configured, 401 (with WWW-Authenticate) without the right bearer token.
// The comparison is constant-time.
func (s *server) requireAPIToken(next http.HandlerFunc) http.Handler {
	want := []byte(s.opts.APIToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			s.Metrics.deviceRequests.WithLabelValues(r.Method, strconv.Itoa(rec.status)).Inc()
		}()
		if s.opts.APIToken == "" {
			writeJSON(rec, http.StatusServiceUnavailable, apiError{"device API disabled: API_TOKEN is not set"})
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(token), want) != 1 {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="followpush"`)
			writeJSON(rec, http.StatusUnauthorized, apiError{"missing or wrong bearer token"})
			return
		}
		next(rec, r)
	})
}

// deviceBody is the optional JSON body of PUT .../devices/{token}. A nil
// field was absent.
type deviceBody struct {
	Platform *string
	Locale   *string
}

func (s *server) handlePutDevice(w http.ResponseWriter, r *http.Request) {
	user, token := r.PathValue("userID"), r.PathValue("token")
	reg, err := readDeviceBody(r)
	if err == nil {
		err = s.Devices.Register(r.Context(), user, token, reg)
	}
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readDeviceBody reads the optional body of PUT .../devices/{token}: nothing
// (or only JSON whitespace), or one JSON object with the optional string
// fields "platform" (lower-cased) and "locale". Decoding is strict where
// leniency would lose or change data: the body must be valid UTF-8 and at
// most maxDeviceBody bytes; duplicate keys, a known field name in another
// case (field names are case-sensitive, unlike encoding/json's), values that
// are neither strings nor null, and data after the object are rejected.
// Unknown fields are ignored and null is an absent field, as clients send
// them. Every error wraps errBadDeviceBody and names the problem.
func readDeviceBody(r *http.Request) (devices.Registration, error) {
	var reg devices.Registration
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDeviceBody+1))
	if err != nil {
		return reg, fmt.Errorf("%w: %v", errBadDeviceBody, err)
	}
	if len(body) > maxDeviceBody {
		return reg, fmt.Errorf("%w: larger than %d bytes", errBadDeviceBody, maxDeviceBody)
	}
	b, err := decodeDeviceBody(body)
	if err != nil {
		return reg, fmt.Errorf("%w: %v", errBadDeviceBody, err)
	}
	if b.Platform != nil {
		reg.Platform = strings.ToLower(*b.Platform)
	}
	if b.Locale != nil {
		reg.Locale = *b.Locale
	}
	return reg, nil
}

// decodeDeviceBody decodes body strictly (see readDeviceBody) with the
// callback parser's scanner: its first pass checks the syntax, duplicate keys
// (compared unescaped) and nesting, as for webhook bodies; the second walks
// the checked object's members for the two known fields.
func decodeDeviceBody(body []byte) (deviceBody, error) {
	var b deviceBody
	if !utf8.Valid(body) {
		return b, errors.New("body is not valid UTF-8")
	}
	s := scanner{data: body}
	s.skipSpace()
	if s.pos == len(body) {
		return b, nil
	}
	if body[s.pos] != '{' {
		return b, errors.New("body is not a JSON object")
	}
	start := s.pos
	if err := s.object(1, nil); err != nil {
		return b, errors.New(scanProblem(err))
	}
	s.skipSpace()
	if s.pos != len(body) {
		return b, fmt.Errorf("data after the JSON object at offset %d", s.pos)
	}

	s.pos = start + 1
	s.skipSpace()
	if body[s.pos] == '}' {
		return b, nil
	}
	for {
		key, err := s.key()
		if err != nil {
			return b, errors.New(scanProblem(err))
		}
		var field **string
		switch string(key) {
		case "platform":
			field = &b.Platform
		case "locale":
			field = &b.Locale
		default:
			if err := misspeltDeviceField(key); err != nil {
				return b, err
			}
		}
		s.skipSpace()
		switch k := s.kind(span{start: s.pos}); {
		case field == nil || k == "null":
			// An unknown field is ignored, as in callbacks (clients add
			// fields); null is the field left out.
			if err := s.value(1); err != nil {
				return b, errors.New(scanProblem(err))
			}
		case k != "string":
			return b, fmt.Errorf("%s: got %s, want string", key, k)
		default:
			v, err := s.strValue()
			if err != nil {
				return b, errors.New(scanProblem(err))
			}
			str := string(v)
			*field = &str
		}
		s.skipSpace()
		s.pos++ // ',' or '}', checked by the first pass
		if body[s.pos-1] == '}' {
			return b, nil
		}
	}
}

// misspeltDeviceField returns an error for a key that is a known field
// spelt in another case ("PLATFORM"): encoding/json would take it for the
// field, this parser would ignore it, so it is refused rather than lost.
func misspeltDeviceField(key []byte) error {
	for _, known := range []string{"platform", "locale"} {
		if strings.EqualFold(string(key), known) {
			return fmt.Errorf("field %s: field names are case-sensitive, want %q", quote(key), known)
		}
	}
	return nil
}

// scanProblem is what an error of the scanner says, without the prefix of
// ErrMalformed, which it wraps: the device body is not a callback.
func scanProblem(err error) string {
	return strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": ")
}

func (s *server) handleDeleteDevice(w http.ResponseWriter, r *http.Request) {
	if err := s.Devices.Unregister(r.Context(), r.PathValue("userID"), r.PathValue("token")); err != nil {
		s.deviceError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) handleListDevices(w http.ResponseWriter, r *http.Request) {
	list, err := s.Devices.List(r.Context(), r.PathValue("userID"))
	if err != nil {
		s.deviceError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Devices []devices.Device `json:"devices"`
	}{list})
}

func (s *server) deviceError(w http.ResponseWriter, r *http.Request, err error) {
	status := deviceStatus(err)
	if status >= 500 {
		s.Logger.Error("device API", "method", r.Method, "err", err)
		writeJSON(w, status, apiError{"device store unavailable"})
		return
	}
	writeJSON(w, status, apiError{err.Error()})
}

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}
