package webhook

import "net/http"

// addRoutes lists every route of the receiver.
func (s *server) addRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /webhook", s.handleWebhook)

	mux.Handle("PUT /v1/users/{userID}/devices/{token}", s.requireAPIToken(s.handlePutDevice))
	mux.Handle("DELETE /v1/users/{userID}/devices/{token}", s.requireAPIToken(s.handleDeleteDevice))
	mux.Handle("GET /v1/users/{userID}/devices", s.requireAPIToken(s.handleListDevices))

	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.MetricsHandler != nil {
		mux.Handle("GET /metrics", s.MetricsHandler)
	}
	if s.Monitoring != nil {
		mux.Handle("/monitoring/", s.Monitoring)
		mux.Handle("GET /monitoring", http.RedirectHandler("/monitoring/", http.StatusFound))
	}
}
