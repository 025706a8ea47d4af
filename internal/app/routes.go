package app

import (
	"net/http"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/preferences"
)

// receiverParts are the handlers the receiver's routes lead to.
type receiverParts struct {
	webhook    http.Handler // POST /webhook (webhook.NewHandler)
	devices    *devices.API
	prefs      *preferences.API // nil: not served (tests)
	history    http.Handler     // GET /v1/users/{userID}/notifications (history.API); nil: not served (tests)
	ready      http.Handler     // GET /readyz
	metrics    http.Handler     // GET /metrics; nil: not on this listener
	monitoring http.Handler     // /monitoring/ (asynqmon); nil: not mounted
}

// receiverRoutes is the receiver's route table: every route it serves, in
// one place. Each is registered through routed, so that only the mux's
// own answers (404, 405, redirects) are rewritten into the shape of the
// API they were meant for (see answerOwnRouting).
func receiverRoutes(p receiverParts) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, routed(h)) }

	handle("POST /webhook", p.webhook)

	handle("PUT /v1/users/{userID}/devices/{token}", p.devices.Guard(p.devices.Put))
	handle("DELETE /v1/users/{userID}/devices/{token}", p.devices.Guard(p.devices.Delete))
	handle("GET /v1/users/{userID}/devices", p.devices.Guard(p.devices.List))
	if p.prefs != nil {
		handle("PUT /v1/users/{userID}/preferences", p.prefs.Guard(p.prefs.Put))
		handle("GET /v1/users/{userID}/preferences", p.prefs.Guard(p.prefs.Get))
		handle("DELETE /v1/users/{userID}/preferences", p.prefs.Guard(p.prefs.Delete))
	}
	if p.history != nil {
		handle("GET /v1/users/{userID}/notifications", p.history)
	}

	handle("GET /healthz", http.HandlerFunc(healthz))
	handle("GET /readyz", p.ready)
	if p.metrics != nil {
		handle("GET /metrics", p.metrics)
	}
	if p.monitoring != nil {
		handle("/monitoring/", p.monitoring)
		handle("GET /monitoring", http.RedirectHandler("/monitoring/", http.StatusFound))
	}
	return answerOwnRouting(mux)
}
