package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/monitoring"
	"github.com/followpush/followpush/internal/testrig/httpcall"
	"github.com/followpush/followpush/internal/testrig/redistest"
)

// get sends GET path to base, with basic auth when user or password is
// set, and returns the status and the body.
func get(t *testing.T, base, path, user, password string) (int, []byte) {
	t.Helper()
	r := httpcall.Do(t, httpcall.Request{Method: http.MethodGet, URL: base + path, User: user, Password: password, NoRedirect: true})
	return r.Status, r.Body
}

// The receiver serves asynqmon only when given a handler: without one
// (MONITORING_USER unset) /monitoring and everything under it is 404,
// while the same requests reach a handler that is given.
func TestReceiverMountsMonitoringOnlyWhenGiven(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const user, password = "ops", "correct-horse-battery-staple"
	cfg, err := config.LoadReceiver(func(k string) string {
		return map[string]string{"TENCENT_SDKAPPID": "1400000000", "REDIS_URL": srv.URL(0)}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	serve := func(ui http.Handler) string {
		rcv, err := NewReceiver(ctx, cfg, srv.Client(t), log, NewRegistry(), ui)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(rcv.Handler)
		t.Cleanup(ts.Close)
		return ts.URL
	}
	unset := serve(nil)
	set := serve(monitoring.Handler(srv.Client(t), user, password, slog.New(slog.DiscardHandler)))
	for _, path := range []string{monitoring.Path, monitoring.Path + "/", monitoring.Path + "/api/queues"} {
		if status, body := get(t, unset, path, user, password); status != http.StatusNotFound {
			t.Errorf("receiver without monitoring: GET %s: %d %.100s, want 404", path, status, body)
		}
		if status, _ := get(t, set, path, user, password); status == http.StatusNotFound {
			t.Errorf("receiver with monitoring: GET %s: 404, want it served", path)
		}
	}
	if status, _ := get(t, set, monitoring.Path+"/api/queues", "", ""); status != http.StatusUnauthorized {
		t.Errorf("receiver with monitoring: GET %s/api/queues without credentials: %d, want 401", monitoring.Path, status)
	}
}
