package browsercheck

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/followpush/followpush/internal/testrig/proc"
	"github.com/followpush/followpush/tasks"
)

// The attack of issue 11, replayed in a real Chromium: a page of another
// site (http://localhost:<port>, while asynqmon is on 127.0.0.1) submits a
// form that would pause queue "follow". The browser sends it, with its own
// Origin and Sec-Fetch-Site, and /monitoring refuses it: the answer is a
// 403 and the queue keeps running. The asynqmon page itself (same origin)
// still pauses and resumes the queue.
func TestMonitoringRefusesCrossSiteFormInChromium(t *testing.T) {
	chromium := findChromium(t)
	ctx, p, base := startStandalone(t, nil)
	// A follow of a user without devices: queue "follow" exists, and is
	// empty again at once.
	do(ctx, t, http.MethodPost, base+"/webhook?SdkAppid="+appID+"&CallbackCommand=Follow.CallbackAfterFollowAdd",
		fmt.Sprintf(`{"From_Account":"alice","FollowList":[{"To_Account":"nobody"}],"EventTime":%d}`, time.Now().UnixMilli()), http.StatusOK)
	paused := func() bool {
		t.Helper()
		for {
			var v struct {
				Queues []struct {
					Queue  string `json:"queue"`
					Paused bool   `json:"paused"`
				} `json:"queues"`
			}
			resp, err := http.Get(base + "/monitoring/api/queues")
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range v.Queues {
				if q.Queue == tasks.QueueFollow {
					return q.Paused
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("queue %s never appeared in asynqmon", tasks.QueueFollow)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if paused() {
		t.Fatal("queue paused before the test")
	}

	// The other site: localhost on another port is another site than
	// 127.0.0.1 for the browser.
	pause := base + "/monitoring/api/queues/" + tasks.QueueFollow + ":pause"
	evil := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="POST" action="%s"></form><script>document.getElementById("f").submit()</script>`, pause)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	evil.Listener = ln
	evil.Start()
	t.Cleanup(evil.Close)
	_, evilPort, _ := net.SplitHostPort(ln.Addr().String())

	bctx := newBrowser(ctx, t, chromium)
	if err := chromedp.Do(bctx, chromedp.Navigate("http://localhost:"+evilPort+"/")); err != nil {
		t.Fatal(err)
	}
	// The form submits itself: the tab lands on /monitoring's refusal, or
	// (were it accepted, a 204 that does not navigate) the queue pauses.
	for {
		if paused() {
			t.Fatal("the cross-site form paused queue follow")
		}
		href, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href`))
		if err == nil && href == pause {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the cross-site form was not submitted: the tab is at %q (%v)", href, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := chromedp.Do(bctx, chromedp.WaitReady("body")); err != nil {
		t.Fatal(err)
	}
	if text := pageText(bctx, t); !strings.Contains(text, "cross-site request refused") {
		t.Errorf("the cross-site form's answer shows %q, want the refusal", text)
	}
	if paused() {
		t.Error("the cross-site form paused queue follow")
	}
	if lines := p.Lines(proc.Msg("cross-site request refused", "path", "/monitoring/api/queues/"+tasks.QueueFollow+":pause")); len(lines) != 1 {
		t.Errorf("%d refusals logged, want 1", len(lines))
	}

	// asynqmon's own page may write: the same requests its buttons send.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/monitoring/")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		action string
		paused bool
	}{{"pause", true}, {"resume", false}} {
		status, err := chromedp.Run(bctx, chromedp.Evaluate[int](
			`fetch("/monitoring/api/queues/`+tasks.QueueFollow+`:`+c.action+`", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s from the asynqmon page: %v", c.action, err)
		}
		if status != http.StatusNoContent || paused() != c.paused {
			t.Errorf("%s from the asynqmon page: status %d, paused %v; want 204, paused %v", c.action, status, paused(), c.paused)
		}
	}
}
