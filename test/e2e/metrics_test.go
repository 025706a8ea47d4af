package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/test/deploycheck"
)

// scrape GETs a /metrics URL in the Prometheus text format and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %d %s", url, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return mfs
}

// sample returns the value of the series of family name whose labels
// include want: a counter's or gauge's value, a histogram's sample count.
// ok is false when no series matches.
func sample(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, w := range want {
			match = match && labels[k] == w
		}
		if !match {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		case dto.MetricType_UNTYPED:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// series is one expected sample: family, labels, and a check of its value.
type series struct {
	name   string
	labels map[string]string
	check  func(float64) bool
	expect string // the check, for messages
}

func eq(n float64) (func(float64) bool, string) {
	return func(v float64) bool { return v == n }, fmt.Sprintf("= %v", n)
}

func atLeast(n float64) (func(float64) bool, string) {
	return func(v float64) bool { return v >= n }, fmt.Sprintf(">= %v", n)
}

func above(n float64) (func(float64) bool, string) {
	return func(v float64) bool { return v > n }, fmt.Sprintf("> %v", n)
}

func want(name string, labels map[string]string, c func(float64) (func(float64) bool, string), n float64) series {
	check, expect := c(n)
	return series{name: name, labels: labels, check: check, expect: expect}
}

func checkSeries(t *testing.T, where string, mfs map[string]*dto.MetricFamily, ss []series) {
	t.Helper()
	for _, s := range ss {
		v, ok := sample(mfs, s.name, s.labels)
		switch {
		case !ok:
			t.Errorf("%s: no series %s%v (families: %v)", where, s.name, s.labels, slices.Sorted(maps.Keys(mfs)))
		case !s.check(v):
			t.Errorf("%s: %s%v = %v, want %s", where, s.name, s.labels, v, s.expect)
		}
	}
}

// The metrics the alerts and the dashboard rely on, scraped from a real
// receiver and worker after real traffic: a follow pushed end to end, a
// dead token, an aggregated follow and its summary push, bad webhooks, and
// then a SENDER_ID_MISMATCH spike that opens the breaker; asynq's queue
// metrics while the queue holds the tasks (paused) and after it drained.
// Then every metric and label the alert rules and the dashboard query
// must be in the scrape, and followpush's metrics must be exactly as
// deploycheck reads them from the code.
//
// Before any traffic, the fresh scrapes already hold, at 0, every counter
// series the traffic later moves and every label value an alert or panel
// matches (a series born at 1 has no earlier sample for increase() to
// compare with). Both scrapes pass the lint `promtool check metrics` runs.
func TestMetricsScrape(t *testing.T) {
	skipIfShort(t, "runs the programs")
	// SENDER_ID_MISMATCH answers: the first 100 tokens are deleted
	// (SENDER_ID_MISMATCH_LIMIT), the rest kept.
	const spike, mismatchLimit = 130, 100
	s := startStack(t, 1, map[string]string{
		"MAX_DEVICES_PER_USER": "200",
		"AGGREGATION_WINDOW":   "1s",
		"FCM_SEND_TIMEOUT":     "10s", // the spike's sends must not time out into retries
	})
	s.fcm.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		switch {
		case r.Token == "dead-dave":
			return fcmtest.Unregistered()
		case strings.HasPrefix(r.Token, "mismatch-"):
			return fcmtest.SenderIDMismatch()
		}
		return fcmtest.Response{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	workerAddr, err := s.workers[0].Addr(ctx, "metrics")
	if err != nil {
		t.Fatal(err)
	}
	// The stack gives the receiver METRICS_ADDR too: its /metrics is there.
	receiverAddr, err := s.receiver.Addr(ctx, "metrics")
	if err != nil {
		t.Fatal(err)
	}
	receiverMetrics, workerMetrics := "http://"+receiverAddr+"/metrics", "http://"+workerAddr+"/metrics"
	fresh := map[string]map[string]*dto.MetricFamily{"receiver": scrape(t, receiverMetrics), "worker": scrape(t, workerMetrics)}

	s.registerDevice("bob", "tok-bob", "android")
	s.registerDevice("dave", "dead-dave", "android")
	s.registerDevice("dave", "tok-dave", "ios")
	s.registerDevice("zoe", "tok-zoe", "web")
	for i := 0; i < spike; i++ {
		s.registerDevice("mia", fmt.Sprintf("mismatch-%03d", i), "android")
	}
	registered := 4 + spike

	// The worker takes nothing from a paused queue: the tasks stay pending
	// and the queue metrics show them.
	if err := s.insp.PauseQueue(tasks.QueueFollow); err != nil {
		t.Fatal(err)
	}
	ev := nowMillis()
	follows := []map[string]any{
		followBody("alice", ev, "bob", "dave", "zoe"),
		followBody("carl", ev, "zoe"), // aggregated: zoe's summary push
	}
	for _, f := range follows {
		if status, body := s.webhook(tencent.CommandFollowAdd, f); status != http.StatusOK {
			t.Fatalf("follow: %d %s", status, body)
		}
	}
	const followTasks = 4 // and then mia's
	// Bad webhooks: malformed, unsigned, an unknown app; and a command the
	// service ignores.
	if status, _ := s.webhookRaw(tencent.CommandFollowAdd, []byte(`{"From_Account":"x","FollowList":[{"To_Account":"bob"}],"EventTime":"soon"}`)); status != http.StatusBadRequest {
		t.Errorf("malformed webhook: %d, want 400", status)
	}
	if status, _ := s.do(http.MethodPost, "/webhook?SdkAppid="+appID+"&CallbackCommand="+tencent.CommandFollowAdd, mustJSON(t, followBody("x", ev, "bob")), nil); status != http.StatusUnauthorized {
		t.Errorf("unsigned webhook: %d, want 401", status)
	}
	if status, _ := s.do(http.MethodPost, "/webhook?SdkAppid=1400999999&CallbackCommand="+tencent.CommandFollowAdd, mustJSON(t, followBody("x", ev, "bob")), nil); status != http.StatusForbidden {
		t.Errorf("unknown app: %d, want 403", status)
	}
	if status, _ := s.webhook("State.StateChange", map[string]any{"CallbackCommand": "State.StateChange"}); status != http.StatusOK {
		t.Errorf("ignored command: %d, want 200", status)
	}

	paused := scrape(t, workerMetrics)
	checkSeries(t, "worker, queue paused", paused, []series{
		want("asynq_queue_size", map[string]string{"queue": tasks.QueueFollow}, eq, followTasks),
		want("asynq_queue_tasks", map[string]string{"queue": tasks.QueueFollow, "state": "pending"}, eq, followTasks),
		want("asynq_queue_tasks", map[string]string{"queue": tasks.QueueFollow, "state": "active"}, eq, 0),
		want("asynq_queue_paused", map[string]string{"queue": tasks.QueueFollow}, eq, 1),
		want("asynq_tasks_enqueued_total", map[string]string{"queue": tasks.QueueFollow, "state": "pending"}, eq, followTasks), // deprecated, kept
		want("asynq_queue_paused_total", map[string]string{"queue": tasks.QueueFollow}, eq, 1),
		want("asynq_queue_latency_seconds", map[string]string{"queue": tasks.QueueFollow}, above, 0),
		want("asynq_queue_memory_usage_approx_bytes", map[string]string{"queue": tasks.QueueFollow}, above, 0),
	})
	for _, state := range []string{"active", "pending", "scheduled", "retry", "archived", "completed"} {
		if _, ok := sample(paused, "asynq_queue_tasks", map[string]string{"queue": tasks.QueueFollow, "state": state}); !ok {
			t.Errorf("worker: no asynq_queue_tasks{queue=%q,state=%q}", tasks.QueueFollow, state)
		}
	}

	if err := s.insp.UnpauseQueue(tasks.QueueFollow); err != nil {
		t.Fatal(err)
	}
	s.waitIdle(30 * time.Second) // the summary push is scheduled: idle once it went out
	// The spike comes last: a successful send afterwards would close the
	// breaker (and reset its count).
	s.follow(t, "alice", nowMillis(), "mia")
	s.waitIdle(30 * time.Second)

	receiver := scrape(t, receiverMetrics)
	add := map[string]string{"command": tencent.CommandFollowAdd}
	with := func(m map[string]string, k, v string) map[string]string {
		out := maps.Clone(m)
		out[k] = v
		return out
	}
	checkSeries(t, "receiver", receiver, []series{
		want("followpush_webhooks_total", with(add, "result", "ok"), eq, 3),
		want("followpush_webhooks_total", with(add, "result", "bad_request"), eq, 1),
		want("followpush_webhooks_total", with(add, "result", "unauthorized"), eq, 1),
		want("followpush_webhooks_total", with(add, "result", "forbidden"), eq, 1),
		want("followpush_webhooks_total", map[string]string{"command": "other", "result": "ignored"}, eq, 1),
		want("followpush_webhook_duration_seconds", add, atLeast, 5),
		want("followpush_follows_total", map[string]string{"result": "enqueued"}, eq, followTasks+1),
		want("followpush_enqueue_duration_seconds", nil, atLeast, 3),
		want("followpush_device_api_requests_total", map[string]string{"method": http.MethodPut, "code": "204"}, eq, float64(registered)),
		want("followpush_spool_depth", nil, eq, 0),
		want("followpush_spool_bytes", nil, eq, 0),
	})
	if _, ok := receiver["asynq_queue_size"]; ok {
		t.Errorf("the receiver exports asynq's queue metrics; only workers should")
	}

	worker := scrape(t, workerMetrics)
	mismatch := map[string]string{"reason": "sender_id_mismatch"}
	checkSeries(t, "worker", worker, []series{
		want("followpush_pushes_total", map[string]string{"outcome": "sent"}, atLeast, 4), // bob, dave, zoe, zoe's summary
		want("followpush_pushes_total", map[string]string{"outcome": "unregistered"}, eq, 1),
		want("followpush_pushes_total", map[string]string{"outcome": "sender_id_mismatch"}, eq, spike),
		want("followpush_tokens_deleted_total", map[string]string{"reason": "unregistered"}, eq, 1),
		want("followpush_tokens_deleted_total", mismatch, eq, mismatchLimit),
		want("followpush_tokens_kept_total", mismatch, eq, spike-mismatchLimit),
		want("followpush_sender_id_mismatch_breaker_open", nil, eq, 1),
		want("followpush_pushes_total", map[string]string{"outcome": "invalid_message"}, eq, 0),
		want("followpush_tasks_total", map[string]string{"result": "stale"}, eq, 0),
		want("followpush_tasks_total", map[string]string{"result": "sent"}, atLeast, 3),
		want("followpush_tasks_total", map[string]string{"result": "aggregated"}, eq, 1),
		want("followpush_push_delay_seconds", nil, atLeast, 3),
		want("followpush_digests_total", map[string]string{"result": "sent"}, eq, 1),
		want("followpush_digest_followers", nil, eq, 1),
		want("followpush_rate_limited_total", nil, eq, 0), // FCM_RATE_LIMIT 8000/s is never reached
		want("asynq_queue_size", map[string]string{"queue": tasks.QueueFollow}, eq, 0),
		want("asynq_queue_tasks", map[string]string{"queue": tasks.QueueFollow, "state": "pending"}, eq, 0),
		want("asynq_queue_paused", map[string]string{"queue": tasks.QueueFollow}, eq, 0),
		want("asynq_queue_tasks", map[string]string{"queue": tasks.QueueFollow, "state": "completed"}, eq, 0), // COMPLETED_TASK_RETENTION off
		want("asynq_tasks_processed_total", map[string]string{"queue": tasks.QueueFollow}, atLeast, followTasks+2),
		want("asynq_tasks_failed_total", map[string]string{"queue": tasks.QueueFollow}, eq, 0),
	})
	if left := len(s.devices("mia")); left != spike-mismatchLimit {
		t.Errorf("mia has %d tokens left, want %d (SENDER_ID_MISMATCH_LIMIT deleted)", left, spike-mismatchLimit)
	}
	final := map[string]map[string]*dto.MetricFamily{"receiver": receiver, "worker": worker}

	// What `promtool check metrics` checks: no problem in either scrape.
	for _, who := range []string{"receiver", "worker"} {
		for when, mfs := range map[string]map[string]*dto.MetricFamily{"fresh": fresh[who], "after traffic": final[who]} {
			problems, err := promlint.NewWithMetricFamilies(slices.Collect(maps.Values(mfs))).Lint()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s /metrics (%s) fails the lint: %s: %s", who, when, p.Metric, p.Text)
			}
		}
	}

	// Counters start at 0: every followpush counter series the traffic
	// moved was in the fresh scrape, at 0.
	for _, who := range []string{"receiver", "worker"} {
		for name, mf := range final[who] {
			if !strings.HasPrefix(name, "followpush_") || mf.GetType() != dto.MetricType_COUNTER {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				if v, ok := sample(fresh[who], name, labels); !ok || v != 0 {
					t.Errorf("%s: %s%v was not exported at 0 before any traffic (found %v, value %v)", who, name, labels, ok, v)
				}
			}
		}
	}

	// Every metric, label and grouping the alert rules and the dashboard
	// use is in these scrapes.
	var all []*dto.MetricFamily
	for _, mfs := range []map[string]*dto.MetricFamily{receiver, worker} {
		for _, name := range slices.Sorted(maps.Keys(mfs)) {
			all = append(all, mfs[name])
		}
	}
	live := deploycheck.SchemaFromFamilies(all).WithoutValues()
	queries, err := deploycheck.DeployQueries("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 20 {
		t.Fatalf("found only %d queries in the alert rules and the dashboard", len(queries))
	}
	// followpush's families as the fresh scrapes had them, label values
	// included; a family they lacked has no label value at all. (asynq's
	// queue metrics appear only with the queue's first task.)
	var freshOwn []*dto.MetricFamily
	for _, mfs := range fresh {
		for name, mf := range mfs {
			if strings.HasPrefix(name, "followpush_") {
				freshOwn = append(freshOwn, mf)
			}
		}
	}
	atStart := live.Merge(deploycheck.SchemaFromFamilies(freshOwn))
	for name, m := range atStart {
		if strings.HasPrefix(name, "followpush_") && m.Values == nil {
			m.Values = map[string]map[string]bool{}
			for l := range m.Labels {
				m.Values[l] = map[string]bool{}
			}
			atStart[name] = m
		}
	}
	used := map[string]bool{}
	for _, q := range queries {
		u, errs := deploycheck.CheckQuery(q, live)
		for _, err := range errs {
			t.Errorf("against the live scrape: %v", err)
		}
		maps.Copy(used, u)
		// Every label value an alert or panel matches is there at start.
		_, errs = deploycheck.CheckQuery(q, atStart)
		for _, err := range errs {
			t.Errorf("against the scrapes before any traffic: %v", err)
		}
	}
	// ... and the code defines followpush's metrics exactly as they are
	// exported, so deploycheck's static checks see what runs.
	static, err := deploycheck.SourceMetrics("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(static)) {
		got, ok := live[name]
		if !ok {
			t.Errorf("%s (%s) is not in the scrapes", name, static[name].Source)
			continue
		}
		if got.Type != static[name].Type {
			t.Errorf("%s: scraped as a %s, defined as a %s", name, got.Type, static[name].Type)
		}
		if d := cmp.Diff(static[name].Labels, got.Labels); d != "" {
			t.Errorf("%s labels (-defined +scraped):\n%s", name, d)
		}
		if !used[name] {
			t.Errorf("%s is exported but neither an alert nor the dashboard uses it", name)
		}
	}
}

// The receiver program mounts asynqmon at /monitoring/ only with
// MONITORING_USER and MONITORING_PASSWORD, and then only for requests with
// those credentials.
func TestReceiverMonitoringAuth(t *testing.T) {
	skipIfShort(t, "runs the programs")
	s := startStack(t, 0, nil) // a receiver without MONITORING_*
	const user, password = "ops", "monitoring-password-0123"
	s.env["MONITORING_USER"], s.env["MONITORING_PASSWORD"] = user, password
	guarded := s.start("receiver")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, err := guarded.Addr(ctx, "http")
	if err != nil {
		t.Fatal(err)
	}
	status := func(base, path, u, p string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if u != "" {
			req.SetBasicAuth(u, p)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/monitoring/", "/monitoring/api/queues"} {
		if got := status(s.base, path, user, password); got != http.StatusNotFound {
			t.Errorf("receiver without MONITORING_*: GET %s = %d, want 404", path, got)
		}
		guardedBase := "http://" + addr
		for _, c := range []struct {
			u, p string
			want int
		}{{"", "", http.StatusUnauthorized}, {user, "wrong-password-0123", http.StatusUnauthorized}, {user, password, http.StatusOK}} {
			if got := status(guardedBase, path, c.u, c.p); got != c.want {
				t.Errorf("receiver with MONITORING_*: GET %s as %q/%q = %d, want %d", path, c.u, c.p, got, c.want)
			}
		}
	}
}

// The receiver's METRICS_ADDR moves /metrics off the webhook's port: with
// it, /metrics is served there (and nothing else is), and the webhook's
// port answers 404 for it; without it, /metrics is on the webhook's port,
// as before the setting existed. Either way the router's own answers there
// are JSON (a bad % escape, GET /webhook).
func TestReceiverMetricsAddr(t *testing.T) {
	skipIfShort(t, "runs the programs")
	s := startStack(t, 0, nil) // its receiver has METRICS_ADDR=127.0.0.1:0
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	metricsAddr, err := s.receiver.Addr(ctx, "metrics")
	if err != nil {
		t.Fatal(err)
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("http://" + metricsAddr + "/metrics"); status != http.StatusOK || !strings.Contains(body, "followpush_enqueue_duration_seconds_count") {
		t.Errorf("METRICS_ADDR set: GET /metrics there = %d, want 200 with followpush_enqueue_duration_seconds:\n%.300s", status, body)
	}
	for _, path := range []string{"/webhook", "/healthz", "/v1/users/bob/devices"} {
		if status, _ := get("http://" + metricsAddr + path); status != http.StatusNotFound {
			t.Errorf("METRICS_ADDR set: GET %s on it = %d, want 404 (only /metrics is there)", path, status)
		}
	}
	if status, body := get(s.base + "/metrics"); status != http.StatusNotFound || !strings.HasPrefix(body, `{"error":`) {
		t.Errorf("METRICS_ADDR set: GET /metrics on LISTEN_ADDR = %d %q, want 404 and a JSON error", status, body)
	}

	delete(s.env, "METRICS_ADDR")
	plain := s.start("receiver")
	addr, err := plain.Addr(ctx, "http")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := get("http://" + addr + "/metrics"); status != http.StatusOK || !strings.Contains(body, "followpush_enqueue_duration_seconds_count") {
		t.Errorf("METRICS_ADDR unset: GET /metrics on LISTEN_ADDR = %d, want 200 with followpush_enqueue_duration_seconds:\n%.300s", status, body)
	}
	if lines := plain.Lines(proc.Msg("listening", "server", "metrics")); len(lines) != 0 {
		t.Errorf("METRICS_ADDR unset: a metrics listener was opened: %v", lines)
	}

	// The router's own answers are JSON through the program's listener.
	for _, c := range []struct{ request, wantPrefix string }{
		{"GET /webhook HTTP/1.1", `{"ActionStatus":"FAIL","ErrorCode":4050,`},
		{"POST /webhook%zz HTTP/1.1", `{"ActionStatus":"FAIL","ErrorCode":4000,`},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "%s\r\nHost: receiver\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", c.request)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(string(b), c.wantPrefix) {
			t.Errorf("%s: %d %s %q, want JSON starting %s", c.request, resp.StatusCode, resp.Header.Get("Content-Type"), b, c.wantPrefix)
		}
	}
}
