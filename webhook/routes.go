package webhook

import "net/http"

// addRoutes lists every route of the receiver. Each handler is registered
// through routed, so that only mux's own answers (404, 405, redirects) are
// rewritten into our shapes (see answerOwnRouting).
func (s *server) addRoutes(mux *http.ServeMux) {
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, routed(h)) }

	handle("POST /webhook", http.HandlerFunc(s.handleWebhook))

	handle("PUT /v1/users/{userID}/devices/{token}", s.requireAPIToken(s.handlePutDevice))
	handle("DELETE /v1/users/{userID}/devices/{token}", s.requireAPIToken(s.handleDeleteDevice))
	handle("GET /v1/users/{userID}/devices", s.requireAPIToken(s.handleListDevices))

	handle("GET /healthz", http.HandlerFunc(s.handleHealthz))
	handle("GET /readyz", http.HandlerFunc(s.handleReadyz))
	if s.MetricsHandler != nil {
		handle("GET /metrics", s.MetricsHandler)
	}
	if s.Monitoring != nil {
		handle("/monitoring/", s.Monitoring)
		handle("GET /monitoring", http.RedirectHandler("/monitoring/", http.StatusFound))
	}
}
