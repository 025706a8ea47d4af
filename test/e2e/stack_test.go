// Package e2e_test runs the real followpush programs as separate processes
// against a real redis-server and a local FCM-wire-compatible server.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
)

// binDir holds the programs built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "followpush-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../../cmd/receiver", "../../cmd/worker", "../../cmd/standalone")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build programs:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipIfShort skips t under -short: it runs several programs for a while
// or injects faults, and why says which (and how long, when that is long).
// The quick end-to-end tests run under -short too.
func skipIfShort(t *testing.T, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
}

const (
	appID         = "1400000001"
	callbackToken = "e2e-callback-token"
	apiToken      = "e2e-api-token-0123456789"
)

// stack is one redis-server, one fake FCM, one receiver and N workers.
type stack struct {
	t        *testing.T
	redis    *redistest.Server
	fcm      *fcmtest.Server
	receiver *proc.Process
	workers  []*proc.Process
	base     string
	insp     *asynq.Inspector
	env      map[string]string

	mu      sync.Mutex
	procs   []*proc.Process // every process started, killed ones included
	secrets map[string]bool // values no process may log (see checkLogsKeepSecrets)
}

func startStack(t *testing.T, workers int, extra map[string]string) *stack {
	t.Helper()
	s := &stack{t: t, redis: redistest.Start(t, redistest.AOF("everysec")), fcm: fcmtest.NewServer(t),
		secrets: map[string]bool{callbackToken: true, apiToken: true}}
	// FCM_SEND_TIMEOUT is the programs' default: a send that FCM accepted
	// but answered past the deadline (a busy machine can take seconds) is
	// retried and pushed twice, which the tests count as a duplicate.
	s.env = map[string]string{
		"REDIS_URL":              s.redis.URL(0),
		"TENCENT_SDKAPPID":       appID,
		"TENCENT_CALLBACK_TOKEN": callbackToken,
		"API_TOKEN":              apiToken,
		"LISTEN_ADDR":            "127.0.0.1:0",
		"METRICS_ADDR":           "127.0.0.1:0",
		"FCM_ENDPOINT":           s.fcm.URL(),
		"FCM_PROJECT_ID":         "e2e-project",
		"FCM_SEND_TIMEOUT":       "10s",
		"WORKER_CONCURRENCY":     "20",
		"SHUTDOWN_TIMEOUT":       "5s",
		"LOG_LEVEL":              "debug",
	}
	for k, v := range extra {
		s.env[k] = v
	}
	s.receiver = s.start("receiver")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, err := s.receiver.Addr(ctx, "http")
	if err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + addr
	for i := 0; i < workers; i++ {
		s.addWorker(ctx)
	}
	s.insp = asynq.NewInspector(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	t.Cleanup(func() { s.insp.Close() })
	t.Cleanup(func() { s.checkLogLines(t) })
	return s
}

// checkLogLines fails t for every JSON log line of the stack's processes
// that names a key twice in one object: log pipelines keep one of the two
// values, or refuse the line.
func (s *stack) checkLogLines(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	procs := append([]*proc.Process(nil), s.procs...)
	s.mu.Unlock()
	for _, p := range procs {
		for line := range strings.Lines(p.Output()) {
			if !strings.HasPrefix(line, "{") {
				continue
			}
			if k := duplicateKey(line); k != "" {
				t.Errorf("%s logged the key %q twice in one line: %s", p.Name, k, strings.TrimSpace(line))
			}
		}
	}
}

// duplicateKey returns the first key named twice in one object of the JSON
// value in line ("" when there is none, or line is not JSON).
func duplicateKey(line string) string {
	dec := json.NewDecoder(strings.NewReader(line))
	var walk func() (string, error)
	walk = func() (string, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return "", err
				}
				k, _ := kt.(string)
				if seen[k] {
					return k, nil
				}
				seen[k] = true
				if d, err := walk(); d != "" || err != nil {
					return d, err
				}
			}
		case json.Delim('['):
			for dec.More() {
				if d, err := walk(); d != "" || err != nil {
					return d, err
				}
			}
		default:
			return "", nil
		}
		_, err = dec.Token() // the closing delimiter
		return "", err
	}
	d, _ := walk()
	return d
}

func (s *stack) start(name string) *proc.Process {
	s.t.Helper()
	var echo io.Writer
	if testing.Verbose() {
		echo = os.Stderr
	}
	p := proc.StartTest(s.t, name, filepath.Join(binDir, name), s.env, echo)
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p
}

func (s *stack) addWorker(ctx context.Context) *proc.Process {
	s.t.Helper()
	w := s.start("worker")
	if _, err := w.WaitLine(ctx, proc.Msg("worker started")); err != nil {
		s.t.Fatal(err)
	}
	s.workers = append(s.workers, w)
	return w
}

// do sends an HTTP request to the receiver and returns status and body. A
// request that gets no answer fails the test (with Errorf, as senders run
// in goroutines of their own) and returns status 0.
func (s *stack) do(method, path string, body []byte, header map[string]string) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// follow posts the webhook of from following to at eventTime (ms), failing
// t unless the receiver answers 200.
func (s *stack) follow(t *testing.T, from string, eventTime int64, to ...string) {
	t.Helper()
	if status, body := s.webhook(tencent.CommandFollowAdd, followBody(from, eventTime, to...)); status != http.StatusOK {
		t.Fatalf("follow of %v by %s: %d %s", to, from, status, body)
	}
}

func (s *stack) registerDevice(user, token, platform string) {
	s.t.Helper()
	body := []byte(`{"platform":"` + platform + `"}`)
	status, b := s.do(http.MethodPut, "/v1/users/"+url.PathEscape(user)+"/devices/"+url.PathEscape(token), body,
		map[string]string{"Authorization": "Bearer " + apiToken})
	if status/100 != 2 {
		s.t.Fatalf("register %s for %s: %d %s", token, user, status, b)
	}
	s.noteSecret(token)
}

func (s *stack) devices(user string) []string {
	s.t.Helper()
	status, b := s.do(http.MethodGet, "/v1/users/"+url.PathEscape(user)+"/devices", nil,
		map[string]string{"Authorization": "Bearer " + apiToken})
	if status != http.StatusOK {
		s.t.Fatalf("list devices of %s: %d %s", user, status, b)
	}
	var out struct {
		Devices []struct{ Token string } `json:"devices"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		s.t.Fatal(err)
	}
	var tokens []string
	for _, d := range out.Devices {
		tokens = append(tokens, d.Token)
	}
	return tokens
}

// webhook posts a signed callback and returns the status and body.
func (s *stack) webhook(command string, body any) (int, []byte) {
	s.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.webhookRaw(command, b)
}

func (s *stack) webhookRaw(command string, body []byte) (int, []byte) {
	s.t.Helper()
	return s.do(http.MethodPost, "/webhook?"+s.signedQuery(command).Encode(), body, nil)
}

// signedQuery is the query string of a callback as Tencent sends it, signed
// now; the Sign is noted as a secret.
func (s *stack) signedQuery(command string) url.Values {
	rt := strconv.FormatInt(time.Now().Unix(), 10)
	sign := tencent.Sign(callbackToken, rt)
	s.noteSecret(sign)
	return url.Values{
		"SdkAppid": {appID}, "CallbackCommand": {command}, "contenttype": {"json"},
		"ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"},
		"RequestTime": {rt}, "Sign": {sign},
	}
}

// noteSecret adds v to the values no process may log.
func (s *stack) noteSecret(v string) {
	s.mu.Lock()
	s.secrets[v] = true
	s.mu.Unlock()
}

// checkLogsKeepSecrets fails t if the output (stdout and stderr) of any
// process of the stack holds a secret: the callback token, the API token, a
// Sign that was sent, or a whole device token that was registered. It
// returns all that output, for callers that also check what must be there.
func (s *stack) checkLogsKeepSecrets(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	procs := append([]*proc.Process(nil), s.procs...)
	secrets := make([]string, 0, len(s.secrets))
	for v := range s.secrets {
		secrets = append(secrets, v)
	}
	s.mu.Unlock()
	var all strings.Builder
	for _, p := range procs {
		out := p.Output()
		all.WriteString(out)
		all.WriteByte('\n')
		for _, v := range secrets {
			if i := strings.Index(out, v); i >= 0 {
				line := out[strings.LastIndexByte(out[:i], '\n')+1:]
				line, _, _ = strings.Cut(line, "\n")
				t.Errorf("%s logged a secret (%d bytes, starting %.4q): %s", p.Name, len(v), v, strings.ReplaceAll(line, v, "<SECRET>"))
			}
		}
	}
	if strings.TrimSpace(all.String()) == "" {
		t.Error("the processes printed nothing: the secret scan saw no logs")
	}
	return all.String()
}

func followBody(from string, eventTime int64, to ...string) map[string]any {
	list := make([]map[string]string, len(to))
	for i, t := range to {
		list[i] = map[string]string{"To_Account": t}
	}
	return map[string]any{
		"CallbackCommand": tencent.CommandFollowAdd, "From_Account": from, "FollowList": list, "EventTime": eventTime,
	}
}

func unfollowBody(from string, eventTime int64, to ...string) map[string]any {
	return map[string]any{
		"CallbackCommand": tencent.CommandFollowDelete, "From_Account": from, "To_Account": to, "EventTime": eventTime,
	}
}

// waitIdle waits until the follow queue has nothing pending, running,
// scheduled or waiting to retry.
func (s *stack) waitIdle(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		busy, err := s.followQueuesBusy()
		if err == nil && busy == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("queues not idle after %s: %s (err %v)", timeout, busy, err)
		}
		<-tick.C
	}
}

// followQueuesBusy describes the follow queues (every FOLLOW_QUEUE_SHARDS)
// holding pending, active, scheduled or retry tasks; "" when none does.
func (s *stack) followQueuesBusy() (string, error) {
	names, err := s.insp.Queues()
	if err != nil {
		return "", err
	}
	busy := ""
	for _, q := range names {
		if !tasks.IsFollowQueue(q) {
			continue
		}
		qi, err := s.insp.GetQueueInfo(q)
		if err != nil {
			return "", err
		}
		if qi.Pending+qi.Active+qi.Scheduled+qi.Retry > 0 {
			busy += fmt.Sprintf("%s %+v; ", q, *qi)
		}
	}
	return busy, nil
}

// accepted counts, per token, the sends the fake FCM answered with success.
func accepted(reqs []fcmtest.Request, ok func(fcmtest.Request) bool) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		if ok(r) {
			out[r.Token]++
		}
	}
	return out
}

func nowMillis() int64 { return time.Now().UnixMilli() }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
