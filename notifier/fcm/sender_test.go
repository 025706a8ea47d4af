package fcm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/notifier/pushtext"
	"github.com/followpush/followpush/tasks"
)

const testProjectID = "test-project"

// newTestFCMSender is an Sender that posts to s without authentication.
func newTestFCMSender(t *testing.T, s *fcmtest.Server) *Sender {
	t.Helper()
	snd, err := NewSender(t.Context(), Config{ProjectID: testProjectID, Endpoint: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return snd
}

// tokenMessages returns one follow message per token.
func tokenMessages(tokens ...string) []*messaging.Message {
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}
	msgs := make([]*messaging.Message, len(tokens))
	for i, tok := range tokens {
		msgs[i] = BuildMessage(f, tok, devices.PlatformAndroid, pushtext.DefaultContent(f))
	}
	return msgs
}

// byToken answers each request with the response named by its token
// (success for unknown tokens).
func byToken(m map[string]fcmtest.Response) fcmtest.Responder {
	return func(r fcmtest.Request) fcmtest.Response { return m[r.Token] }
}

func TestNewFCMSenderConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "not-json.json")
	noProject := filepath.Join(dir, "no-project.json")
	if err := os.WriteFile(notJSON, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noProject, []byte(`{"type":"service_account"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"endpoint without project id", Config{Endpoint: "http://127.0.0.1:1"}},
		{"missing credentials file", Config{ProjectID: "p", CredentialsFile: filepath.Join(dir, "absent.json")}},
		{"credentials file not JSON", Config{ProjectID: "p", CredentialsFile: notJSON}},
		{"credentials file without project_id", Config{CredentialsFile: noProject, Endpoint: "http://127.0.0.1:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			snd, err := NewSender(t.Context(), tt.cfg)
			if err == nil || snd != nil {
				t.Fatalf("NewSender = %v, %v; want an error", snd, err)
			}
		})
	}
}

func TestFCMSenderProjectID(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	creds := s.WriteServiceAccount(t, t.TempDir())
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"from config", Config{ProjectID: "configured", Endpoint: s.URL()}, "configured"},
		{"from credentials file", Config{CredentialsFile: creds, Endpoint: s.URL()}, fcmtest.ServiceAccountProjectID},
		{"config overrides file", Config{ProjectID: "configured", CredentialsFile: creds, Endpoint: s.URL() + "/"}, "configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			snd, err := NewSender(t.Context(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			token := "project-" + strings.ReplaceAll(tt.name, " ", "-")
			if err := snd.Send(t.Context(), tokenMessages(token))[0]; err != nil {
				t.Fatal(err)
			}
			for _, r := range s.Requests() {
				if r.Token == token && r.Project != tt.want {
					t.Errorf("request went to project %q, want %q", r.Project, tt.want)
				}
			}
		})
	}
}

func TestFCMSenderWithoutCredentialsSendsNoAuthorization(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	if err := newTestFCMSender(t, s).Send(t.Context(), tokenMessages("tok"))[0]; err != nil {
		t.Fatal(err)
	}
	if got := s.Requests()[0].Authorization; got != "" {
		t.Errorf("Authorization = %q, want none", got)
	}
	if n := len(s.TokenRequests()); n != 0 {
		t.Errorf("%d token requests, want 0", n)
	}
}

// TestFCMSenderOAuth shows that with a credentials file the SDK fetches an
// access token from the file's token_uri, even with a custom endpoint, and
// sends it.
func TestFCMSenderOAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		client *http.Client
	}{
		{"default client", nil},
		{"custom client", &http.Client{Timeout: 10 * time.Second, Transport: &countingTransport{base: http.DefaultTransport}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fcmtest.NewServer(t)
			s.SetRequireAuth(true)
			snd, err := NewSender(t.Context(), Config{
				CredentialsFile: s.WriteServiceAccount(t, t.TempDir()),
				Endpoint:        s.URL(),
				HTTPClient:      tt.client,
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, err := range snd.Send(t.Context(), tokenMessages("a", "b", "c")) {
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			if err := snd.Send(t.Context(), tokenMessages("d"))[0]; err != nil {
				t.Fatal(err)
			}

			trs := s.TokenRequests()
			if len(trs) != 1 {
				t.Fatalf("%d token requests, want 1 (the token is cached)", len(trs))
			}
			if trs[0].GrantType != fcmtest.GrantTypeJWTBearer {
				t.Errorf("grant_type = %q", trs[0].GrantType)
			}
			if got := fmt.Sprint(trs[0].Claims["scope"]); !strings.Contains(got, messagingScope) {
				t.Errorf("scope claim %q lacks %s", got, messagingScope)
			}
			if got, want := trs[0].Claims["aud"], s.URL()+"/token"; got != want {
				t.Errorf("aud claim %v, want %v", got, want)
			}
			for _, r := range s.Requests() {
				if r.Authorization != "Bearer test-token-1" {
					t.Errorf("send for %s had Authorization %q, want Bearer test-token-1", r.Token, r.Authorization)
				}
			}
			if tt.client == nil {
				return
			}
			if ct := tt.client.Transport.(*countingTransport); ct.n.Load() < 4 {
				t.Errorf("custom transport carried %d requests, want at least the 4 sends", ct.n.Load())
			}
		})
	}
}

type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestFCMSenderMixedResults(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	s.SetResponder(byToken(map[string]fcmtest.Response{
		"dead":    fcmtest.Unregistered(),
		"garbled": fcmtest.InvalidToken(),
		"busy":    fcmtest.QuotaExceeded(time.Minute),
		"foreign": fcmtest.SenderIDMismatch(),
	}))
	tokens := []string{"ok-1", "dead", "ok-2", "garbled", "busy", "foreign", "ok-3"}
	errs := newTestFCMSender(t, s).Send(t.Context(), tokenMessages(tokens...))
	got := make([]Outcome, len(errs))
	for i, err := range errs {
		got[i] = Classify(err)
	}
	want := []Outcome{OutcomeSent, OutcomeUnregistered, OutcomeSent, OutcomeInvalidToken, OutcomeQuota, OutcomeSenderIDMismatch, OutcomeSent}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes in token order (-want +got):\n%s", diff)
	}
	if n := len(s.Requests()); n != len(tokens) {
		t.Errorf("server got %d requests, want %d", n, len(tokens))
	}
}

// TestFCMSenderChunks sends more than SendEach's 500 and checks every error
// lands in its message's slot.
func TestFCMSenderChunks(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	s.SetResponder(func(r fcmtest.Request) fcmtest.Response {
		if n, _ := strconv.Atoi(r.Token); n%97 == 0 {
			return fcmtest.Unregistered()
		}
		return fcmtest.Response{}
	})
	const n = sendEachMax + 3
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = strconv.Itoa(i)
	}
	errs := newTestFCMSender(t, s).Send(t.Context(), tokenMessages(tokens...))
	if len(errs) != n {
		t.Fatalf("%d errors for %d messages", len(errs), n)
	}
	for i, err := range errs {
		want := OutcomeSent
		if i%97 == 0 {
			want = OutcomeUnregistered
		}
		if got := Classify(err); got != want {
			t.Errorf("message %d: %s, want %s", i, got, want)
		}
	}
	if got := len(s.Requests()); got != n {
		t.Errorf("server got %d requests, want %d", got, n)
	}
}

func TestFCMSenderRefusedBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tokens []string
	}{
		{"single message without token", []string{""}},
		{"one bad message in a batch", []string{"a", "", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fcmtest.NewServer(t)
			errs := newTestFCMSender(t, s).Send(t.Context(), tokenMessages(tt.tokens...))
			for i, err := range errs {
				if err == nil || err.Error() != errs[0].Error() {
					t.Errorf("message %d: error %v, want the batch's error %v", i, err, errs[0])
				}
				if got := Classify(err); got != OutcomeInvalidMessage {
					t.Errorf("message %d: %s, want %s", i, got, OutcomeInvalidMessage)
				}
			}
			if n := len(s.Requests()); n != 0 {
				t.Errorf("server got %d requests, want none", n)
			}
		})
	}
}

func TestFCMSenderEmpty(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	if errs := newTestFCMSender(t, s).Send(t.Context(), nil); len(errs) != 0 {
		t.Errorf("Send(nil) = %v, want no errors", errs)
	}
}

// TestFCMSenderSDKRetries503 pins the SDK's own retry: a 503 is retried at
// once (the first backoff is 0 s), so the caller sees the later success.
func TestFCMSenderSDKRetries503(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	var calls atomic.Int64
	s.SetResponder(func(fcmtest.Request) fcmtest.Response {
		if calls.Add(1) == 1 {
			return fcmtest.Unavailable(0)
		}
		return fcmtest.Response{}
	})
	if err := newTestFCMSender(t, s).Send(t.Context(), tokenMessages("t"))[0]; err != nil {
		t.Fatalf("Send = %v, want success after the SDK's retry", err)
	}
	if n := len(s.Requests()); n != 2 {
		t.Errorf("server got %d requests, want 2", n)
	}
}

// TestFCMSenderDeadlineDuringSDKBackoff: the SDK retries a 503 itself,
// waiting out its Retry-After; a deadline that ends that wait must not lose
// FCM's answer. The send is reported as unavailable, with the time left of
// the Retry-After, so the task's own retry comes no earlier than FCM asked
// (a bare deadline error would be a transport error, retried within about
// a second).
func TestFCMSenderDeadlineDuringSDKBackoff(t *testing.T) {
	t.Parallel()
	const (
		retryAfter = 30 * time.Second
		// inRetryAfter ends while the SDK waits out a 30 s Retry-After,
		// however slowly FCM's first answer comes.
		inRetryAfter = 5 * time.Second
		// inBackoff ends while the SDK waits 1 s before its third try:
		// that wait starts only after the second answer, whenever it came.
		inBackoff = 900 * time.Millisecond
	)
	// send sends to tokens with a deadline d; it returns the errors and
	// the most that can have passed since FCM's first answer.
	send := func(t *testing.T, s *fcmtest.Server, d time.Duration, tokens ...string) ([]error, time.Duration) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		errs := newTestFCMSender(t, s).Send(ctx, tokenMessages(tokens...))
		return errs, time.Since(start)
	}
	// restOfRetryAfter checks that RetryAfter is what is left of FCM's
	// Retry-After: at most all of it, at least all of it but took.
	restOfRetryAfter := func(t *testing.T, err error, took time.Duration) {
		t.Helper()
		if got := RetryAfter(err, time.Now()); got > retryAfter || got < retryAfter-took {
			t.Errorf("RetryAfter = %s, want the rest of FCM's %s (%s passed)", got, retryAfter, took)
		}
	}

	t.Run("retry-after kept", func(t *testing.T) {
		t.Parallel()
		s := fcmtest.NewServer(t)
		s.SetResponder(fcmtest.Always(fcmtest.Unavailable(retryAfter)))
		errs, took := send(t, s, inRetryAfter, "t")
		err := errs[0]
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want one wrapping context.DeadlineExceeded", err)
		}
		if got := Classify(err); got != OutcomeUnavailable {
			t.Errorf("Classify = %s, want %s", got, OutcomeUnavailable)
		}
		restOfRetryAfter(t, err, took)
		if n := len(s.Requests()); n != 1 {
			t.Errorf("server got %d requests, want 1 (the SDK was still waiting out Retry-After)", n)
		}
	})

	t.Run("retry-after kept, with OAuth", func(t *testing.T) {
		t.Parallel()
		// With a credentials file the recording transport sits under the
		// OAuth one; the 503 is still seen.
		s := fcmtest.NewServer(t)
		s.SetRequireAuth(true)
		s.SetResponder(fcmtest.Always(fcmtest.Unavailable(retryAfter)))
		snd, err := NewSender(t.Context(), Config{Endpoint: s.URL(), CredentialsFile: s.WriteServiceAccount(t, t.TempDir())})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), inRetryAfter)
		defer cancel()
		err = snd.Send(ctx, tokenMessages("t"))[0]
		took := time.Since(start)
		if got := Classify(err); got != OutcomeUnavailable {
			t.Errorf("Classify = %s, want %s (err %v)", got, OutcomeUnavailable, err)
		}
		restOfRetryAfter(t, err, took)
		if reqs := s.Requests(); len(reqs) != 1 || reqs[0].Authorization == "" {
			t.Errorf("server got %d requests (%+v), want 1 with a bearer token", len(reqs), reqs)
		}
	})

	t.Run("no retry-after", func(t *testing.T) {
		t.Parallel()
		// The SDK retries at once, then waits 1 s: the deadline ends that.
		s := fcmtest.NewServer(t)
		s.SetResponder(fcmtest.Always(fcmtest.Unavailable(0)))
		errs, _ := send(t, s, inBackoff, "t")
		err := errs[0]
		if got := Classify(err); got != OutcomeUnavailable {
			t.Errorf("Classify = %s, want %s (err %v)", got, OutcomeUnavailable, err)
		}
		if got := RetryAfter(err, time.Now()); got != 0 {
			t.Errorf("RetryAfter = %s, want 0", got)
		}
		if n := len(s.Requests()); n != 2 {
			t.Errorf("server got %d requests, want 2 (first try and the immediate retry)", n)
		}
	})

	t.Run("send each", func(t *testing.T) {
		t.Parallel()
		s := fcmtest.NewServer(t)
		s.SetResponder(func(r fcmtest.Request) fcmtest.Response {
			if r.Token == "busy" {
				return fcmtest.Unavailable(retryAfter)
			}
			return fcmtest.Response{}
		})
		errs, took := send(t, s, inRetryAfter, "busy", "fine")
		if got := Classify(errs[0]); got != OutcomeUnavailable {
			t.Errorf("busy: Classify = %s, want %s (err %v)", got, OutcomeUnavailable, errs[0])
		}
		restOfRetryAfter(t, errs[0], took)
		if errs[1] != nil {
			t.Errorf("fine: err = %v, want nil", errs[1])
		}
	})

	t.Run("no answer", func(t *testing.T) {
		t.Parallel()
		// A deadline with no 503 before it stays a transport error.
		s := fcmtest.NewServer(t)
		s.SetLatency(5 * time.Second)
		errs, _ := send(t, s, inBackoff, "t")
		err := errs[0]
		if got := Classify(err); got != OutcomeTransport {
			t.Errorf("Classify = %s, want %s (err %v)", got, OutcomeTransport, err)
		}
		if got := RetryAfter(err, time.Now()); got != 0 {
			t.Errorf("RetryAfter = %s, want 0", got)
		}
	})
}

func ExampleNewSender() {
	s := fcmtest.New() // a local FCM; in production, leave Endpoint empty
	s.Start()
	defer s.Close()

	ctx := context.Background()
	snd, err := NewSender(ctx, Config{ProjectID: "my-project", Endpoint: s.URL()})
	if err != nil {
		fmt.Println(err)
		return
	}
	f := tasks.Follow{AppID: "1400000000", From: "alice", To: "bob", EventTime: 1700000000123}
	errs := snd.Send(ctx, []*messaging.Message{BuildMessage(f, "device-token", devices.PlatformIOS, pushtext.DefaultContent(f))})
	fmt.Println(Classify(errs[0]), s.Requests()[0].Project)
	// Output: sent my-project
}
