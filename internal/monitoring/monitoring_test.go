package monitoring

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/testrig/httpcall"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/hibiken/asynq"
)

// get sends GET path to base, with basic auth when user is not empty, and
// returns the status, the WWW-Authenticate header and the body.
func get(t *testing.T, base, path, user, password string) (int, string, []byte) {
	t.Helper()
	r := httpcall.Do(t, httpcall.Request{Method: http.MethodGet, URL: base + path, User: user, Password: password, NoRedirect: true})
	return r.Status, r.Header.Get("WWW-Authenticate"), r.Body
}

// asynqmon behind basic auth: the UI and its API answer 401 with a Basic
// challenge unless both user and password are right, then 200 with the
// real queues of the Redis it was given.
func TestMonitoringBasicAuth(t *testing.T) {
	t.Parallel()
	srv := monitoringRedis(t)
	mux := http.NewServeMux()
	mux.Handle(Path+"/", Handler(srv.Client(t), monitoringUser, monitoringPassword, discardLog))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	for _, path := range []string{Path + "/", Path + "/api/queues"} {
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

	status, _, body := get(t, ts.URL, Path+"/", monitoringUser, monitoringPassword)
	if status != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
		t.Errorf("GET %s/ with the right credentials: %d %.200s, want 200 and asynqmon's page", Path, status, body)
	}
	status, _, body = get(t, ts.URL, Path+"/api/queues", monitoringUser, monitoringPassword)
	if names := queueNames(t, body); status != http.StatusOK || len(names) != 1 || names[0] != tasks.QueueFollow {
		t.Errorf("GET %s/api/queues with the right credentials: %d %s, want 200 and queue %s", Path, status, body, tasks.QueueFollow)
	}
}

// Without a user (standalone on loopback), asynqmon answers without
// credentials.
func TestMonitoringWithoutAuth(t *testing.T) {
	t.Parallel()
	srv := monitoringRedis(t)
	mux := http.NewServeMux()
	mux.Handle(Path+"/", Handler(srv.Client(t), "", "", discardLog))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	status, challenge, body := get(t, ts.URL, Path+"/api/queues", "", "")
	if names := queueNames(t, body); status != http.StatusOK || challenge != "" || len(names) != 1 || names[0] != tasks.QueueFollow {
		t.Errorf("GET %s/api/queues: %d (WWW-Authenticate %q) %s, want 200 and queue %s", Path, status, challenge, body, tasks.QueueFollow)
	}
}

// A page of another site cannot change anything through asynqmon, with
// basic auth the browser has cached or without auth (standalone): an
// unsafe request whose Origin or Sec-Fetch-Site says it comes from another
// site is refused with 403 (a form POST that would pause the queue, a
// DELETE of the pending tasks), and the queue stays as it was. The UI's own
// requests (same-origin), and requests of programs that send neither
// header, still work; reading stays open to the same origin.
func TestMonitoringRefusesCrossSiteWrites(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name, user, password string
	}{{"basic auth", monitoringUser, monitoringPassword}, {"no auth", "", ""}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			srv := monitoringRedis(t)
			var logs bytes.Buffer
			var logMu sync.Mutex
			log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
				logMu.Lock()
				defer logMu.Unlock()
				return logs.Write(p)
			}), nil))
			mux := http.NewServeMux()
			mux.Handle(Path+"/", Handler(srv.Client(t), mode.user, mode.password, log))
			ts := httptest.NewServer(mux)
			t.Cleanup(ts.Close)
			insp := asynq.NewInspectorFromRedisClient(srv.Client(t))
			state := func() (paused bool, pending int) {
				t.Helper()
				q, err := insp.GetQueueInfo(tasks.QueueFollow)
				if err != nil {
					t.Fatal(err)
				}
				return q.Paused, q.Pending
			}
			pause := Path + "/api/queues/" + tasks.QueueFollow + ":pause"
			resume := Path + "/api/queues/" + tasks.QueueFollow + ":resume"
			deleteAll := Path + "/api/queues/" + tasks.QueueFollow + "/pending_tasks:delete_all"

			for _, c := range []struct {
				name, method, path string
				header             map[string]string
			}{
				{"form POST from another site (old browser: Origin only)", http.MethodPost, pause, map[string]string{"Origin": "https://evil.example"}},
				{"form POST from another site", http.MethodPost, pause, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
				{"POST from a sibling site", http.MethodPost, pause, map[string]string{"Origin": "https://other.example", "Sec-Fetch-Site": "same-site"}},
				{"POST from a sandboxed frame", http.MethodPost, pause, map[string]string{"Origin": "null"}},
				{"DELETE from another site", http.MethodDelete, deleteAll, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
			} {
				status, body := send(t, ts.URL, c.method, c.path, "", c.header, mode.user, mode.password)
				if status != http.StatusForbidden || !errorBody(body) {
					t.Errorf("%s: %d %s, want 403 and a JSON error", c.name, status, body)
				}
			}
			if paused, pending := state(); paused || pending != 1 {
				t.Errorf("after refused cross-site writes: paused %v, %d pending, want not paused, 1 pending", paused, pending)
			}
			logMu.Lock()
			refusals := strings.Count(logs.String(), `"msg":"cross-site request refused"`)
			logMu.Unlock()
			if refusals != 5 {
				t.Errorf("%d refusals logged, want 5:\n%s", refusals, logs.String())
			}

			// Reading is a safe method: a cross-site GET is not refused
			// (the browser does not let the other site read the answer).
			if status, body := send(t, ts.URL, http.MethodGet, Path+"/api/queues", "", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, mode.user, mode.password); status != http.StatusOK {
				t.Errorf("cross-site GET: %d %s, want 200", status, body)
			}
			// The UI itself (same origin), an old browser on the same
			// origin, and a program without browser headers may write.
			for _, c := range []struct {
				name, path string
				header     map[string]string
				paused     bool
			}{
				{"the UI pauses (same-origin)", pause, map[string]string{"Origin": ts.URL, "Sec-Fetch-Site": "same-origin"}, true},
				{"an old browser on the same origin resumes", resume, map[string]string{"Origin": ts.URL}, false},
				{"a program pauses (no browser headers)", pause, nil, true},
				{"a typed request resumes (Sec-Fetch-Site none)", resume, map[string]string{"Sec-Fetch-Site": "none"}, false},
			} {
				if status, body := send(t, ts.URL, http.MethodPost, c.path, "", c.header, mode.user, mode.password); status != http.StatusNoContent {
					t.Errorf("%s: %d %s, want 204 (asynqmon's answer)", c.name, status, body)
				}
				if paused, _ := state(); paused != c.paused {
					t.Errorf("%s: paused = %v, want %v", c.name, paused, c.paused)
				}
			}
		})
	}
}

// Without authentication (standalone on loopback) asynqmon answers only
// requests that name a loopback Host: a page whose DNS name an attacker
// re-points at 127.0.0.1 (DNS rebinding) sends its own name and is
// refused. With basic auth, any Host is served (the receiver behind its
// real name).
func TestMonitoringWithoutAuthRefusesForeignHosts(t *testing.T) {
	t.Parallel()
	srv := monitoringRedis(t)
	serve := func(user, password string) string {
		mux := http.NewServeMux()
		mux.Handle(Path+"/", Handler(srv.Client(t), user, password, discardLog))
		ts := httptest.NewServer(mux)
		t.Cleanup(ts.Close)
		return ts.URL
	}
	open, authed := serve("", ""), serve(monitoringUser, monitoringPassword)
	foreign := []string{"evil.example", "evil.example:8080", "127.0.0.1.nip.io", "localhost.evil.example", "attacker.localhost:8080", "10.0.0.1"}
	for _, host := range foreign {
		for _, path := range []string{Path + "/", Path + "/api/queues"} {
			status, body := send(t, open, http.MethodGet, path, host, nil, "", "")
			if status != http.StatusForbidden || !errorBody(body) || strings.Contains(string(body), tasks.QueueFollow) {
				t.Errorf("no auth, Host %q: GET %s = %d %.200s, want 403 and a JSON error without queue data", host, path, status, body)
			}
		}
		if status, body := send(t, authed, http.MethodGet, Path+"/api/queues", host, nil, monitoringUser, monitoringPassword); status != http.StatusOK {
			t.Errorf("basic auth, Host %q: %d %.200s, want 200", host, status, body)
		}
	}
	for _, host := range []string{"localhost", "localhost:8080", "LOCALHOST.:8080", "127.0.0.1:8080", "127.1.2.3", "[::1]:8080", "[::1]"} {
		status, body := send(t, open, http.MethodGet, Path+"/api/queues", host, nil, "", "")
		if names := queueNames(t, body); status != http.StatusOK || len(names) != 1 {
			t.Errorf("no auth, Host %q: %d %.200s, want 200 and the queues", host, status, body)
		}
	}
}

// RefuseForeignHosts checks only the paths under its prefix.
func TestRefuseForeignHostsOnlyUnderPrefix(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := RefuseForeignHosts(ok, "/v1/")
	for _, c := range []struct {
		path, host string
		want       int
	}{
		{"/v1/users/bob/devices", "evil.example", http.StatusForbidden},
		{"/v1/users/bob/devices", "127.0.0.1:8080", http.StatusNoContent},
		{"/webhook", "evil.example", http.StatusNoContent},
		{"/healthz", "evil.example", http.StatusNoContent},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, c.path, nil)
		req.Host = c.host
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("GET %s with Host %q = %d, want %d", c.path, c.host, rec.Code, c.want)
		}
	}
}

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

// send sends method path to base with the given Host (empty: base's),
// headers and basic auth (when user or password is set), and returns the status
// and body.
func send(t *testing.T, base, method, path, host string, header map[string]string, user, password string) (int, []byte) {
	t.Helper()
	r := httpcall.Do(t, httpcall.Request{Method: method, URL: base + path, Host: host, Header: header, User: user, Password: password})
	return r.Status, r.Body
}

// errorBody reports whether b is a JSON {"error": "..."} answer.
func errorBody(b []byte) bool {
	var v map[string]string
	return json.Unmarshal(b, &v) == nil && v["error"] != "" && len(v) == 1
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var discardLog = slog.New(slog.DiscardHandler)
