package app

import (
	"context"
	"net/http"
	"time"

	"github.com/followpush/followpush/internal/restapi"
	"github.com/followpush/followpush/webhook"
)

// healthz answers 200 while the process runs.
func healthz(w http.ResponseWriter, _ *http.Request) {
	restapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readiness is /readyz of a program: ready while Redis answers a PING
// within a second, or (a receiver with a spool) while the spool has room.
type readiness struct {
	ping     func(ctx context.Context) error
	log      interface{ Warn(msg string, args ...any) }
	spool    webhook.Spool // nil: none
	maxBytes int64         // the spool's size bound
	metrics  *webhook.Metrics
}

// ServeHTTP answers 200 only while events can be stored (or, for a worker,
// pushes processed). The answer says only "unavailable" about a failed
// PING: Redis's error names internal addresses and is logged instead (at
// warn level, once per failed check).
func (h readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	body := map[string]any{"status": "ready", "redis": "ok"}
	redisErr := h.ping(ctx)
	if redisErr != nil {
		body["redis"] = "unavailable"
		h.log.Warn("readiness check: Redis does not answer", "err", redisErr)
	}
	spoolRoom := false
	if h.spool != nil {
		h.metrics.ObserveSpool(h.spool)
		spoolRoom = float64(h.spool.Bytes()) < 0.9*float64(h.maxBytes)
		body["spool"] = map[string]any{"pending": h.spool.Len(), "bytes": h.spool.Bytes(), "max_bytes": h.maxBytes, "has_room": spoolRoom}
	}
	if redisErr != nil && !spoolRoom {
		body["status"] = "not ready"
		restapi.WriteJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, body)
}
