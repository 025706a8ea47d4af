package webhook

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

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

type deviceBody struct {
	Platform *string `json:"platform"`
	Locale   *string `json:"locale"`
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

func readDeviceBody(r *http.Request) (devices.Registration, error) {
	var reg devices.Registration
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDeviceBody+1))
	if err != nil {
		return reg, fmt.Errorf("%w: %v", errBadDeviceBody, err)
	}
	if len(body) > maxDeviceBody {
		return reg, fmt.Errorf("%w: larger than %d bytes", errBadDeviceBody, maxDeviceBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return reg, nil
	}
	var b deviceBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil {
		return reg, fmt.Errorf("%w: %v", errBadDeviceBody, err)
	}
	if dec.More() {
		return reg, fmt.Errorf("%w: trailing data after the JSON object", errBadDeviceBody)
	}
	if b.Platform != nil {
		reg.Platform = strings.ToLower(*b.Platform)
	}
	if b.Locale != nil {
		reg.Locale = *b.Locale
	}
	return reg, nil
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
