package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
)

const token = "a-token-of-sixteen-bytes"

func failures(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "followpush_history_write_failures_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("followpush_history_write_failures_total not exported")
	return 0
}

func follow(from, to string, at int64) tasks.Follow {
	return tasks.Follow{AppID: "1400000000", From: from, To: to, EventTime: at}
}

// The cap keeps a followee's stream near MaxEvents (Redis trims whole
// nodes of 100 entries), and every write sets the key's lifetime.
func TestCapAndExpiry(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	s := history.New(rdb, history.Options{MaxEvents: 10, TTL: time.Hour}, nil)
	var fs []tasks.Follow
	for i := range 1000 {
		fs = append(fs, follow(fmt.Sprintf("u%d", i), "bob", int64(i+1)))
	}
	for i := 0; i < len(fs); i += 100 {
		p := rdb.Pipeline()
		done := s.QueueFollows(ctx, p, fs[i:i+100])
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		done()
	}
	n, err := rdb.XLen(ctx, s.Key("bob")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 || n > 10+100 {
		t.Errorf("XLEN = %d after 1000 entries, want 10 to 110 (MAXLEN ~ 10)", n)
	}
	ttl, err := rdb.PTTL(ctx, s.Key("bob")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("PTTL = %s, want about 1h", ttl)
	}
	// The newest entries are the ones kept.
	ans, err := s.Read(ctx, "bob", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Notifications) != 1 || ans.Notifications[0].From != "u999" || !ans.More {
		t.Errorf("newest = %+v, want u999 with more", ans)
	}
	if !strings.Contains(s.Key("bob"), "{ag:bob}") {
		t.Errorf("key %q does not share delivery's hash tag", s.Key("bob"))
	}
}

// A write Redis refuses (a key of another type) is counted; Write's caller
// sees the error, the receiver's pipeline does not (QueueFollows). The
// Async writer counts what it drops after Close.
func TestFailedWritesAreCounted(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	s := history.New(rdb, history.Options{}, history.NewMetrics(reg))
	if failures(t, reg) != 0 {
		t.Fatal("failures not at 0 from the start")
	}
	if err := rdb.Set(ctx, s.Key("bob"), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p := rdb.Pipeline()
	done := s.QueueFollows(ctx, p, []tasks.Follow{follow("a", "bob", 1), follow("a", "carol", 1)})
	_, _ = p.Exec(ctx)
	done()
	if got := failures(t, reg); got != 1 {
		t.Errorf("failures = %v, want 1 (bob's entry; carol's was written)", got)
	}
	a := s.Async(0)
	a.Add(history.Entry{To: "bob", Event: "sent", TaskID: "follow:x"})
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := failures(t, reg); got != 2 {
		t.Errorf("failures = %v after the async write, want 2", got)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	a.Add(history.Entry{To: "carol", Event: "sent", TaskID: "follow:y"})
	if got := failures(t, reg); got != 3 {
		t.Errorf("failures = %v after an Add past Close, want 3", got)
	}
	// Both programs of one process share the counter.
	if history.NewMetrics(reg); failures(t, reg) != 3 {
		t.Error("a second NewMetrics on the same registry reset the counter")
	}
}

// Read groups entries by follow (task id), unfollow and summary, newest
// first, and from keeps what is about one follower.
func TestReadGroupsAFollowsStory(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	s := history.New(rdb, history.Options{}, nil)
	fa, fc := follow("alice", "bob", 1000), follow("carol", "bob", 2000)
	write := func(es ...history.Entry) {
		t.Helper()
		if err := s.Write(ctx, es...); err != nil {
			t.Fatal(err)
		}
	}
	p := rdb.Pipeline()
	s.QueueFollows(ctx, p, []tasks.Follow{fa})
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	write(history.Entry{To: "bob", Event: "retry", From: "alice", TaskID: fa.TaskID(), Detail: history.Detail{
		Devices: []history.Device{{Token: "abcdef…wxyz", Outcome: "unavailable"}}, NextRetry: 5000}})
	write(history.Entry{To: "bob", Event: "sent", From: "alice", TaskID: fa.TaskID(), Detail: history.Detail{Attempt: 1,
		Devices: []history.Device{{Token: "abcdef…wxyz", Outcome: "sent", Message: "projects/p/messages/1"}}}})
	p = rdb.Pipeline()
	s.QueueFollows(ctx, p, []tasks.Follow{fc})
	s.QueueUnfollows(ctx, p, "alice", []string{"bob"}, 3000)
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	write(history.Entry{To: "bob", Event: "aggregated", From: "carol", TaskID: fc.TaskID(), Detail: history.Detail{Summary: "digest:d1", Due: 9000}})
	write(history.Entry{To: "bob", Event: "sent", TaskID: "digest:d1", Detail: history.Detail{Followers: []string{"carol", "dave"}}})
	write(history.Entry{To: "bob", Event: "someday_result", From: "erin", TaskID: "follow:e"})

	type row struct{ Kind, From, Task, Fate, Summary, Events string }
	rows := func(from string, limit int) ([]row, bool) {
		ans, err := s.Read(ctx, "bob", from, limit)
		if err != nil {
			t.Fatal(err)
		}
		if ans.User != "bob" {
			t.Errorf("user = %q", ans.User)
		}
		var out []row
		for _, it := range ans.Notifications {
			var evs []string
			for _, e := range it.Events {
				evs = append(evs, e.Event)
			}
			out = append(out, row{it.Kind, it.From, it.TaskID, it.Fate, it.Summary + strings.Join(it.Followers, ","), strings.Join(evs, " ")})
		}
		return out, ans.More
	}
	got, more := rows("", history.MaxLimit)
	want := []row{
		{"follow", "erin", "follow:e", "someday_result", "", "someday_result"},
		{"summary", "", "digest:d1", "sent", "carol,dave", "sent"},
		{"unfollow", "alice", "", "", "", "received"},
		{"follow", "carol", fc.TaskID(), "aggregated", "digest:d1", "received aggregated"},
		{"follow", "alice", fa.TaskID(), "sent", "", "received retry sent"},
	}
	if d := cmp.Diff(want, got); d != "" || more {
		t.Errorf("history (-want +got), more %v:\n%s", more, d)
	}
	got, _ = rows("carol", history.MaxLimit)
	if d := cmp.Diff([]row{want[1], want[3]}, got); d != "" {
		t.Errorf("from=carol (-want +got):\n%s", d)
	}
	got, more = rows("", 2)
	if d := cmp.Diff(want[:2], got); d != "" || !more {
		t.Errorf("limit 2 (-want +got), more %v:\n%s", more, d)
	}
	if ans, err := s.Read(ctx, "nobody", "", 10); err != nil || len(ans.Notifications) != 0 || ans.Notifications == nil {
		t.Errorf("a user without history: %+v, %v; want an empty list", ans, err)
	}
}

// The API: bearer token, validation with clear 400s, the answer, 503
// when off or when Redis fails.
func TestAPI(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	s := history.New(rdb, history.Options{}, nil)
	p := rdb.Pipeline()
	s.QueueFollows(ctx, p, []tasks.Follow{follow("alice", "bob", 1700000000000)})
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, s.Key("broken"), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	on := history.NewAPI(s, token, log, prometheus.NewRegistry()).Handler()
	off := history.NewAPI(nil, token, log, nil).Handler()
	serve := func(h http.Handler, target, auth string) (int, string) {
		mux := http.NewServeMux()
		mux.Handle("GET /v1/users/{userID}/notifications", h)
		req := httptest.NewRequest(http.MethodGet, target, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	long := strings.Repeat("x", 33)
	for _, tt := range []struct {
		h      http.Handler
		target string
		auth   string
		code   int
		body   string
	}{
		{on, "/v1/users/bob/notifications", "", 401, `{"error":"missing or wrong bearer token"}`},
		{on, "/v1/users/bob/notifications", "wrong-token-of-16-bytes", 401, `{"error":"missing or wrong bearer token"}`},
		{on, "/v1/users/" + long + "/notifications", token, 400, `{"error":"userID: invalid user id: length 33 bytes, want 1 to 32"}`},
		{on, "/v1/users/bob/notifications?from=" + long, token, 400, `{"error":"from: invalid user id: length 33 bytes, want 1 to 32"}`},
		{on, "/v1/users/bob/notifications?from=", token, 400, `{"error":"from: invalid user id: length 0 bytes, want 1 to 32"}`},
		{on, "/v1/users/bob/notifications?from=a&from=b", token, 400, `{"error":"from: given more than once"}`},
		{on, "/v1/users/bob/notifications?limit=0", token, 400, `{"error":"limit: want a whole number from 1 to 1000"}`},
		{on, "/v1/users/bob/notifications?limit=1001", token, 400, `{"error":"limit: want a whole number from 1 to 1000"}`},
		{on, "/v1/users/bob/notifications?limit=ten", token, 400, `{"error":"limit: want a whole number from 1 to 1000"}`},
		{on, "/v1/users/bob/notifications?limit=1&limit=2", token, 400, `{"error":"limit: given more than once"}`},
		{on, "/v1/users/broken/notifications", token, 503, `{"error":"history store unavailable"}`},
		{off, "/v1/users/bob/notifications", token, 503, `{"error":"follow history is off (FOLLOW_HISTORY=off)"}`},
		{on, "/v1/users/nobody/notifications", token, 200, `{"user":"nobody","notifications":[],"more":false}`},
	} {
		code, body := serve(tt.h, tt.target, tt.auth)
		if code != tt.code || body != tt.body {
			t.Errorf("GET %s: %d %s, want %d %s", tt.target, code, body, tt.code, tt.body)
		}
	}
	code, body := serve(on, "/v1/users/bob/notifications?from=alice&limit=50", token)
	var ans history.Answer
	if err := json.Unmarshal([]byte(body), &ans); err != nil || code != 200 {
		t.Fatalf("%d %s: %v", code, body, err)
	}
	f := follow("alice", "bob", 1700000000000)
	if len(ans.Notifications) != 1 {
		t.Fatalf("answer %s, want alice's follow", body)
	}
	it := ans.Notifications[0]
	if it.Kind != "follow" || it.From != "alice" || it.TaskID != f.TaskID() || it.Fate != "pending" ||
		it.EventTime == nil || !it.EventTime.Equal(time.UnixMilli(1700000000000)) || len(it.Events) != 1 || it.Events[0].Event != "received" {
		t.Errorf("answer %s", body)
	}
}
