package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/redistest"
	"github.com/followpush/followpush/tasks"
)

const (
	monitoringUser     = "ops"
	monitoringPassword = "correct-horse-battery-staple"
)

// monitoringRedis starts a redis-server holding one pending follow task and
// returns a client of it.
func monitoringRedis(t *testing.T) *redistest.Server {
	t.Helper()
	srv := redistest.Start(t)
	task, err := tasks.NewFollowTask(tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := asynq.NewClientFromRedisClient(srv.Client(t)).EnqueueContext(ctx, task); err != nil {
		t.Fatal(err)
	}
	return srv
}

// get sends GET path to base, with basic auth when user is not empty, and
// returns the status, the WWW-Authenticate header and the body.
func get(t *testing.T, base, path, user, password string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b
}

// queueNames decodes asynqmon's GET /api/queues answer.
func queueNames(t *testing.T, body []byte) []string {
	t.Helper()
	var v struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("queues answer %q: %v", body, err)
	}
	var names []string
	for _, q := range v.Queues {
		names = append(names, q.Queue)
	}
	return names
}

// asynqmon behind basic auth: the UI and its API answer 401 with a Basic
// challenge unless both user and password are right, then 200 with the
// real queues of the Redis it was given.
func TestMonitoringBasicAuth(t *testing.T) {
	t.Parallel()
	srv := monitoringRedis(t)
	mux := http.NewServeMux()
	mux.Handle(MonitoringPath+"/", Monitoring(srv.Client(t), monitoringUser, monitoringPassword))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	for _, path := range []string{MonitoringPath + "/", MonitoringPath + "/api/queues"} {
		for _, c := range []struct {
			name, user, password string
		}{
			{"no credentials", "", ""},
			{"wrong password", monitoringUser, "correct-horse-battery-stapl"},
			{"wrong user", "admin", monitoringPassword},
			{"user only", monitoringUser, ""},
			{"swapped", monitoringPassword, monitoringUser},
		} {
			status, challenge, body := get(t, ts.URL, path, c.user, c.password)
			if status != http.StatusUnauthorized {
				t.Errorf("GET %s, %s: %d %.100s, want 401", path, c.name, status, body)
			}
			if !strings.HasPrefix(challenge, "Basic realm=") {
				t.Errorf("GET %s, %s: WWW-Authenticate %q, want a Basic challenge", path, c.name, challenge)
			}
			if strings.Contains(string(body), tasks.QueueFollow) {
				t.Errorf("GET %s, %s: the 401 body shows queue data: %s", path, c.name, body)
			}
		}
	}

	status, _, body := get(t, ts.URL, MonitoringPath+"/", monitoringUser, monitoringPassword)
	if status != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Errorf("GET %s/ with the right credentials: %d %.200s, want 200 and asynqmon's page", MonitoringPath, status, body)
	}
	status, _, body = get(t, ts.URL, MonitoringPath+"/api/queues", monitoringUser, monitoringPassword)
	if names := queueNames(t, body); status != http.StatusOK || len(names) != 1 || names[0] != tasks.QueueFollow {
		t.Errorf("GET %s/api/queues with the right credentials: %d %s, want 200 and queue %s", MonitoringPath, status, body, tasks.QueueFollow)
	}
}

// Without a user (standalone on loopback), asynqmon answers without
// credentials.
func TestMonitoringWithoutAuth(t *testing.T) {
	t.Parallel()
	srv := monitoringRedis(t)
	mux := http.NewServeMux()
	mux.Handle(MonitoringPath+"/", Monitoring(srv.Client(t), "", ""))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	status, challenge, body := get(t, ts.URL, MonitoringPath+"/api/queues", "", "")
	if names := queueNames(t, body); status != http.StatusOK || challenge != "" || len(names) != 1 || names[0] != tasks.QueueFollow {
		t.Errorf("GET %s/api/queues: %d (WWW-Authenticate %q) %s, want 200 and queue %s", MonitoringPath, status, challenge, body, tasks.QueueFollow)
	}
}

// The receiver serves asynqmon only when given a handler: without one
// (MONITORING_USER unset) /monitoring and everything under it is 404,
// while the same requests reach a handler that is given.
func TestReceiverMountsMonitoringOnlyWhenGiven(t *testing.T) {
	t.Parallel()
	srv := monitoringRedis(t)
	cfg, err := config.LoadReceiver(func(k string) string {
		return map[string]string{"TENCENT_SDKAPPID": "1400000000", "REDIS_URL": srv.URL(0)}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	serve := func(monitoring http.Handler) string {
		rcv, err := NewReceiver(ctx, cfg, srv.Client(t), log, NewRegistry(), monitoring)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(rcv.Handler)
		t.Cleanup(ts.Close)
		return ts.URL
	}
	unset := serve(nil)
	set := serve(Monitoring(srv.Client(t), monitoringUser, monitoringPassword))
	for _, path := range []string{MonitoringPath, MonitoringPath + "/", MonitoringPath + "/api/queues"} {
		if status, _, body := get(t, unset, path, monitoringUser, monitoringPassword); status != http.StatusNotFound {
			t.Errorf("receiver without monitoring: GET %s: %d %.100s, want 404", path, status, body)
		}
		if status, _, _ := get(t, set, path, monitoringUser, monitoringPassword); status == http.StatusNotFound {
			t.Errorf("receiver with monitoring: GET %s: 404, want it served", path)
		}
	}
	if status, _, _ := get(t, set, MonitoringPath+"/api/queues", "", ""); status != http.StatusUnauthorized {
		t.Errorf("receiver with monitoring: GET %s/api/queues without credentials: %d, want 401", MonitoringPath, status)
	}
}
