package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/followpush/followpush/internal/fcmtest"
)

// sink is the FCM the workers send to: internal/fcmtest's FCM-HTTP-v1
// server (which records every request and answers success after a
// configurable latency), served in this process on a loopback port. It also
// counts the TCP connections clients open, to see whether they are reused.
type sink struct {
	fcm   *fcmtest.Server
	srv   *http.Server
	URL   string
	conns atomic.Int64 // TCP connections accepted
	sends atomic.Int64 // send requests answered since the last reset
	done  chan struct{}
}

func startSink(stderr io.Writer) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink listen: %w", err)
	}
	s := &sink{fcm: fcmtest.New(), URL: "http://" + ln.Addr().String(), done: make(chan struct{})}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.fcm.ServeHTTP(w, r)
			if r.URL.Path != "/token" {
				s.sends.Add(1)
			}
		}),
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

// reset forgets recorded requests and sets the answer latency for the next
// phase.
func (s *sink) reset(latency time.Duration) {
	s.fcm.Reset()
	s.sends.Store(0)
	s.fcm.SetLatency(latency)
}

// push is one recorded send, reduced to what the harness matches on.
type push struct {
	key      followKey
	received time.Time
}

// pushes returns the recorded sends, keyed by their data payload.
func (s *sink) pushes() []push {
	reqs := s.fcm.Requests()
	out := make([]push, 0, len(reqs))
	for _, r := range reqs {
		data, _ := r.Message["data"].(map[string]any)
		from, _ := data["from_account"].(string)
		to, _ := data["to_account"].(string)
		t, _ := data["event_time"].(string)
		out = append(out, push{key: followKey{from: from, to: to, t: t}, received: r.Received})
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
