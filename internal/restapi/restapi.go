// Package restapi holds the conventions of followpush's own REST API (the
// routes an app backend calls: the device API, and any later one), so that
// every route answers alike: bearer-token authentication, JSON answers,
// errors as {"error": "..."}, strict request bodies, and a request counter
// by method and status.
package restapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/internal/strictjson"
)

// ErrBadBody is wrapped by [ReadBody]'s errors: the request body is not
// what the route takes (400).
var ErrBadBody = errors.New("bad request body")

// Error is the body of every error answer.
type Error struct {
	// Error says what is wrong, for the caller's log.
	Error string `json:"error"`
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers status with {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, Error{msg})
}

// Bearer guards next with the API token: with token empty every request is
// answered 503 (the API is off); a request without "Authorization: Bearer
// <token>" (scheme case-insensitive, token compared in constant time) is
// answered 401 with a WWW-Authenticate header.
func Bearer(token string, next http.Handler) http.Handler {
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(want) == 0 {
			WriteError(w, http.StatusServiceUnavailable, "API disabled: API_TOKEN is not set")
			return
		}
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="followpush"`)
			WriteError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Counted counts every answer of next in requests, a counter with the
// labels method and code (the HTTP status).
func Counted(requests *prometheus.CounterVec, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() { requests.WithLabelValues(r.Method, strconv.Itoa(rec.status)).Inc() }()
		next.ServeHTTP(rec, r)
	})
}

// ZeroCounts makes requests, an API's counter labelled method and code
// (see [Counted]), show every method of success (method: the status it
// answers when all is well) at 0 from the start, with that status and
// with each one the API gives itself, 400, 401 and 503: an alert on the
// first error of a new receiver must see a change.
func ZeroCounts(requests *prometheus.CounterVec, success map[string]int) {
	for method, ok := range success {
		for _, code := range []int{ok, http.StatusBadRequest, http.StatusUnauthorized, http.StatusServiceUnavailable} {
			requests.WithLabelValues(method, strconv.Itoa(code))
		}
	}
}

// Gate is how every route of one API is served: counted in the API's
// request counter ([Counted]) and behind the API token ([Bearer]).
type Gate struct {
	token    string
	requests *prometheus.CounterVec
}

// NewGate guards an API with token and counts its answers in requests,
// the API's counter labelled method and code
// (followpush_<api>_api_requests_total, defined where the API is, so that
// the metric's definition is read there), with success's statuses shown
// at 0 from the start ([ZeroCounts]).
func NewGate(requests *prometheus.CounterVec, token string, success map[string]int) Gate {
	ZeroCounts(requests, success)
	return Gate{token: token, requests: requests}
}

// Guard wraps h as every route of the API is served: counted, and behind
// the API token.
func (g Gate) Guard(h http.HandlerFunc) http.Handler {
	return Counted(g.requests, Bearer(g.token, h))
}

// Fail answers err of the API named api ("device", ...): 400 with err's
// text when the request is at fault (invalid, or err wraps [ErrBadBody]);
// else 503, "<api> store unavailable", with err logged as "<api> API"
// and not answered.
func Fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, api string, err error, invalid bool) {
	if invalid || errors.Is(err, ErrBadBody) {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	log.Error(api+" API", "method", r.Method, "err", err)
	WriteError(w, http.StatusServiceUnavailable, api+" store unavailable")
}

// ReadBody reads r's body, at most max bytes, into v (a pointer to a
// struct) with [strictjson.Decode]: an empty body leaves v as it is. The
// error wraps [ErrBadBody] and names the problem.
func ReadBody(r *http.Request, max int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	if int64(len(body)) > max {
		return fmt.Errorf("%w: larger than %d bytes", ErrBadBody, max)
	}
	if err := strictjson.Decode(body, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, strings.TrimPrefix(err.Error(), strictjson.ErrInvalid.Error()+": "))
	}
	return nil
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
