package fcmtest_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
	"github.com/followpush/followpush/internal/testrig/httpcall"
)

func do(t *testing.T, method, url, auth, body string) httpcall.Response {
	t.Helper()
	header := map[string]string{"Content-Type": "application/json"}
	if auth != "" {
		header["Authorization"] = auth
	}
	return httpcall.Do(t, httpcall.Request{Method: method, URL: url, Body: body, Header: header})
}

func send(t *testing.T, s *fcmtest.Server, project, body string) httpcall.Response {
	t.Helper()
	return do(t, http.MethodPost, s.URL()+"/v1/projects/"+project+"/messages:send", "", body)
}

// apiError is the part of a Google error body the tests look at.
type apiError struct {
	Code       int
	Status     string
	Message    string
	ErrorCodes []string // FcmError errorCode values
	Types      []string // @type of every detail
}

func parseError(t *testing.T, body []byte) apiError {
	t.Helper()
	var b struct {
		Error struct {
			Code    int              `json:"code"`
			Message string           `json:"message"`
			Status  string           `json:"status"`
			Details []fcmtest.Detail `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	e := apiError{Code: b.Error.Code, Status: b.Error.Status, Message: b.Error.Message}
	for _, d := range b.Error.Details {
		e.Types = append(e.Types, d.Type)
		if d.Type == fcmtest.TypeFCMError {
			e.ErrorCodes = append(e.ErrorCodes, d.ErrorCode)
		}
	}
	return e
}

func TestSendRecordsRequestAndAnswersSuccess(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	body := `{"validate_only":true,"message":{"token":"tok-1","data":{"k":"v"}}}`
	got := do(t, http.MethodPost, s.URL()+"/v1/projects/p1/messages:send", "Bearer abc", body)
	if got.Status != http.StatusOK {
		t.Fatalf("status = %d, body %s", got.Status, got.Body)
	}
	if diff := cmp.Diff(`{"name":"projects/p1/messages/1"}`, string(got.Body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	got = send(t, s, "p1", `{"message":{"token":"tok-2"}}`)
	if diff := cmp.Diff(`{"name":"projects/p1/messages/2"}`, string(got.Body)); diff != "" {
		t.Errorf("second body (-want +got):\n%s", diff)
	}

	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	want := fcmtest.Request{
		Project:       "p1",
		Token:         "tok-1",
		ValidateOnly:  true,
		Message:       map[string]any{"token": "tok-1", "data": map[string]any{"k": "v"}},
		MessageJSON:   json.RawMessage(`{"token":"tok-1","data":{"k":"v"}}`),
		Body:          []byte(body),
		Authorization: "Bearer abc",
	}
	opts := cmpopts.IgnoreFields(fcmtest.Request{}, "Header", "Received", "Context")
	if diff := cmp.Diff(want, reqs[0], opts); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if got := reqs[0].Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("recorded Content-Type = %q", got)
	}
	if reqs[0].Received.IsZero() {
		t.Error("Received not set")
	}
}

func TestSendRejectsMalformedRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantGRPC   string
		wantStored int
	}{
		{"wrong method", http.MethodGet, "/v1/projects/p/messages:send", "", 405, "INVALID_ARGUMENT", 0},
		{"unknown path", http.MethodPost, "/v1/projects/p/messages", `{"message":{"token":"t"}}`, 404, "NOT_FOUND", 0},
		{"empty project", http.MethodPost, "/v1/projects//messages:send", `{"message":{"token":"t"}}`, 404, "NOT_FOUND", 0},
		{"not JSON", http.MethodPost, "/v1/projects/p/messages:send", `{"message":`, 400, "INVALID_ARGUMENT", 0},
		{"no message", http.MethodPost, "/v1/projects/p/messages:send", `{"validate_only":false}`, 400, "INVALID_ARGUMENT", 0},
		{"message not an object", http.MethodPost, "/v1/projects/p/messages:send", `{"message":"x"}`, 400, "INVALID_ARGUMENT", 0},
		{"no recipient", http.MethodPost, "/v1/projects/p/messages:send", `{"message":{"data":{"a":"b"}}}`, 400, "INVALID_ARGUMENT", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fcmtest.NewServer(t)
			got := do(t, tt.method, s.URL()+tt.path, "", tt.body)
			if got.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", got.Status, tt.wantStatus, got.Body)
			}
			e := parseError(t, got.Body)
			if e.Code != tt.wantStatus || e.Status != tt.wantGRPC {
				t.Errorf("error = %+v, want code %d status %s", e, tt.wantStatus, tt.wantGRPC)
			}
			if n := len(s.Requests()); n != tt.wantStored {
				t.Errorf("recorded %d requests, want %d", n, tt.wantStored)
			}
		})
	}
}

func TestCannedResponses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		resp           fcmtest.Response
		wantStatus     int
		wantGRPC       string
		wantErrorCodes []string
		wantTypes      []string
		wantRetryAfter string
	}{
		{"Unregistered", fcmtest.Unregistered(), 404, "NOT_FOUND", []string{"UNREGISTERED"}, []string{fcmtest.TypeFCMError}, ""},
		{"InvalidToken", fcmtest.InvalidToken(), 400, "INVALID_ARGUMENT", []string{"INVALID_ARGUMENT"}, []string{fcmtest.TypeFCMError, fcmtest.TypeBadRequest}, ""},
		{"InvalidTokenMessageOnly", fcmtest.InvalidTokenMessageOnly(), 400, "INVALID_ARGUMENT", []string{"INVALID_ARGUMENT"}, []string{fcmtest.TypeFCMError}, ""},
		{"InvalidTokenViolationOnly", fcmtest.InvalidTokenViolationOnly(), 400, "INVALID_ARGUMENT", []string{"INVALID_ARGUMENT"}, []string{fcmtest.TypeFCMError, fcmtest.TypeBadRequest}, ""},
		{"InvalidMessage", fcmtest.InvalidMessage(), 400, "INVALID_ARGUMENT", nil, []string{fcmtest.TypeBadRequest}, ""},
		{"SenderIDMismatch", fcmtest.SenderIDMismatch(), 403, "PERMISSION_DENIED", []string{"SENDER_ID_MISMATCH"}, []string{fcmtest.TypeFCMError}, ""},
		{"QuotaExceeded", fcmtest.QuotaExceeded(1500 * time.Millisecond), 429, "RESOURCE_EXHAUSTED", []string{"QUOTA_EXCEEDED"}, []string{fcmtest.TypeFCMError}, "2"},
		{"ProjectQuotaExceeded", fcmtest.ProjectQuotaExceeded(time.Minute), 429, "RESOURCE_EXHAUSTED", nil, []string{fcmtest.TypeErrorInfo, fcmtest.TypeHelp}, "60"},
		{"Unavailable", fcmtest.Unavailable(-time.Second), 503, "UNAVAILABLE", []string{"UNAVAILABLE"}, []string{fcmtest.TypeFCMError}, "0"},
		{"Internal", fcmtest.Internal(), 500, "INTERNAL", []string{"INTERNAL"}, []string{fcmtest.TypeFCMError}, ""},
		{"ThirdPartyAuth", fcmtest.ThirdPartyAuth(), 401, "UNAUTHENTICATED", []string{"THIRD_PARTY_AUTH_ERROR"}, []string{fcmtest.TypeFCMError}, ""},
		{"Unspecified", fcmtest.Unspecified(), 500, "UNKNOWN", []string{"UNSPECIFIED_ERROR"}, []string{fcmtest.TypeFCMError}, ""},
		{"Unauthenticated", fcmtest.Unauthenticated(), 401, "UNAUTHENTICATED", nil, nil, ""},
	}
	s := fcmtest.NewServer(t)
	byToken := make(map[string]fcmtest.Response)
	for _, tt := range tests {
		byToken[tt.name] = tt.resp
	}
	s.SetResponder(func(r fcmtest.Request) fcmtest.Response { return byToken[r.Token] })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := send(t, s, "p", `{"message":{"token":"`+tt.name+`"}}`)
			if got.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d", got.Status, tt.wantStatus)
			}
			if diff := cmp.Diff(string(tt.resp.Body), string(got.Body)); diff != "" {
				t.Errorf("body differs from the canned one (-want +got):\n%s", diff)
			}
			if ct := got.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if ra := got.Header.Get("Retry-After"); ra != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", ra, tt.wantRetryAfter)
			}
			e := parseError(t, got.Body)
			if e.Code != tt.wantStatus || e.Status != tt.wantGRPC || e.Message == "" {
				t.Errorf("error = %+v, want code %d status %s and a message", e, tt.wantStatus, tt.wantGRPC)
			}
			if diff := cmp.Diff(tt.wantErrorCodes, e.ErrorCodes); diff != "" {
				t.Errorf("FcmError codes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTypes, e.Types); diff != "" {
				t.Errorf("detail types (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInvalidTokenNamesTheTokenField(t *testing.T) {
	t.Parallel()
	var b struct {
		Error struct {
			Message string `json:"message"`
			Details []fcmtest.Detail
		} `json:"error"`
	}
	if err := json.Unmarshal(fcmtest.InvalidToken().Body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Error.Message != fcmtest.MessageInvalidToken {
		t.Errorf("message = %q", b.Error.Message)
	}
	want := []fcmtest.Detail{
		{Type: fcmtest.TypeFCMError, ErrorCode: "INVALID_ARGUMENT"},
		{Type: fcmtest.TypeBadRequest, FieldViolations: []fcmtest.FieldViolation{{Field: "message.token", Description: "Invalid registration token"}}},
	}
	if diff := cmp.Diff(want, b.Error.Details); diff != "" {
		t.Errorf("details (-want +got):\n%s", diff)
	}
}

func TestSetResponderNilRestoresDefault(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	s.SetResponder(fcmtest.Always(fcmtest.Internal()))
	if got := send(t, s, "p", `{"message":{"token":"t"}}`); got.Status != 500 {
		t.Fatalf("with responder: status %d, want 500", got.Status)
	}
	s.SetResponder(nil)
	if got := send(t, s, "p", `{"message":{"token":"t"}}`); got.Status != 200 {
		t.Fatalf("after SetResponder(nil): status %d, want 200", got.Status)
	}
}

func TestWaitForRequests(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitForRequests(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with no requests: err = %v, want DeadlineExceeded", err)
	}

	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			send(t, s, "p", `{"message":{"token":"t`+string(rune('0'+i))+`"}}`)
		})
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitForRequests(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Requests()); n < 3 {
		t.Errorf("Requests() has %d after waiting for 3", n)
	}
	wg.Wait()
}

func TestReset(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	send(t, s, "p", `{"message":{"token":"t"}}`)
	s.Reset()
	if n := len(s.Requests()); n != 0 {
		t.Fatalf("after Reset: %d requests", n)
	}
	send(t, s, "p", `{"message":{"token":"u"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitForRequests(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests()[0].Token; got != "u" {
		t.Errorf("first request after Reset has token %q, want u", got)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	const latency = 50 * time.Millisecond
	s.SetLatency(latency)
	start := time.Now()
	if got := send(t, s, "p", `{"message":{"token":"t"}}`); got.Status != 200 {
		t.Fatalf("status %d", got.Status)
	}
	if elapsed := time.Since(start); elapsed < latency {
		t.Errorf("answered after %v, want at least %v", elapsed, latency)
	}
}

func TestNewServesWithoutListening(t *testing.T) {
	t.Parallel()
	s := fcmtest.New()
	if s.URL() != "" {
		t.Errorf("URL() before Start = %q, want empty", s.URL())
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/projects/p/messages:send", strings.NewReader(`{"message":{"topic":"news"}}`)))
	if rec.Code != 200 {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	if n := len(s.Requests()); n != 1 {
		t.Errorf("recorded %d requests, want 1", n)
	}
	url := s.Start()
	defer s.Close()
	if url == "" || url != s.URL() {
		t.Errorf("Start() = %q, URL() = %q", url, s.URL())
	}
}

// signAssertion makes the JWT-bearer assertion a service account sends.
func signAssertion(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestTokenEndpointAndRequireAuth(t *testing.T) {
	t.Parallel()
	s := fcmtest.NewServer(t)
	path := s.WriteServiceAccount(t, t.TempDir())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sa map[string]string
	if err := json.Unmarshal(data, &sa); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"type": "service_account", "project_id": fcmtest.ServiceAccountProjectID, "token_uri": s.URL() + "/token",
	} {
		if sa[k] != want {
			t.Errorf("service account %s = %q, want %q", k, sa[k], want)
		}
	}
	block, _ := pem.Decode([]byte(sa["private_key"]))
	if block == nil {
		t.Fatal("private_key is not PEM")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := parsed.(*rsa.PrivateKey)
	claims := map[string]any{"iss": sa["client_email"], "scope": "s", "aud": sa["token_uri"]}
	forged, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tokenReq := func(grant, assertion string) httpcall.Response {
		form := url.Values{"grant_type": {grant}, "assertion": {assertion}}
		return httpcall.Do(t, httpcall.Request{Method: http.MethodPost, URL: s.URL() + "/token", Body: form.Encode(),
			Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	}

	tests := []struct {
		name      string
		grant     string
		assertion string
		want      string // expected JSON body
	}{
		{"valid", fcmtest.GrantTypeJWTBearer, signAssertion(t, key, sa["private_key_id"], claims),
			`{"access_token":"test-token-1","expires_in":3600,"token_type":"Bearer"}`},
		{"unknown key", fcmtest.GrantTypeJWTBearer, signAssertion(t, forged, "x", claims),
			`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`},
		{"wrong grant", "client_credentials", signAssertion(t, key, sa["private_key_id"], claims),
			`{"error":"unsupported_grant_type","error_description":"Invalid grant_type: client_credentials"}`},
		{"garbage assertion", fcmtest.GrantTypeJWTBearer, "abc",
			`{"error":"invalid_grant","error_description":"Invalid JWT: want 3 dot-separated parts, got 1"}`},
	}
	for _, tt := range tests { // sequential: the issued token numbers depend on order
		got := tokenReq(tt.grant, tt.assertion)
		if diff := cmp.Diff(tt.want, strings.TrimSpace(string(got.Body))); diff != "" {
			t.Errorf("%s: body (-want +got):\n%s", tt.name, diff)
		}
	}
	trs := s.TokenRequests()
	if len(trs) != len(tests) {
		t.Fatalf("recorded %d token requests, want %d", len(trs), len(tests))
	}
	if diff := cmp.Diff(claims, trs[0].Claims); diff != "" {
		t.Errorf("recorded claims (-want +got):\n%s", diff)
	}
	if trs[0].KeyID != sa["private_key_id"] || trs[0].AccessToken != "test-token-1" || trs[1].AccessToken != "" {
		t.Errorf("recorded token requests: %+v", trs)
	}

	s.SetRequireAuth(true)
	auths := []struct {
		auth       string
		wantStatus int
	}{
		{"Bearer test-token-1", 200},
		{"", 401},
		{"Bearer test-token-2", 401}, // never issued
	}
	for _, a := range auths {
		got := do(t, http.MethodPost, s.URL()+"/v1/projects/p/messages:send", a.auth, `{"message":{"token":"t"}}`)
		if got.Status != a.wantStatus {
			t.Errorf("Authorization %q: status %d, want %d", a.auth, got.Status, a.wantStatus)
		}
		if a.wantStatus == 401 {
			if diff := cmp.Diff(string(fcmtest.Unauthenticated().Body), string(got.Body)); diff != "" {
				t.Errorf("401 body (-want +got):\n%s", diff)
			}
		}
	}
}
