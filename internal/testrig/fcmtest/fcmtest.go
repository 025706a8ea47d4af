// Package fcmtest is a local server that speaks the wire format of Firebase
// Cloud Messaging's HTTP v1 API, for tests and as a load-test sink.
//
// It serves
//
//	POST /v1/projects/{project}/messages:send
//	POST /token
//
// The first records every message it receives (see [Request]) and answers as
// a programmable responder says, by default with success. The package has
// constructors for FCM's real error answers ([Unregistered], [InvalidToken],
// [QuotaExceeded], ...), so a real firebase-admin-go client pointed at the
// server sees exactly what it would see from Google. The second is an OAuth2
// token endpoint for the JWT-bearer grant that service accounts use; together
// with [Server.WriteServiceAccount] it shows that a client configured with
// credentials really fetches and sends an access token.
//
// In a test, [NewServer] starts one on a loopback port and closes it when the
// test ends. Outside tests, [New] returns the bare [http.Handler] to serve
// however the program likes, or [Server.Start] listens on a loopback port.
//
// Point firebase-admin-go at it with option.WithEndpoint(s.URL()+"/v1").
package fcmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxBodyBytes is the largest request body the server reads; a larger one is
// answered 413. FCM's own payload limit is 4096 bytes of message content; the
// request around it is bigger, so this is generous.
const maxBodyBytes = 1 << 20

// Request is one message-send request as the server received it.
type Request struct {
	// Project is the {project} of the request path.
	Project string
	// Token is message.token ("" for topic or condition messages).
	Token string
	// ValidateOnly is the request's validate_only flag (a dry run).
	ValidateOnly bool
	// Message is the "message" object, decoded.
	Message map[string]any
	// MessageJSON is the "message" object exactly as it was sent.
	MessageJSON json.RawMessage
	// Body is the whole request body exactly as it was sent.
	Body []byte
	// Authorization is the Authorization header ("" when absent).
	Authorization string
	// Header holds all request headers.
	Header http.Header
	// Received is when the server finished reading the request.
	Received time.Time
	// Context is the request's context: it ends when the client gives up
	// on the request (a responder that blocks should watch it).
	Context context.Context `json:"-"`
}

// Response is what the server answers to one send request. A zero Response
// (Status 0) means the default success answer.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header is added to the answer (for example Retry-After).
	Header http.Header
	// Body is written as is, with Content-Type application/json unless
	// Header sets another.
	Body []byte
}

// Responder decides the answer to a send request. It is called once per
// request, concurrently when requests arrive concurrently.
type Responder func(Request) Response

// Server is a fake FCM HTTP v1 endpoint plus an OAuth2 token endpoint. Its
// methods are safe for concurrent use. The zero value is not usable: create
// one with [New] or [NewServer].
type Server struct {
	mu            sync.Mutex
	requests      []Request
	tokenRequests []TokenRequest
	changed       chan struct{} // closed and replaced whenever requests changes
	responder     Responder
	latency       time.Duration
	requireAuth   bool
	sent          int             // messages answered with the default success
	issued        map[string]bool // access tokens handed out by /token
	keys          []publicKey     // service-account keys /token accepts
	hs            *httptest.Server
}

// New returns a Server that is not listening yet: serve it as an
// [http.Handler], or call [Server.Start].
func New() *Server {
	return &Server{
		changed: make(chan struct{}),
		issued:  make(map[string]bool),
	}
}

// NewServer starts a Server on a loopback port and closes it when t ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := New()
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Start makes s listen on a free loopback port and returns its base URL
// (as [Server.URL] does afterwards). It panics if s is already started.
func (s *Server) Start() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs != nil {
		panic("fcmtest: server already started")
	}
	s.hs = httptest.NewServer(s)
	return s.hs.URL
}

// URL is the base URL of a started server, such as "http://127.0.0.1:41234",
// or "" before [Server.Start].
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hs == nil {
		return ""
	}
	return s.hs.URL
}

// Close stops a started server and closes its client connections, so that
// further requests fail at the transport level. It does nothing for a server
// that was never started, and may be called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	hs := s.hs
	s.mu.Unlock()
	if hs != nil {
		hs.CloseClientConnections()
		hs.Close()
	}
}

// SetResponder makes r decide the answer to every later send request; nil
// restores the default (200 with {"name":"projects/{project}/messages/{n}"}).
func (s *Server) SetResponder(r Responder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.responder = r
}

// Always is the responder that answers every send request with resp.
func Always(resp Response) Responder {
	return func(Request) Response { return resp }
}

// SetLatency delays every later send answer by d (0, the default, for none).
// The delay ends early if the client gives up on the request.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetRequireAuth makes later send requests without a bearer token issued by
// this server's /token endpoint fail with FCM's 401 UNAUTHENTICATED answer
// (default false: any or no Authorization header is accepted). Such requests
// are still recorded; the responder is not consulted.
func (s *Server) SetRequireAuth(require bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requireAuth = require
}

// Requests returns a copy of the send requests received since the start or
// the last [Server.Reset], in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// WaitForRequests blocks until at least n send requests have been received
// since the start or the last [Server.Reset], or ctx ends; then it returns an
// error wrapping ctx.Err() that says how many arrived.
func (s *Server) WaitForRequests(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, changed := len(s.requests), s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("fcmtest: waiting for %d requests, got %d: %w", n, have, ctx.Err())
		}
	}
}

// Reset forgets the recorded send and token requests. The responder, latency,
// auth requirement, issued access tokens and registered keys stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.tokenRequests = nil
	s.signalLocked()
}

func (s *Server) signalLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// ServeHTTP implements [http.Handler].
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.serveToken(w, r)
		return
	}
	project, ok := sendPath(r.URL.Path)
	if !ok {
		writeResponse(w, notFoundPath(r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		writeResponse(w, ErrorResponse(http.StatusMethodNotAllowed, "INVALID_ARGUMENT",
			fmt.Sprintf("Method %s is not allowed; use POST.", r.Method)))
		return
	}
	s.serveSend(w, r, project)
}

// sendPath returns {project} of "/v1/projects/{project}/messages:send".
func sendPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/v1/projects/")
	if !ok {
		return "", false
	}
	project, ok := strings.CutSuffix(rest, "/messages:send")
	if !ok || project == "" || strings.Contains(project, "/") {
		return "", false
	}
	return project, true
}

func (s *Server) serveSend(w http.ResponseWriter, r *http.Request, project string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeResponse(w, ErrorResponse(http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT",
			"Request payload size exceeds the limit."))
		return
	}
	var envelope struct {
		Message      json.RawMessage `json:"message"`
		ValidateOnly bool            `json:"validate_only"`
	}
	var message map[string]any
	if err := json.Unmarshal(body, &envelope); err != nil {
		writeResponse(w, invalidJSON(err))
		return
	}
	if len(envelope.Message) == 0 || bytes.Equal(envelope.Message, []byte("null")) {
		writeResponse(w, ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT",
			"Request contains an invalid argument."))
		return
	}
	if err := json.Unmarshal(envelope.Message, &message); err != nil {
		writeResponse(w, invalidJSON(err))
		return
	}
	token, _ := message["token"].(string)
	req := Request{
		Project:       project,
		Token:         token,
		ValidateOnly:  envelope.ValidateOnly,
		Message:       message,
		MessageJSON:   envelope.Message,
		Body:          body,
		Authorization: r.Header.Get("Authorization"),
		Header:        r.Header.Clone(),
		Received:      time.Now(),
		Context:       r.Context(),
	}

	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.signalLocked()
	responder, latency, requireAuth := s.responder, s.latency, s.requireAuth
	authorized := !requireAuth || s.authorizedLocked(req.Authorization)
	s.mu.Unlock()

	if latency > 0 {
		timer := time.NewTimer(latency)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
	}

	var resp Response
	switch {
	case !authorized:
		resp = Unauthenticated()
	case token == "" && message["topic"] == nil && message["condition"] == nil:
		resp = ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT", "Recipient of the message is not set.")
	case responder != nil:
		resp = responder(req)
	}
	if resp.Status == 0 {
		resp = s.success(project)
	}
	writeResponse(w, resp)
}

func (s *Server) success(project string) Response {
	s.mu.Lock()
	s.sent++
	n := s.sent
	s.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("projects/%s/messages/%d", project, n)})
	return Response{Status: http.StatusOK, Body: body}
}

func (s *Server) authorizedLocked(authorization string) bool {
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	return ok && s.issued[token]
}

func writeResponse(w http.ResponseWriter, resp Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

func invalidJSON(err error) Response {
	msg := "Invalid JSON payload received. " + err.Error()
	return ErrorResponse(http.StatusBadRequest, "INVALID_ARGUMENT", msg,
		BadRequestDetail("", msg))
}

func notFoundPath(path string) Response {
	// Google's front end answers unknown paths with an HTML 404; a JSON body is
	// friendlier and still not what a client expects from a send.
	return ErrorResponse(http.StatusNotFound, "NOT_FOUND",
		fmt.Sprintf("The requested URL %s was not found on this server.", path))
}
