package e2e_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/followpush/followpush/internal/proc"
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

// standalone with no settings at all (and again with the user's own
// API_TOKEN): embedded Redis, pushes to the log, and the walkthrough it
// prints works when pasted into a shell.
func TestStandaloneWalkthrough(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	for name, env := range map[string]map[string]string{
		"dev API token":   {},
		"user API token":  {"API_TOKEN": "my-own-api-token-0123456789"},
		"signed webhooks": {"TENCENT_CALLBACK_TOKEN": "walkthrough-callback-token"},
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
	p, err := proc.Start("standalone", filepath.Join(binDir, "standalone"), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("standalone: %v", err)
		}
		if t.Failed() {
			t.Logf("standalone output:\n%s", p.Output())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Addr(ctx, "http"); err != nil {
		t.Fatal(err)
	}
	// The walkthrough is printed right after the listener opens.
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; {
		out = p.Output()
		if strings.Contains(out, "3. Watch this log") || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	// A step is a curl command, maybe after a line computing the signature.
	cmds := regexp.MustCompile(`(?m)^  ((?:RT=.*\n  )?curl .*(?:\n    .*)*)`).FindAllStringSubmatch(out, -1)
	if len(cmds) != 2 {
		t.Fatalf("want 2 curl commands in the walkthrough, found %d:\n%s", len(cmds), out)
	}
	if signed := strings.HasPrefix(cmds[1][1], "RT="); signed != (extra["TENCENT_CALLBACK_TOKEN"] != "") {
		t.Fatalf("webhook step computes a signature: %v, want %v:\n%s", signed, !signed, cmds[1][1])
	}
	for _, c := range cmds {
		sh := exec.Command("bash", "-c", strings.ReplaceAll(c[1], "\\\n", " ")+" -o /dev/null -w '%{http_code}' --fail")
		sh.Env = append(os.Environ(), "API_TOKEN="+extra["API_TOKEN"], "TENCENT_CALLBACK_TOKEN="+extra["TENCENT_CALLBACK_TOKEN"])
		b, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("walkthrough command failed: %v\n%s\n%s", err, c[1], b)
		}
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
