package webhook_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/webhook"
)

const (
	testApp   = "1400000000"
	testToken = "cb-token"
)

// serveWebhook serves h at POST /webhook, as the receiver does.
func serveWebhook(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /webhook", h)
	return mux
}

var testNow = time.Unix(1767225600, 0) // fixed clock: RequestTime checks are deterministic

type fixture struct {
	srv  *httptest.Server
	rdb  redis.UniversalClient
	insp *asynq.Inspector
	red  *redistest.Server
}

func newFixture(t *testing.T, opts webhook.Options) *fixture {
	t.Helper()
	red := redistest.Start(t)
	// The client the programs use (config.Redis), not the test helper's:
	// its timeouts are part of what is tested.
	rc, err := config.Redis{}.WithURL(red.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	rdb := rc.Client()
	t.Cleanup(func() { rdb.Close() })
	if opts.AppIDs == nil {
		opts.AppIDs = []string{testApp}
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	srv := httptest.NewServer(serveWebhook(webhook.NewHandler(opts, webhook.Deps{
		Enqueuer:  webhook.NewAsynqEnqueuer(rdb, 4),
		Canceller: delivery.New(rdb, delivery.Options{}),
	})))
	t.Cleanup(srv.Close)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	return &fixture{srv: srv, rdb: rdb, insp: insp, red: red}
}

// queued returns the ids of the follow tasks waiting in the queue.
func (f *fixture) queued(t *testing.T) []string {
	t.Helper()
	list, err := f.insp.ListPendingTasks(tasks.QueueFollow)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	var ids []string
	for _, ti := range list {
		ids = append(ids, ti.ID)
	}
	return ids
}

func signedQuery(command string, at time.Time) url.Values {
	rt := strconv.FormatInt(at.Unix(), 10)
	return url.Values{"SdkAppid": {testApp}, "CallbackCommand": {command}, "contenttype": {"json"},
		"RequestTime": {rt}, "Sign": {tencent.Sign(testToken, rt)}, "OptPlatform": {"RESTAPI"}}
}

func post(t *testing.T, base string, q url.Values, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(base+"/webhook?"+q.Encode(), "", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &answer); err != nil {
		t.Fatalf("answer is not JSON: %q", b)
	}
	return resp.StatusCode, answer
}

const goodFollow = `{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"UserID_001","FollowList":[{"To_Account":"UserID_002"},{"To_Account":"UserID_003"}],"EventTime":1702018343678}`

// Every bad webhook gets its status, a Tencent-shaped FAIL answer, and
// enqueues nothing.
func TestWebhookRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t, webhook.Options{CallbackToken: testToken, MaxBodyBytes: 4096, MaxFollows: 5})
	good := signedQuery(tencent.CommandFollowAdd, testNow)
	with := func(k, v string) url.Values {
		q := url.Values{}
		for kk, vv := range good {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return q
	}
	tests := []struct {
		name   string
		q      url.Values
		body   string
		status int
	}{
		{"unknown app", with("SdkAppid", "1400000099"), goodFollow, 403},
		{"no app", with("SdkAppid", ""), goodFollow, 403},
		{"no sign", with("Sign", ""), goodFollow, 401},
		{"bad sign", with("Sign", strings.Repeat("0", 64)), goodFollow, 401},
		{"no request time", with("RequestTime", ""), goodFollow, 401},
		{"stale request time", signedQuery(tencent.CommandFollowAdd, testNow.Add(-61*time.Second)), goodFollow, 401},
		{"future request time", signedQuery(tencent.CommandFollowAdd, testNow.Add(61*time.Second)), goodFollow, 401},
		{"unauthenticated and malformed: auth answer", with("Sign", "00"), `{`, 401},
		{"not JSON", good, `{"From_Account":`, 400},
		{"empty body", good, ``, 400},
		{"wrong type", good, `{"From_Account":1,"FollowList":[{"To_Account":"b"}],"EventTime":1}`, 400},
		{"missing FollowList", good, `{"From_Account":"a","EventTime":1}`, 400},
		{"list too long", good, `{"From_Account":"a","FollowList":[{"To_Account":"1"},{"To_Account":"2"},{"To_Account":"3"},{"To_Account":"4"},{"To_Account":"5"},{"To_Account":"6"}],"EventTime":1}`, 400},
		{"invalid UTF-8", good, "{\"From_Account\":\"a\xff\",\"FollowList\":[{\"To_Account\":\"b\"}],\"EventTime\":1}", 400},
		{"duplicate key", good, `{"From_Account":"a","From_Account":"b","FollowList":[{"To_Account":"c"}],"EventTime":1}`, 400},
		{"command mismatch", good, strings.Replace(goodFollow, "FollowAdd", "FollowDelete", 1), 400},
		{"too large", good, `{"x":"` + strings.Repeat("a", 5000) + `"}`, 413},
		{"EventTime far in the future", good, `{"From_Account":"a","FollowList":[{"To_Account":"b"}],"EventTime":4102444800000}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := post(t, f.srv.URL, tt.q, tt.body)
			if status != tt.status {
				t.Errorf("status = %d, want %d (answer %v)", status, tt.status, answer)
			}
			if answer["ActionStatus"] != "FAIL" || answer["ErrorCode"] == float64(0) || answer["ErrorInfo"] == nil {
				t.Errorf("answer = %v, want a Tencent FAIL with a non-zero ErrorCode", answer)
			}
		})
	}
	if q := f.queued(t); len(q) != 0 {
		t.Errorf("bad webhooks enqueued %v", q)
	}
}

func TestWebhookAccepts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, webhook.Options{CallbackToken: testToken})
	okAnswer := map[string]any{"ActionStatus": "OK", "ErrorCode": float64(0), "ErrorInfo": ""}

	// An unhandled command is answered OK and ignored.
	status, answer := post(t, f.srv.URL, signedQuery("C2C.CallbackAfterSendMsg", testNow), `{"CallbackCommand":"C2C.CallbackAfterSendMsg","MsgBody":[]}`)
	if status != 200 || !cmp.Equal(answer, okAnswer) {
		t.Fatalf("unhandled command: %d %v", status, answer)
	}
	// Only self-follows: OK, nothing to do.
	status, _ = post(t, f.srv.URL, signedQuery(tencent.CommandFollowAdd, testNow), `{"From_Account":"a","FollowList":[{"To_Account":"a"}],"EventTime":5}`)
	if status != 200 || len(f.queued(t)) != 0 {
		t.Fatalf("self-follow: %d, queued %v", status, f.queued(t))
	}
	// Sign hex is case-insensitive; a follow enqueues one task per followee.
	q := signedQuery(tencent.CommandFollowAdd, testNow)
	q.Set("Sign", strings.ToUpper(q.Get("Sign")))
	status, answer = post(t, f.srv.URL, q, goodFollow)
	if status != 200 || !cmp.Equal(answer, okAnswer) {
		t.Fatalf("follow: %d %v", status, answer)
	}
	want := []string{}
	for _, to := range []string{"UserID_002", "UserID_003"} {
		want = append(want, tasks.Follow{AppID: testApp, From: "UserID_001", To: to, EventTime: 1702018343678}.TaskID())
	}
	got := f.queued(t)
	if d := cmp.Diff(want, got, sortStrings); d != "" {
		t.Errorf("queued tasks (-want +got):\n%s", d)
	}
	// The same webhook again: OK, and still one task per followee.
	if status, _ := post(t, f.srv.URL, signedQuery(tencent.CommandFollowAdd, testNow), goodFollow); status != 200 {
		t.Fatalf("repeat: %d", status)
	}
	if d := cmp.Diff(want, f.queued(t), sortStrings); d != "" {
		t.Errorf("after a repeat (-want +got):\n%s", d)
	}
}

// With Redis gone the receiver answers a fast 5xx (not 200: the event was not
// stored).
func TestWebhookStorageFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, webhook.Options{})
	f.red.Stop()
	start := time.Now()
	status, answer := post(t, f.srv.URL, url.Values{"SdkAppid": {testApp}, "CallbackCommand": {tencent.CommandFollowAdd}}, goodFollow)
	if status/100 != 5 || answer["ActionStatus"] != "FAIL" {
		t.Errorf("with Redis down: %d %v, want 5xx FAIL", status, answer)
	}
	t.Logf("5xx answered in %s", time.Since(start))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answer took %s, beyond Tencent's 2 s budget", d)
	}
}

var sortStrings = cmpSortStrings()

// A stalled Redis (SIGSTOP: connections open, no answers) must not hold a
// webhook past Tencent's 2 s: the answer is a 5xx well inside it.
func TestWebhookStalledRedis(t *testing.T) {
	t.Parallel()
	f := newFixture(t, webhook.Options{})
	// Warm the pool so the stall hits open connections, not dials.
	if status, _ := post(t, f.srv.URL, url.Values{"SdkAppid": {testApp}, "CallbackCommand": {tencent.CommandFollowAdd}}, goodFollow); status != 200 {
		t.Fatalf("warm-up: %d", status)
	}
	f.red.Pause()
	t.Cleanup(f.red.Resume)
	start := time.Now()
	status, _ := post(t, f.srv.URL, url.Values{"SdkAppid": {testApp}, "CallbackCommand": {tencent.CommandFollowAdd}},
		strings.Replace(goodFollow, "1702018343678", "1702018343679", 1))
	took := time.Since(start)
	t.Logf("stalled Redis: %d in %s", status, took)
	if status/100 != 5 || took > 1900*time.Millisecond {
		t.Errorf("stalled Redis: %d after %s, want a 5xx within Tencent's 2 s", status, took)
	}
}

// With a token per app, each app's webhooks must be signed with its own
// token: another app's token is refused (401), and an app without a token
// is refused rather than let in unsigned. One token under "" serves every
// app.
func TestWebhookPerAppTokens(t *testing.T) {
	t.Parallel()
	const appA, appB = "1400000001", "1400000002"
	signed := func(app, token string) url.Values {
		rt := strconv.FormatInt(testNow.Unix(), 10)
		return url.Values{"SdkAppid": {app}, "CallbackCommand": {tencent.CommandFollowAdd}, "RequestTime": {rt}, "Sign": {tencent.Sign(token, rt)}}
	}
	perApp := newFixture(t, webhook.Options{AppIDs: []string{appA, appB}, CallbackTokens: map[string]string{appA: "token-a", appB: "token-b"}})
	onlyA := newFixture(t, webhook.Options{AppIDs: []string{appA, appB}, CallbackTokens: map[string]string{appA: "token-a"}})
	shared := newFixture(t, webhook.Options{AppIDs: []string{appA, appB}, CallbackTokens: map[string]string{"": "token-all"}})
	for _, c := range []struct {
		name string
		f    *fixture
		q    url.Values
		want int
	}{
		{"app A with its token", perApp, signed(appA, "token-a"), 200},
		{"app B with its token", perApp, signed(appB, "token-b"), 200},
		{"app A with B's token", perApp, signed(appA, "token-b"), 401},
		{"app B with A's token", perApp, signed(appB, "token-a"), 401},
		{"app A unsigned", perApp, url.Values{"SdkAppid": {appA}, "CallbackCommand": {tencent.CommandFollowAdd}}, 401},
		{"app without a token", onlyA, signed(appB, "token-a"), 401},
		{"app without a token, unsigned", onlyA, url.Values{"SdkAppid": {appB}, "CallbackCommand": {tencent.CommandFollowAdd}}, 401},
		{"one token, app A", shared, signed(appA, "token-all"), 200},
		{"one token, app B", shared, signed(appB, "token-all"), 200},
		{"one token, wrong token", shared, signed(appB, "token-a"), 401},
	} {
		status, answer := post(t, c.f.srv.URL, c.q, goodFollow)
		if status != c.want {
			t.Errorf("%s: %d %v, want %d", c.name, status, answer, c.want)
		}
	}
	if q := onlyA.queued(t); len(q) != 0 {
		t.Errorf("refused webhooks enqueued %v", q)
	}
}
