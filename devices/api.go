package devices

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/followpush/followpush/internal/restapi"
)

// MaxBodyBytes bounds the optional JSON body of PUT .../devices/{token}.
const MaxBodyBytes = 4 << 10

// Store is what the device API needs of the registry ([*Registry]).
type Store interface {
	// Register makes token a device of userID (PUT).
	Register(ctx context.Context, userID, token string, reg Registration) error
	// Unregister removes token from userID's devices, if it is one (DELETE).
	Unregister(ctx context.Context, userID, token string) error
	// List returns userID's devices, newest first (GET).
	List(ctx context.Context, userID string) ([]Device, error)
}

// API is the device registry's HTTP API, which the receiver serves for the
// app backend:
//
//	PUT    /v1/users/{userID}/devices/{token}   register or refresh; body {"platform":..., "locale":...}, optional; 204
//	DELETE /v1/users/{userID}/devices/{token}   unregister (also when not registered, or someone else's); 204
//	GET    /v1/users/{userID}/devices           200 {"devices":[...]}, newest first
//
// Every route needs the API token (see [restapi.Bearer]); answers and
// errors are JSON ({"error": "..."}): invalid input is 400, a failing
// store 503.
type API struct {
	restapi.Gate // Guard serves each route

	store Store
	log   *slog.Logger
}

// NewAPI returns the API over store, guarded by token (empty: every
// request is answered 503). It registers with reg
//
//	followpush_device_api_requests_total{method,code}   device API requests, by method and HTTP status
//
// with every method and the statuses the API gives itself at 0 from the
// start (an alert on the first error of a new receiver must see a change).
func NewAPI(store Store, token string, log *slog.Logger, reg prometheus.Registerer) *API {
	requests := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "followpush_device_api_requests_total",
		Help: "Device API requests, by method and HTTP status.",
	}, []string{"method", "code"})
	gate := restapi.NewGate(requests, token, map[string]int{http.MethodGet: http.StatusOK, http.MethodPut: http.StatusNoContent, http.MethodDelete: http.StatusNoContent})
	return &API{Gate: gate, store: store, log: log}
}

// body is the optional JSON body of PUT .../devices/{token}; a nil field
// was absent (or null).
type body struct {
	Platform *string `json:"platform"`
	Locale   *string `json:"locale"`
}

// readBody reads the optional body of PUT .../devices/{token}: nothing,
// or one JSON object with the optional string fields "platform"
// (lower-cased) and "locale", decoded as [restapi.ReadBody] does (unknown
// fields ignored, null an absent field).
func readBody(r *http.Request) (Registration, error) {
	var b body
	var reg Registration
	if err := restapi.ReadBody(r, MaxBodyBytes, &b); err != nil {
		return reg, err
	}
	if b.Platform != nil {
		reg.Platform = strings.ToLower(*b.Platform)
	}
	if b.Locale != nil {
		reg.Locale = *b.Locale
	}
	return reg, nil
}

// Put registers the token of the path for its user.
func (a *API) Put(w http.ResponseWriter, r *http.Request) {
	reg, err := readBody(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.Register(r.Context(), r.PathValue("userID"), r.PathValue("token"), reg); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Delete unregisters the token of the path from its user.
func (a *API) Delete(w http.ResponseWriter, r *http.Request) {
	if err := a.store.Unregister(r.Context(), r.PathValue("userID"), r.PathValue("token")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// List answers the user's devices.
func (a *API) List(w http.ResponseWriter, r *http.Request) {
	list, err := a.store.List(r.Context(), r.PathValue("userID"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, struct {
		Devices []Device `json:"devices"`
	}{list})
}

// fail answers err: 400 with its text for invalid input, else 503 (the
// store failed; the detail is logged, not answered).
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	invalid := errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrInvalidPlatform) || errors.Is(err, ErrInvalidUserID) ||
		errors.Is(err, ErrInvalidLocale)
	restapi.Fail(w, r, a.log, "device", err, invalid)
}
