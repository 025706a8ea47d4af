package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/testrig/redistest"
)

// PPROF=true mounts Go's profiler on the worker's ops listener; off, the
// path does not exist.
func TestOpsHandlerPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		rec := httptest.NewRecorder()
		OpsHandler(prometheus.NewRegistry(), nil, on, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("pprof %v: GET /debug/pprof/ = %d, want %d", on, rec.Code, want)
		}
	}
}

// The worker's /readyz says "unavailable" when Redis refuses it (here: a
// password the worker does not have), not Redis's own error text; that
// goes to the log.
func TestOpsReadyzHidesRedisError(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := red.Client(t).ConfigSet(ctx, "requirepass", "ops-secret-password").Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: red.Addr()})
	t.Cleanup(func() { rdb.Close() })
	var logs bytes.Buffer
	rec := httptest.NewRecorder()
	OpsHandler(prometheus.NewRegistry(), rdb, false, slog.New(slog.NewJSONHandler(&logs, nil))).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("/readyz answer is not JSON: %q", rec.Body)
	}
	if want := map[string]any{"status": "not ready", "redis": "unavailable"}; rec.Code != http.StatusServiceUnavailable || !maps.Equal(got, want) {
		t.Errorf("/readyz with Redis refusing = %d %v, want 503 %v", rec.Code, got, want)
	}
	if !strings.Contains(logs.String(), "NOAUTH") || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("log lacks a warning with Redis's error (NOAUTH):\n%s", logs.String())
	}
}
