package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/followpush/followpush/internal/testrig/fcmtest"
)

// sink is the FCM the workers send to, served in this process on a
// loopback port. A send (POST /v1/projects/{p}/messages:send) is answered
// like FCM answers a success, after a configurable latency; its body is
// kept as is and decoded only when the harness asks for the pushes, after
// the measured phase: the sink shares the machine with what it measures
// (decoding and checking every request while the workers ran cost 0.35 of
// the 2 cores). Everything else (the OAuth /token endpoint, wrong paths) is
// internal/testrig/fcmtest's. It also counts the TCP connections clients open, to
// see whether they are reused.
type sink struct {
	fcm     *fcmtest.Server
	srv     *http.Server
	URL     string
	conns   atomic.Int64 // TCP connections accepted
	sends   atomic.Int64 // send requests answered since the last reset
	latency atomic.Int64 // answer latency, ns
	done    chan struct{}

	mu   sync.Mutex
	recs []rawSend // since the last reset
}

// rawSend is one send request as received.
type rawSend struct {
	body     []byte
	received time.Time
}

func startSink(stderr io.Writer) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink listen: %w", err)
	}
	s := &sink{fcm: fcmtest.New(), URL: "http://" + ln.Addr().String(), done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "sink:", err)
		}
	}()
	return s, nil
}

func (s *sink) serveHTTP(w http.ResponseWriter, r *http.Request) {
	project, ok := strings.CutPrefix(r.URL.Path, "/v1/projects/")
	if ok {
		project, ok = strings.CutSuffix(project, "/messages:send")
	}
	if !ok || r.Method != http.MethodPost || project == "" || strings.Contains(project, "/") {
		s.fcm.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	received := time.Now()
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	s.mu.Lock()
	s.recs = append(s.recs, rawSend{body: body, received: received})
	s.mu.Unlock()
	n := s.sends.Add(1)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	fmt.Fprintf(w, `{"name":"projects/%s/messages/%d"}`, project, n)
}

// reset forgets recorded requests and sets the answer latency for the next
// phase.
func (s *sink) reset(latency time.Duration) {
	s.mu.Lock()
	s.recs = nil
	s.mu.Unlock()
	s.sends.Store(0)
	s.latency.Store(int64(latency))
}

// sentPush is one recorded send's data payload and arrival time.
type sentPush struct {
	data     map[string]string
	received time.Time
}

// sent decodes the recorded sends.
func (s *sink) sent() []sentPush {
	s.mu.Lock()
	recs := append([]rawSend(nil), s.recs...)
	s.mu.Unlock()
	out := make([]sentPush, 0, len(recs))
	for _, r := range recs {
		var req struct {
			Message struct {
				Data map[string]string `json:"data"`
			} `json:"message"`
		}
		_ = json.Unmarshal(r.body, &req) // a malformed body matches no follow
		out = append(out, sentPush{data: req.Message.Data, received: r.received})
	}
	return out
}

// push is one recorded send, reduced to what the harness matches on.
type push struct {
	key      followKey
	received time.Time
}

// pushes returns the recorded sends, keyed by their data payload.
func (s *sink) pushes() []push {
	sends := s.sent()
	out := make([]push, 0, len(sends))
	for _, r := range sends {
		out = append(out, push{key: followKey{from: r.data["from_account"], to: r.data["to_account"], t: r.data["event_time"]}, received: r.received})
	}
	return out
}

// count is how many sends were answered since the last reset.
func (s *sink) count() int { return int(s.sends.Load()) }

func (s *sink) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}
