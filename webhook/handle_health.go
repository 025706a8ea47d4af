package webhook

import (
	"context"
	"net/http"
	"time"
)

func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 only while events can be stored durably: Redis
// answers a PING within a second, or the spool has room. The answer says
// only "unavailable" about a failed PING: Redis's error names internal
// addresses and is logged instead (at warn level, once per failed check).
func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	body := map[string]any{"status": "ready", "redis": "ok"}
	redisErr := s.Ready.Ping(ctx)
	if redisErr != nil {
		body["redis"] = "unavailable"
		s.Logger.Warn("readiness check: Redis does not answer", "err", redisErr)
	}
	spoolRoom := false
	if s.Spool != nil {
		s.Metrics.observeSpool(s.Spool)
		spoolRoom = float64(s.Spool.Bytes()) < 0.9*float64(s.opts.SpoolMaxBytes)
		body["spool"] = map[string]any{"pending": s.Spool.Len(), "bytes": s.Spool.Bytes(), "max_bytes": s.opts.SpoolMaxBytes, "has_room": spoolRoom}
	}
	if redisErr != nil && !spoolRoom {
		body["status"] = "not ready"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
