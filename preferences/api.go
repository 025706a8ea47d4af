package preferences

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/followpush/followpush/internal/restapi"
	"github.com/followpush/followpush/tencent"
)

// MaxBodyBytes bounds the body of PUT .../preferences.
const MaxBodyBytes = 4 << 10

// Keeper is what the API needs of the store ([*Store]).
type Keeper interface {
	// Get returns user's preferences (the defaults when none are set).
	Get(ctx context.Context, user string) (Preferences, error)
	// Put stores p, valid, for user.
	Put(ctx context.Context, user string, p Preferences) error
	// Delete sets user's preferences back to the defaults.
	Delete(ctx context.Context, user string) error
}

// API is the preference API, which the receiver serves for the app
// backend, with the device API's conventions (the API token, JSON
// answers, {"error": "..."} errors: invalid input 400, a failing store
// 503):
//
//	PUT    /v1/users/{userID}/preferences   set (replace) them; 200 with what is stored
//	GET    /v1/users/{userID}/preferences   200 with them (the defaults when none are set)
//	DELETE /v1/users/{userID}/preferences   back to the defaults; 204
type API struct {
	restapi.Gate // Guard serves each route

	store Keeper
	log   *slog.Logger
}

// NewAPI returns the API over store, guarded by token (empty: every
// request is answered 503). It registers with reg
//
//	followpush_preference_api_requests_total{method,code}   preference API requests, by method and HTTP status
//
// with every method and the statuses the API gives itself at 0.
func NewAPI(store Keeper, token string, log *slog.Logger, reg prometheus.Registerer) *API {
	requests := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "followpush_preference_api_requests_total",
		Help: "Preference API requests, by method and HTTP status.",
	}, []string{"method", "code"})
	gate := restapi.NewGate(requests, token, map[string]int{http.MethodGet: http.StatusOK, http.MethodPut: http.StatusOK, http.MethodDelete: http.StatusNoContent})
	return &API{Gate: gate, store: store, log: log}
}

// body is PUT's body; a nil field was absent (or null). Unknown fields
// are ignored.
type body struct {
	FollowPushes *string `json:"follow_pushes"`
	QuietHours   *struct {
		Start    *string `json:"start"`
		End      *string `json:"end"`
		TimeZone *string `json:"time_zone"`
	} `json:"quiet_hours"`
}

// errNoBody is PUT's error for an empty body (no JSON at all; the empty
// object {} sets the defaults).
var errNoBody = errors.New("body required: {\"follow_pushes\": \"all\"|\"summary\"|\"off\", \"quiet_hours\": {\"start\": \"22:00\", \"end\": \"07:30\", \"time_zone\": \"Asia/Shanghai\"}}")

// readBody reads PUT's body: one JSON object; follow_pushes absent or
// null is "all", quiet_hours absent or null is none (so {} is the
// defaults), and quiet_hours needs all three of its fields.
func readBody(r *http.Request) (Preferences, error) {
	var b body
	var p Preferences
	seen := &sawData{ReadCloser: r.Body}
	r.Body = seen
	if err := restapi.ReadBody(r, MaxBodyBytes, &b); err != nil {
		return p, err
	}
	if !seen.data {
		return p, errNoBody
	}
	if b.FollowPushes != nil {
		p.FollowPushes = *b.FollowPushes
	}
	if q := b.QuietHours; q != nil {
		for _, f := range []struct {
			name string
			v    *string
		}{{"start", q.Start}, {"end", q.End}, {"time_zone", q.TimeZone}} {
			if f.v == nil {
				return p, fmt.Errorf("%w: quiet_hours.%s: missing (start, end and time_zone are all required)", ErrInvalid, f.name)
			}
		}
		p.QuietHours = &QuietHours{Start: *q.Start, End: *q.End, TimeZone: *q.TimeZone}
	}
	return p, p.Validate()
}

// sawData is a request body that notes whether it held anything but
// white space.
type sawData struct {
	io.ReadCloser
	data bool
}

func (s *sawData) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	s.data = s.data || len(bytes.TrimSpace(p[:n])) > 0
	return n, err
}

// Put sets the preferences of the path's user.
func (a *API) Put(w http.ResponseWriter, r *http.Request) {
	p, err := readBody(r)
	if err == nil {
		err = a.store.Put(r.Context(), r.PathValue("userID"), p)
	}
	a.answer(w, r, p, err)
}

// Get answers the preferences of the path's user.
func (a *API) Get(w http.ResponseWriter, r *http.Request) {
	p, err := a.store.Get(r.Context(), r.PathValue("userID"))
	a.answer(w, r, p, err)
}

// answer answers p, with its mode spelled out, or fails with err.
func (a *API) answer(w http.ResponseWriter, r *http.Request, p Preferences, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p.FollowPushes = p.Mode()
	restapi.WriteJSON(w, http.StatusOK, p)
}

// Delete sets the preferences of the path's user back to the defaults.
func (a *API) Delete(w http.ResponseWriter, r *http.Request) {
	if err := a.store.Delete(r.Context(), r.PathValue("userID")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fail answers err: 400 with its text for invalid input, else 503 (the
// store failed; the detail is logged, not answered).
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	invalid := errors.Is(err, ErrInvalid) || errors.Is(err, tencent.ErrInvalidUserID) || errors.Is(err, errNoBody)
	restapi.Fail(w, r, a.log, "preference", err, invalid)
}
