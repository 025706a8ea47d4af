package e2e_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/testrig/proc"
)

// -h prints every setting with its default to stdout and exits 0.
func TestHelpListsSettings(t *testing.T) {
	t.Parallel()
	for prog, want := range map[string][]string{
		"receiver":   {"REDIS_URL", "LISTEN_ADDR", ":8080", "TENCENT_SDKAPPID", "TENCENT_CALLBACK_TOKEN", "API_TOKEN"},
		"worker":     {"REDIS_URL", "WORKER_CONCURRENCY", "FCM_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS", "FCM_ENDPOINT", "METRICS_ADDR", ":9091"},
		"standalone": {"REDIS_URL", "embedded", "127.0.0.1:8080", "1400000000", "WORKER_CONCURRENCY"},
	} {
		t.Run(prog, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(filepath.Join(binDir, prog), "-h")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s -h: %v\n%s", prog, err, stderr.String())
			}
			for _, w := range want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("%s -h lacks %q:\n%s", prog, w, stdout.String())
				}
			}
		})
	}
}

// Bad settings stop the program at start with exit code 2 and one line per
// problem naming its setting.
func TestBadSettingsExit2(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prog  string
		env   []string
		names []string
	}{
		{"receiver", []string{"TENCENT_SDKAPPID=", "LISTEN_ADDR=nope"}, []string{"TENCENT_SDKAPPID", "LISTEN_ADDR"}},
		{"worker", []string{"WORKER_CONCURRENCY=zero", "FCM_ENDPOINT=ftp://x", "FCM_PROJECT_ID=p"}, []string{"WORKER_CONCURRENCY", "FCM_ENDPOINT"}},
		{"standalone", []string{"REDIS_SENTINEL_ADDRS=127.0.0.1:26379"}, []string{"REDIS_SENTINEL_MASTER"}},
		{"receiver", []string{"TENCENT_SDKAPPID=1", "--bogus-flag"}, []string{"flags"}},
	}
	for _, tt := range tests {
		t.Run(tt.prog+"/"+strings.Join(tt.names, ","), func(t *testing.T) {
			t.Parallel()
			var args, env []string
			for _, e := range tt.env {
				if strings.HasPrefix(e, "-") {
					args = append(args, e)
				} else {
					env = append(env, e)
				}
			}
			var stderr bytes.Buffer
			cmd := exec.Command(filepath.Join(binDir, tt.prog), args...)
			cmd.Env, cmd.Stderr = env, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Fatalf("exit code %d (%v), want 2; stderr:\n%s", code, err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != len(tt.names) {
				t.Errorf("want one line per problem, got:\n%s", stderr.String())
			}
			for _, n := range tt.names {
				if !strings.Contains(stderr.String(), n) {
					t.Errorf("stderr does not name %s:\n%s", n, stderr.String())
				}
			}
		})
	}
}

// standalone with no settings at all (and with the user's own API_TOKEN,
// with one callback token, with a token per app): embedded Redis, pushes to
// the log, and what it prints on stdout, the walkthrough, works when pasted
// into a shell as a whole: every line that is not a command is a comment,
// the commands get the answers they announce, and the push goes out.
func TestStandaloneWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "bash", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	for name, env := range map[string]map[string]string{
		"dev API token":   {},
		"user API token":  {"API_TOKEN": "my-own-api-token-0123456789"},
		"signed webhooks": {"TENCENT_CALLBACK_TOKEN": "walkthrough-callback-token"},
		"a token per app": {"TENCENT_SDKAPPID": "1400000000,1400000001", "TENCENT_CALLBACK_TOKEN": "1400000000=walkthrough-token-a, 1400000001=walkthrough-token-b"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testWalkthrough(t, env)
		})
	}
}

func testWalkthrough(t *testing.T, extra map[string]string) {
	env := map[string]string{"LISTEN_ADDR": "127.0.0.1:0"}
	for k, v := range extra {
		env[k] = v
	}
	p := proc.StartTest(t, "standalone", filepath.Join(binDir, "standalone"), env, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.Addr(ctx, "http"); err != nil {
		t.Fatal(err)
	}
	// The walkthrough is printed (in one write) right after the listener
	// opens; its last line is step 3.
	var out string
	for {
		out = p.Output()
		if strings.Contains(out, "\n# 3. ") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no walkthrough printed:\n%s", out)
		case <-p.Exited():
			t.Fatalf("standalone exited:\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// stdout is the walkthrough; the log (stderr) is JSON lines.
	var script []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			script = append(script, line)
		}
	}
	walkthrough := strings.Join(script, "\n")
	if n := strings.Count(walkthrough, "\ncurl "); n != 2 {
		t.Fatalf("want 2 curl commands in the walkthrough, found %d:\n%s", n, walkthrough)
	}
	if signed := strings.Contains(walkthrough, "&Sign=$SIGN"); signed != (extra["TENCENT_CALLBACK_TOKEN"] != "") {
		t.Fatalf("webhook step signs: %v, want %v:\n%s", signed, !signed, walkthrough)
	}

	// Pasted as a whole, as a user would: errors stop it (-e), and an
	// unset variable or a line of prose fails it.
	sh := exec.CommandContext(ctx, "bash", "-eu", "-o", "pipefail", "-c", walkthrough)
	sh.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, k := range []string{"API_TOKEN", "TENCENT_CALLBACK_TOKEN"} {
		if v, ok := extra[k]; ok {
			sh.Env = append(sh.Env, k+"="+v)
		}
	}
	b, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough failed in bash: %v\n--- walkthrough:\n%s\n--- output:\n%s", err, walkthrough, b)
	}
	answers := regexp.MustCompile(`(?s)^HTTP 204\n\{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""\}\nHTTP 200\n$`)
	if !answers.Match(b) {
		t.Errorf("the walkthrough's answers:\n%s\nwant HTTP 204, then Tencent's OK and HTTP 200", b)
	}
	line, err := p.WaitLine(ctx, proc.Msg("push sent", "backend", "log", "from_account", "UserID_001", "to_account", "UserID_002"))
	if err != nil {
		t.Fatal(err)
	}
	if tok, _ := line["token"].(string); tok == "" || strings.Contains(tok, "demo-token-0123456789") {
		t.Errorf("push sent line shows token %q, want it masked", tok)
	}
	if line["title"] != "New follower" || line["body"] != "UserID_001 started following you" {
		t.Errorf("push sent line = %v", line)
	}
}

// standalone on loopback has no auth on /monitoring and a well-known dev
// API token: it answers them only for loopback Host names (a page whose
// DNS name is re-pointed at 127.0.0.1, DNS rebinding, sends its own), and
// refuses writes to /monitoring from other sites. The webhook is not
// limited (a tunnel may forward Tencent's callbacks to it).
func TestStandaloneRefusesForeignHosts(t *testing.T) {
	t.Parallel()
	p := proc.StartTest(t, "standalone", filepath.Join(binDir, "standalone"), map[string]string{"LISTEN_ADDR": "127.0.0.1:0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, err := p.Addr(ctx, "http")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	do := func(method, path, host string, header map[string]string) (int, string) {
		t.Helper()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"CallbackCommand":"C2C.CallbackAfterSendMsg"}`)
		}
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	bearer := map[string]string{"Authorization": "Bearer " + config.DevAPIToken}
	evil := "evil.example:" + port
	for _, c := range []struct {
		name, method, path, host string
		header                   map[string]string
		want                     int
	}{
		{"asynqmon, foreign Host", http.MethodGet, "/monitoring/api/queues", evil, nil, http.StatusForbidden},
		{"asynqmon page, foreign Host", http.MethodGet, "/monitoring/", evil, nil, http.StatusForbidden},
		{"device API with the dev token, foreign Host", http.MethodGet, "/v1/users/UserID_002/devices", evil, bearer, http.StatusForbidden},
		{"asynqmon write from another site", http.MethodPost, "/monitoring/api/queues/follow:pause", addr, map[string]string{"Origin": "http://" + evil, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"asynqmon, loopback Host", http.MethodGet, "/monitoring/api/queues", addr, nil, http.StatusOK},
		{"asynqmon, localhost", http.MethodGet, "/monitoring/api/queues", "localhost:" + port, nil, http.StatusOK},
		{"device API, loopback Host", http.MethodGet, "/v1/users/UserID_002/devices", addr, bearer, http.StatusOK},
		{"webhook, foreign Host", http.MethodPost, "/webhook?SdkAppid=1400000000&CallbackCommand=C2C.CallbackAfterSendMsg", evil, nil, http.StatusOK},
	} {
		status, body := do(c.method, c.path, c.host, c.header)
		if status != c.want {
			t.Errorf("%s: %s %s (Host %s) = %d %.200s, want %d", c.name, c.method, c.path, c.host, status, body, c.want)
		}
		if status == http.StatusForbidden && !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s: 403 body %q, want a JSON error", c.name, body)
		}
	}
}
