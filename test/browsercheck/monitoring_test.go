package browsercheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/tasks"
)

// update rewrites the committed screenshot (see the package doc).
var update = flag.Bool("update", false, "rewrite the committed screenshot "+committedScreenshot)

const (
	apiToken = "browsercheck-api-token-0123456789"
	appID    = "1400000000" // standalone's default TENCENT_SDKAPPID
	// committedScreenshot is the screenshot in the repository, rewritten
	// only with -update.
	committedScreenshot = "testdata/asynqmon.png"
	// screenshotDirEnv names a directory that receives the screenshot of
	// every run; unset, it goes to the test's temporary directory.
	screenshotDirEnv = "FOLLOWPUSH_SCREENSHOT_DIR"
	// fcmRetryAfter keeps failed tasks in the retry state far longer than
	// the test runs. Over 2 minutes, firebase-admin-go does not retry
	// itself, so each task fails at its first send.
	fcmRetryAfter = 30 * time.Minute
)

// asynqmon at /monitoring/ shows queue "follow" with its size on the
// dashboard, and on the queue's page the retry count, the task type and the
// payload in readable JSON.
func TestMonitoringShowsQueues(t *testing.T) {
	chromium := findChromium(t)

	fcm := fcmtest.NewServer(t)
	fcm.SetResponder(fcmtest.Always(fcmtest.Unavailable(fcmRetryAfter)))

	// ctx bounds everything after the build; it is cancelled after the
	// browser closed (cleanups run last-in first-out).
	ctx, _, base := startStandalone(t, map[string]string{
		"WORKER_CONCURRENCY": "1",
		"FCM_ENDPOINT":       fcm.URL(),
		"FCM_PROJECT_ID":     "browsercheck",
	})

	// alice follows bob and carol; each has a device, so each follow task
	// sends once, gets 503 and waits in the retry state.
	followees := []string{"bob", "carol"}
	var list []map[string]string
	for _, u := range followees {
		do(ctx, t, http.MethodPut, base+"/v1/users/"+u+"/devices/browsercheck-token-"+u,
			`{"platform":"android"}`, http.StatusNoContent)
		list = append(list, map[string]string{"To_Account": u})
	}
	body, err := json.Marshal(map[string]any{
		"CallbackCommand": "Follow.CallbackAfterFollowAdd",
		"From_Account":    "alice",
		"FollowList":      list,
		"EventTime":       time.Now().UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	do(ctx, t, http.MethodPost, base+"/webhook?SdkAppid="+appID+"&CallbackCommand=Follow.CallbackAfterFollowAdd",
		string(body), http.StatusOK)
	waitRetry(ctx, t, base, len(followees))

	bctx := newBrowser(ctx, t, chromium)

	// Dashboard: the queues table lists "follow" with its size.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/monitoring/"),
		chromedp.WaitVisible(chromedp.Search(`//table//a[text()='`+tasks.QueueFollow+`']`)),
	); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	// Cells of the queue's row: State, Size, Memory usage, ...
	size, err := chromedp.Run(bctx, chromedp.Text(chromedp.Search(`//tr[th//a[text()='`+tasks.QueueFollow+`']]/td[2]`)))
	if err != nil {
		t.Fatalf("dashboard: size of queue %s: %v", tasks.QueueFollow, err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(size)); err != nil || n != len(followees) {
		t.Errorf("dashboard: queue %s size %q, want %d", tasks.QueueFollow, size, len(followees))
	}
	if text := pageText(bctx, t); !strings.Contains(text, tasks.QueueFollow) {
		t.Errorf("dashboard text lacks %q:\n%s", tasks.QueueFollow, text)
	}

	// The queue's page, retry tab: one row per task, type and payload shown.
	retryURL := base + "/monitoring/queues/" + url.PathEscape(tasks.QueueFollow) + "?status=retry"
	if err := chromedp.Do(bctx,
		chromedp.Navigate(retryURL),
		chromedp.WaitVisible(chromedp.Search(`//td[text()='`+tasks.TypeFollow+`']`)),
		// All rows: the payload of the last followee is rendered.
		chromedp.WaitVisible(chromedp.Search(`//td//code[contains(., '"`+followees[len(followees)-1]+`"')]`)),
	); err != nil {
		t.Fatalf("queue page %s: %v", retryURL, err)
	}
	// The Retry chip: <div>Retry <span>N</span></div>.
	retried, err := chromedp.Run(bctx, chromedp.Text(chromedp.Search(`//div[span and normalize-space(text())='Retry']/span`)))
	if err != nil {
		t.Fatalf("queue page: retry count: %v", err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(retried)); err != nil || n != len(followees) {
		t.Errorf("queue page: retry count %q, want %d", retried, len(followees))
	}
	text := pageText(bctx, t)
	if got := strings.Count(text, tasks.TypeFollow); got != len(followees) {
		t.Errorf("queue page shows task type %q %d times, want %d:\n%s", tasks.TypeFollow, got, len(followees), text)
	}
	want := []*regexp.Regexp{regexp.MustCompile(`"from":\s*"alice"`)}
	for _, u := range followees {
		want = append(want, regexp.MustCompile(`"to":\s*"`+u+`"`))
	}
	for _, re := range want {
		if !re.MatchString(text) {
			t.Errorf("queue page: no payload matching %s:\n%s", re, text)
		}
	}

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	for _, p := range screenshotPaths(t, os.Getenv(screenshotDirEnv), *update) {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(p)
		t.Logf("screenshot of %s: %s (%d bytes)", retryURL, abs, len(png))
	}
}

// screenshotPaths returns where the screenshot goes: a file in dir (made
// if need be), or in the test's temporary directory (removed after the
// test) when dir is empty; and the committed file too when update is set.
func screenshotPaths(t *testing.T, dir string, update bool) []string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
		t.Logf("%s is unset: the screenshot is removed with the test's temporary directory", screenshotDirEnv)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "asynqmon.png")}
	if update {
		paths = append(paths, committedScreenshot)
	}
	return paths
}

// errNoChromium says that no Chromium binary was found.
var errNoChromium = errors.New("no Chromium: neither /usr/bin/chromium nor chromium or chromium-browser on PATH " +
	"(Debian/Ubuntu: apt-get install -y --no-install-recommends chromium fonts-liberation)")

// findChromium returns the Chromium binary to use. Without one the test is
// skipped, or fails when CI=true.
func findChromium(t *testing.T) string {
	t.Helper()
	p, err := lookChromium(os.Stat, exec.LookPath)
	if err != nil {
		if mustHaveChromium(os.Getenv) {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

// lookChromium finds Chromium: /usr/bin/chromium (Debian's package), else
// chromium or chromium-browser on PATH.
func lookChromium(stat func(string) (os.FileInfo, error), lookPath func(string) (string, error)) (string, error) {
	if _, err := stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := lookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errNoChromium
}

// mustHaveChromium reports whether a missing Chromium fails the test
// rather than skipping it: in CI (CI=true, which .ci/run and most CI
// services set).
func mustHaveChromium(getenv func(string) string) bool { return getenv("CI") == "true" }

// TestChromiumRequiredInCI: with CI=true a missing Chromium is a failure,
// not a skip; where it is installed it is found.
func TestChromiumRequiredInCI(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]bool{"true": true, "": false, "false": false, "1": false} {
		if got := mustHaveChromium(func(string) string { return env }); got != want {
			t.Errorf("mustHaveChromium with CI=%q = %v, want %v", env, got, want)
		}
	}
	none := func(string) (os.FileInfo, error) { return nil, os.ErrNotExist }
	notOnPath := func(string) (string, error) { return "", exec.ErrNotFound }
	if _, err := lookChromium(none, notOnPath); !errors.Is(err, errNoChromium) {
		t.Errorf("lookChromium without Chromium: %v, want errNoChromium", err)
	}
	onPath := func(name string) (string, error) {
		if name == "chromium-browser" {
			return "/opt/bin/chromium-browser", nil
		}
		return "", exec.ErrNotFound
	}
	if p, err := lookChromium(none, onPath); err != nil || p != "/opt/bin/chromium-browser" {
		t.Errorf("lookChromium with chromium-browser on PATH = %q, %v", p, err)
	}
}

// TestScreenshotPaths: a run writes the screenshot where FOLLOWPUSH_SCREENSHOT_DIR
// says or into a temporary directory, never over the committed file unless
// -update is given.
func TestScreenshotPaths(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shots")
	if got := screenshotPaths(t, dir, false); len(got) != 1 || got[0] != filepath.Join(dir, "asynqmon.png") {
		t.Errorf("screenshotPaths(%s, false) = %v", dir, got)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("screenshotPaths did not make %s: %v", dir, err)
	}
	got := screenshotPaths(t, "", false)
	if len(got) != 1 || got[0] == committedScreenshot || !strings.HasPrefix(got[0], os.TempDir()) {
		t.Errorf("screenshotPaths(\"\", false) = %v, want one file in a temporary directory", got)
	}
	if got := screenshotPaths(t, dir, true); len(got) != 2 || got[1] != committedScreenshot {
		t.Errorf("screenshotPaths(%s, true) = %v, want the committed file too", dir, got)
	}
}

// buildStandalone builds cmd/standalone into a temporary directory and
// returns the binary's path.
func buildStandalone(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "../../cmd/standalone").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ../../cmd/standalone: %v\n%s", err, out)
	}
	return filepath.Join(dir, "standalone")
}

// startStandalone builds standalone and runs it for the test on a free
// loopback port, with the API token, a 5 s shutdown timeout and extra
// settings. It returns a context that bounds the rest of the test (60 s,
// cancelled when the test ends), the program and its base URL.
func startStandalone(t *testing.T, extra map[string]string) (context.Context, *proc.Process, string) {
	t.Helper()
	bin := buildStandalone(t)
	env := map[string]string{"LISTEN_ADDR": "127.0.0.1:0", "API_TOKEN": apiToken, "SHUTDOWN_TIMEOUT": "5s"}
	maps.Copy(env, extra)
	p := proc.StartTest(t, "standalone", bin, env, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	addr, err := p.Addr(ctx, "http")
	if err != nil {
		t.Fatal(err)
	}
	return ctx, p, "http://" + addr
}

// newBrowser starts a headless Chromium with a fresh profile and returns a
// chromedp context for one tab. The browser is closed when the test ends.
func newBrowser(ctx context.Context, t *testing.T, execPath string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox, // root in containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1920, 1080),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		// Close the browser gracefully within 10 s; the cancels then kill
		// what is left and wait for the process, before TempDir removes the
		// profile.
		cctx, ccancel := context.WithTimeout(bctx, 10*time.Second)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Errorf("close Chromium: %v", err)
		}
		bcancel()
		acancel()
	})
	return bctx
}

// pageText returns the visible text of the page's body.
func pageText(bctx context.Context, t *testing.T) string {
	t.Helper()
	text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatalf("page text: %v", err)
	}
	return text
}

// do sends one request with the API token and fails the test unless the
// answer has status want.
func do(ctx context.Context, t *testing.T, method, u, body string, want int) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, u, resp.StatusCode, b, want)
	}
}

// waitRetry polls asynqmon's JSON API until queue "follow" holds n tasks in
// the retry state, so the browser sees a settled queue.
func waitRetry(ctx context.Context, t *testing.T, base string, n int) {
	t.Helper()
	u := base + "/monitoring/api/queues/" + url.PathEscape(tasks.QueueFollow)
	var last string
	for {
		if got, err := retryCount(ctx, u); err != nil {
			last = err.Error()
		} else if got == n {
			return
		} else {
			last = fmt.Sprintf("retry=%d", got)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("queue %s: waiting for %d tasks in retry: %v (last: %s)", tasks.QueueFollow, n, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func retryCount(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	var v struct {
		Current struct {
			Retry int `json:"retry"`
		} `json:"current"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	return v.Current.Retry, nil
}
