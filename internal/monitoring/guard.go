// Package monitoring mounts asynqmon, the queue UI, for the receiver and
// standalone ([Handler], at [Path]): behind HTTP basic authentication, with
// writes from other sites refused (a form on another page cannot pause the
// queue through a browser's cached credentials), and, without
// authentication (standalone on loopback), only for loopback Host names
// (DNS rebinding). [RefuseForeignHosts] guards other routes the same way.
package monitoring

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
)

// refuseCrossSiteWrites returns h behind net/http's CrossOriginProtection:
// a request with an unsafe method (anything but GET, HEAD, OPTIONS) whose
// Sec-Fetch-Site header is not same-origin (or none: typed by the user),
// or, from a browser without Sec-Fetch-Site, whose Origin is not the Host
// it was sent to, is refused with 403 and a JSON error, and logged (warn).
// That stops a page of another site from making the browser of someone
// logged in to /monitoring (basic auth is cached) pause queues or delete
// tasks with a form it submits. Requests without either header (curl, the
// asynq CLI's HTTP peers) are not browsers' cross-site requests and pass.
func refuseCrossSiteWrites(h http.Handler, log *slog.Logger) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Warn("cross-site request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		writeError(w, http.StatusForbidden, "cross-site request refused: "+r.Method+" must come from a page of this site (Origin or Sec-Fetch-Site says otherwise)")
	}))
	return cop.Handler(h)
}

// RefuseForeignHosts returns h with a check of the Host header on every
// request whose path starts with prefix ("" or "/": every request): a Host
// that is not a loopback name (localhost, an address in 127.0.0.0/8 or
// ::1, with any port) is refused with 403 and a JSON error {"error": ...}.
// Use it where a listener on loopback is the only protection (standalone's
// /monitoring without authentication, its well-known dev API token): a web
// page whose own DNS name an attacker re-points at 127.0.0.1 (DNS
// rebinding) would otherwise reach it as a same-origin page.
func RefuseForeignHosts(h http.Handler, prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) && !LoopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, fmt.Sprintf(
				"Host %q is not a loopback name: on a loopback listener only localhost, 127.0.0.1 or [::1] are answered here (DNS rebinding protection)", r.Host))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LoopbackHost reports whether host, a Host header ("name" or "name:port"),
// names the loopback interface: "localhost" (any case, with or without the
// final dot) or an IP address in 127.0.0.0/8 or ::1.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
