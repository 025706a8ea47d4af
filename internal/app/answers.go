package app

import (
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/followpush/followpush/internal/restapi"
	"github.com/followpush/followpush/tencent"
)

// The route families the receiver serves, by what their error answers look
// like.
const (
	webhookPath = "/webhook"
	apiPath     = "/v1/"
)

// answerOwnRouting serves requests through mux, whose handlers must be
// registered through [routed]. A request no route takes is answered by mux
// itself (no route: 404; a route for other methods: 405 with Allow; a path
// not in canonical form, such as "//webhook": a redirect): such answers
// keep mux's status and its Allow and Location headers, but get the answer
// shape of the API they were meant for ([routerAnswer]).
func answerOwnRouting(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(&routerWriter{ResponseWriter: w, r: r}, r)
	})
}

// routed marks h as one of ours: it gets the connection's own
// ResponseWriter, not the routerWriter that rewrites mux's answers.
func routed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rw, ok := w.(*routerWriter); ok {
			w = rw.ResponseWriter
		}
		h.ServeHTTP(w, r)
	})
}

// routerWriter is the ResponseWriter mux answers on by itself (the routes'
// handlers never see it, see [routed]): the status and headers mux sets
// are kept, its text/plain or HTML body is replaced by [routerAnswer]'s.
type routerWriter struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (rw *routerWriter) WriteHeader(code int) {
	if rw.written {
		return
	}
	rw.written = true
	routerAnswer(rw.ResponseWriter, rw.r, code, rw.Header())
}

func (rw *routerWriter) Write(p []byte) (int, error) {
	rw.WriteHeader(http.StatusOK)
	return len(p), nil
}

// routerAnswer writes the answer to a request no route took, in the shape of
// the API its path belongs to: a Tencent-shaped FAIL (ErrorCode 10 times
// the status) under /webhook, {"error": "..."} anywhere else.
func routerAnswer(w http.ResponseWriter, r *http.Request, status int, h http.Header) {
	clean := path.Clean("/" + r.URL.Path)
	var info string
	switch {
	case status == http.StatusMethodNotAllowed:
		info = fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, clean, h.Get("Allow"))
	case status/100 == 3:
		info = fmt.Sprintf("%s is not the canonical path: use %s", r.URL.Path, h.Get("Location"))
	case status == http.StatusNotFound:
		info = fmt.Sprintf("no such route: %s %s", r.Method, r.URL.Path)
		switch {
		case clean == webhookPath || strings.HasPrefix(clean, webhookPath+"/"):
			info += " (Tencent's callbacks go to POST /webhook)"
		case strings.HasPrefix(clean, apiPath):
			info += " (the device API: PUT or DELETE /v1/users/{userID}/devices/{token}, GET /v1/users/{userID}/devices)"
		}
	default:
		info = http.StatusText(status)
	}
	if clean == webhookPath || strings.HasPrefix(clean, webhookPath+"/") {
		restapi.WriteJSON(w, status, tencent.Fail(status*10, info))
		return
	}
	restapi.WriteError(w, status, info)
}
