package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/google/go-cmp/cmp"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
)

// sendErr sends one message whose token is resp's key to a server that
// answers with resp, through a real firebase-admin-go client, and returns
// the error the sender reports.
func sendErr(t *testing.T, resp fcmtest.Response) error {
	t.Helper()
	s := fcmtest.NewServer(t)
	s.SetResponder(fcmtest.Always(resp))
	return newTestFCMSender(t, s).Send(t.Context(), tokenMessages("device"))[0]
}

// TestClassifyFCMErrors is the FCM error table of docs/fcm-errors.md: each
// real error answer, through the real SDK, classified, with what the worker
// does.
func TestClassifyFCMErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		resp           fcmtest.Response
		want           Outcome
		wantRetryable  bool
		wantDropsToken bool
		wantRetryAfter time.Duration
	}{
		{"unregistered", fcmtest.Unregistered(), OutcomeUnregistered, false, true, 0},
		{"invalid token", fcmtest.InvalidToken(), OutcomeInvalidToken, false, true, 0},
		{"invalid token, message only", fcmtest.InvalidTokenMessageOnly(), OutcomeInvalidToken, false, true, 0},
		{"invalid token, violation only", fcmtest.InvalidTokenViolationOnly(), OutcomeInvalidToken, false, true, 0},
		{"invalid message", fcmtest.InvalidMessage(), OutcomeInvalidMessage, false, false, 0},
		{"sender id mismatch", fcmtest.SenderIDMismatch(), OutcomeSenderIDMismatch, false, true, 0},
		{"third party auth", fcmtest.ThirdPartyAuth(), OutcomeThirdPartyAuth, false, false, 0},
		{"quota exceeded", fcmtest.QuotaExceeded(30 * time.Second), OutcomeQuota, true, false, 30 * time.Second},
		{"project quota exceeded", fcmtest.ProjectQuotaExceeded(time.Minute), OutcomeQuota, true, false, time.Minute},
		// Retry-After over 2 minutes: the SDK does not retry the 503 itself.
		{"unavailable", fcmtest.Unavailable(3 * time.Minute), OutcomeUnavailable, true, false, 3 * time.Minute},
		{"unavailable without FCM code", withHeader(fcmtest.ErrorResponse(503, "UNAVAILABLE", "The service is currently unavailable."), "Retry-After", "600"),
			OutcomeUnavailable, true, false, 10 * time.Minute},
		{"internal", fcmtest.Internal(), OutcomeInternal, true, false, 0},
		{"internal without FCM code", fcmtest.ErrorResponse(500, "INTERNAL", "Internal error encountered."), OutcomeInternal, true, false, 0},
		{"unspecified", fcmtest.Unspecified(), OutcomeUnknown, true, false, 0},
		{"our credentials rejected", fcmtest.Unauthenticated(), OutcomeUnknown, true, false, 0},
		{"404 without FCM code", fcmtest.ErrorResponse(404, "NOT_FOUND", "Not found."), OutcomeUnknown, true, false, 0},
		{"unknown FCM code", fcmtest.ErrorResponse(400, "FAILED_PRECONDITION", "New.", fcmtest.FCMErrorDetail("SOMETHING_NEW")), OutcomeUnknown, true, false, 0},
		{"not JSON", fcmtest.Response{Status: 502, Header: http.Header{"Content-Type": {"text/html"}}, Body: []byte("<html>Bad Gateway</html>")}, OutcomeUnknown, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := time.Now()
			err := sendErr(t, tt.resp)
			if err == nil {
				t.Fatal("Send succeeded, want an error")
			}
			got := Classify(err)
			if got != tt.want {
				t.Errorf("Classify(%v) = %s, want %s", err, got, tt.want)
			}
			if got.Retryable() != tt.wantRetryable || got.DropsToken() != tt.wantDropsToken {
				t.Errorf("%s: Retryable %v DropsToken %v, want %v %v", got, got.Retryable(), got.DropsToken(), tt.wantRetryable, tt.wantDropsToken)
			}
			if ra := RetryAfter(err, now); ra != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", ra, tt.wantRetryAfter)
			}
			// Wrapping does not hide the SDK's error.
			for _, wrapped := range []error{fmt.Errorf("push to device: %w", err), errors.Join(errors.New("other"), err)} {
				if got := Classify(wrapped); got != tt.want {
					t.Errorf("Classify(%v) = %s, want %s", wrapped, got, tt.want)
				}
			}
			// Classify leaves the response body readable.
			body, rerr := io.ReadAll(errorutils.HTTPResponse(err).Body)
			if rerr != nil || string(body) != string(tt.resp.Body) {
				t.Errorf("after Classify, body reads %q, %v; want the answer's body", body, rerr)
			}
		})
	}
}

func withHeader(r fcmtest.Response, k, v string) fcmtest.Response {
	r.Header.Set(k, v)
	return r
}

// TestSDKMissesProjectQuota pins a surprise in firebase-admin-go: the
// project-wide 429 has no FcmError detail, so messaging.IsQuotaExceeded is
// false for it, and Classify must fall back to the status.
func TestSDKMissesProjectQuota(t *testing.T) {
	t.Parallel()
	err := sendErr(t, fcmtest.ProjectQuotaExceeded(time.Minute))
	if messaging.IsQuotaExceeded(err) {
		t.Error("messaging.IsQuotaExceeded is true: the SDK learned the project quota answer, the fallback may go")
	}
	if !errorutils.IsResourceExhausted(err) {
		t.Error("errorutils.IsResourceExhausted is false")
	}
	if got := Classify(err); got != OutcomeQuota {
		t.Errorf("Classify = %s, want %s", got, OutcomeQuota)
	}
}

func TestClassifyTransport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		slow     bool
	}{
		// With a deadline, the SDK's wait between its retries of the network
		// error ends with the bare context error.
		{"server closed, with deadline", 300 * time.Millisecond, false},
		// Without one, the SDK retries 4 times (waiting 0+1+2+4 s) and
		// returns its own transport error.
		{"server closed, SDK gives up", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.slow && testing.Short() {
				t.Skip("takes 7 s of the SDK's backoff")
			}
			s := fcmtest.NewServer(t)
			snd := newTestFCMSender(t, s)
			s.Close()
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			err := snd.Send(ctx, tokenMessages("t"))[0]
			if err == nil {
				t.Fatal("Send to a closed server succeeded")
			}
			if sdkErr := firebaseError(err) != nil; sdkErr != tt.slow {
				t.Errorf("err = %v (%T): SDK transport error %v, want %v", err, err, sdkErr, tt.slow)
			}
			if got := Classify(err); got != OutcomeTransport || !got.Retryable() {
				t.Errorf("Classify(%v) = %s, want %s (retryable)", err, got, OutcomeTransport)
			}
			if ra := RetryAfter(err, time.Now()); ra != 0 {
				t.Errorf("RetryAfter = %v, want 0", ra)
			}
		})
	}
}

func TestClassifyOtherErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want Outcome
	}{
		{"nil", nil, OutcomeSent},
		{"deadline", context.DeadlineExceeded, OutcomeTransport},
		{"wrapped cancel", fmt.Errorf("send: %w", context.Canceled), OutcomeTransport},
		{"net error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, OutcomeTransport},
		{"refused by the SDK", fmt.Errorf("%w: exactly one of token, topic or condition must be specified", errInvalidMessage), OutcomeInvalidMessage},
		{"anything else", errors.New("boom"), OutcomeUnknown},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %s, want %s", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestOutcomePolicy is the "what the worker does" column of
// docs/fcm-errors.md: which outcomes are retried and which drop the token.
func TestOutcomePolicy(t *testing.T) {
	t.Parallel()
	type policy struct{ Retryable, DropsToken bool }
	want := map[Outcome]policy{
		OutcomeSent:             {false, false},
		OutcomeUnregistered:     {false, true},
		OutcomeInvalidToken:     {false, true},
		OutcomeInvalidMessage:   {false, false},
		OutcomeSenderIDMismatch: {false, true},
		OutcomeThirdPartyAuth:   {false, false},
		OutcomeQuota:            {true, false},
		OutcomeUnavailable:      {true, false},
		OutcomeInternal:         {true, false},
		OutcomeUnknown:          {true, false},
		OutcomeTransport:        {true, false},
	}
	got := make(map[Outcome]policy)
	for o := range want {
		got[o] = policy{o.Retryable(), o.DropsToken()}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	tests := []struct {
		name   string
		header string // "" for no Retry-After header
		want   time.Duration
	}{
		{"seconds", "120", 2 * time.Minute},
		{"seconds with spaces", " 5 ", 5 * time.Second},
		{"zero", "0", 0},
		{"negative", "-3", 0},
		{"http date", now.Add(90 * time.Second).UTC().Format(http.TimeFormat), 90 * time.Second},
		{"past http date", now.Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
		{"huge", "99999999999", 24 * time.Hour},
		{"garbage", "soon", 0},
		{"absent", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := fcmtest.ErrorResponse(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", fcmtest.FCMErrorDetail("QUOTA_EXCEEDED"))
			if tt.header != "" {
				resp.Header.Set("Retry-After", tt.header)
			}
			if got := RetryAfter(sendErr(t, resp), now); got != tt.want {
				t.Errorf("RetryAfter = %v, want %v", got, tt.want)
			}
		})
	}
	for _, err := range []error{nil, errors.New("no response"), context.DeadlineExceeded} {
		if got := RetryAfter(err, now); got != 0 {
			t.Errorf("RetryAfter(%v) = %v, want 0", err, got)
		}
	}
}

func TestIsInvalidTokenError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		resp fcmtest.Response
		want bool
	}{
		{"violation and message", fcmtest.InvalidToken(), true},
		{"message only", fcmtest.InvalidTokenMessageOnly(), true},
		{"violation only", fcmtest.InvalidTokenViolationOnly(), true},
		{"violation on message.token among others", fcmtest.ErrorResponse(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
			fcmtest.Detail{Type: fcmtest.TypeBadRequest, FieldViolations: []fcmtest.FieldViolation{
				{Field: "message.android.ttl", Description: "x"}, {Field: "message.token", Description: "Invalid registration token"},
			}}), true},
		{"violation on a data field", fcmtest.InvalidMessage(), false},
		{"violation elsewhere wins over the text", fcmtest.ErrorResponse(400, "INVALID_ARGUMENT", fcmtest.MessageInvalidToken,
			fcmtest.FCMErrorDetail("INVALID_ARGUMENT"), fcmtest.BadRequestDetail("message.data[0].value", "x")), false},
		{"generic message, no violation", fcmtest.ErrorResponse(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
			fcmtest.FCMErrorDetail("INVALID_ARGUMENT")), false},
		{"not INVALID_ARGUMENT", fcmtest.ErrorResponse(404, "NOT_FOUND", fcmtest.MessageInvalidToken, fcmtest.FCMErrorDetail("UNREGISTERED")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := isInvalidTokenError(sendErr(t, tt.resp)); got != tt.want {
				t.Errorf("isInvalidTokenError = %v, want %v", got, tt.want)
			}
		})
	}
	if isInvalidTokenError(errors.New(fcmtest.MessageInvalidToken)) {
		t.Error("isInvalidTokenError is true for a plain error")
	}
}

// FuzzParseRetryAfter feeds arbitrary Retry-After values: never a panic,
// never a negative or over-long wait, delta-seconds read exactly.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, seed := range []string{"120", " 5 ", "0", "-3", "99999999999", "soon", "",
		now.Add(90 * time.Second).Format(http.TimeFormat), "Mon, 02 Jan 2006 15:04:05 GMT", "Monday, 02-Jan-06 15:04:05 GMT"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v, out of [0, %v]", v, d, maxRetryAfter)
		}
		if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && secs >= 0 && secs <= 3600 {
			if d != time.Duration(secs)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %v, want %ds", v, d, secs)
			}
		}
	})
}

// FuzzErrorBody feeds arbitrary error bodies to the decoding that Classify
// and isInvalidTokenError rely on: never a panic, and a field violation
// decides whether the token is blamed.
func FuzzErrorBody(f *testing.F) {
	for _, r := range []fcmtest.Response{
		fcmtest.Unregistered(), fcmtest.InvalidToken(), fcmtest.InvalidTokenMessageOnly(),
		fcmtest.InvalidTokenViolationOnly(), fcmtest.InvalidMessage(), fcmtest.SenderIDMismatch(),
		fcmtest.QuotaExceeded(time.Second), fcmtest.ProjectQuotaExceeded(time.Second), fcmtest.Unspecified(),
	} {
		f.Add(r.Body)
	}
	f.Add([]byte(`{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":null}]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var b errorBody
		if json.Unmarshal(raw, &b) != nil {
			return
		}
		_ = b.fcmErrorCode()
		fields := b.violatedFields()
		blamed := b.blamesToken()
		if len(fields) > 0 && blamed != slices.Contains(fields, "message.token") {
			t.Fatalf("fields %q: blamesToken = %v", fields, blamed)
		}
	})
}
