package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/asynqbatch"
	"github.com/followpush/followpush/internal/testrig/redistest"
	"github.com/followpush/followpush/tasks"
	"github.com/followpush/followpush/tencent"
	"github.com/followpush/followpush/webhook"
)

// The receiver's hot paths, for `go test -bench . -cpuprofile` (BenchmarkParse
// is in parse_test.go):
//
//	go test -run '^$' -bench . -benchmem ./webhook
//
// The enqueue benchmarks need redis-server on PATH.

func BenchmarkVerifySign(b *testing.B) {
	const token = "bench-callback-token"
	now := time.Unix(1767225600, 0)
	rt := strconv.FormatInt(now.Unix(), 10)
	sign := tencent.Sign(token, rt)
	b.ReportAllocs()
	for b.Loop() {
		if err := tencent.VerifySign(token, rt, sign, now, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// noopEnqueuer stores nothing: the handler benchmark then measures the
// receiver's own work (routing, authentication, reading, parsing, metrics,
// answering) without Redis.
type noopEnqueuer struct{}

func (noopEnqueuer) EnqueueFollows(_ context.Context, f []tasks.Follow) (webhook.EnqueueResult, error) {
	return webhook.EnqueueResult{Enqueued: len(f)}, nil
}

// benchFollowBody is a FollowAdd callback from UserID_001 to n followees.
func benchFollowBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"UserID_001","FollowList":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"To_Account":"UserID_%03d"}`, i+2)
	}
	b.WriteString(`],"EventTime":1767225600123}`)
	return []byte(b.String())
}

// BenchmarkWebhookHandler is one signed follow webhook through the full
// handler (httptest.NewRecorder, no network), with a no-op Enqueuer.
func BenchmarkWebhookHandler(b *testing.B) {
	now := time.Unix(1767225600, 0)
	h := serveWebhook(webhook.NewHandler(webhook.Options{
		AppIDs:        []string{testApp},
		CallbackToken: testToken,
		Now:           func() time.Time { return now },
	}, webhook.Deps{Enqueuer: noopEnqueuer{}}))
	target := "/webhook?" + signedQuery(tencent.CommandFollowAdd, now).Encode()
	for _, n := range []int{1, 20} {
		body := benchFollowBody(n)
		b.Run(fmt.Sprintf("followees=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			rd := bytes.NewReader(body)
			for b.Loop() {
				rd.Reset(body)
				req := httptest.NewRequest(http.MethodPost, target, rd)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// benchRedis starts a redis-server for an enqueue benchmark and returns a
// client on it plus a function that empties the database.
func benchRedis(b *testing.B) (*redis.Client, func()) {
	b.Helper()
	red := redistest.Start(b)
	rdb := red.Client(b)
	return rdb, func() {
		if err := rdb.FlushDB(context.Background()).Err(); err != nil {
			b.Fatal(err)
		}
	}
}

// eventSeq makes every benchmarked follow a new event (a repeated one would
// be a cheap duplicate).
var eventSeq atomic.Int64

func benchFollows(n int) []tasks.Follow {
	t := 1767225600000 + eventSeq.Add(1)
	out := make([]tasks.Follow, n)
	for i := range out {
		out[i] = tasks.Follow{AppID: testApp, From: "UserID_001", To: "UserID_" + strconv.Itoa(i+2), EventTime: t}
	}
	return out
}

// BenchmarkAsynqEnqueuer measures the receiver's store step against a real
// redis-server: one webhook's follows per op, sequentially ("followees=N")
// and from 32 goroutines ("parallel32": one followee each; 10 followees is
// the load harness's ingest scenario). Compare with
// BenchmarkBareAsynqEnqueue: asynq's client alone, one task per round trip.
// follows/s is reported for both.
func BenchmarkAsynqEnqueuer(b *testing.B) {
	rdb, flush := benchRedis(b)
	enq := webhook.NewAsynqEnqueuer(rdb, 16)
	ctx := context.Background()
	for _, n := range []int{1, 20, 1000} {
		b.Run(fmt.Sprintf("followees=%d", n), func(b *testing.B) {
			benchEnqueues(b, flush, n, false, func() error {
				res, err := enq.EnqueueFollows(ctx, benchFollows(n))
				if err == nil && res.Enqueued != n {
					err = fmt.Errorf("EnqueueFollows = %+v", res)
				}
				return err
			})
		})
	}
	for _, n := range []int{1, 10} {
		name := "parallel32" // one followee: the name predates the 10-followee case
		if n > 1 {
			name = fmt.Sprintf("parallel32-followees=%d", n)
		}
		b.Run(name, func(b *testing.B) {
			benchEnqueues(b, flush, n, true, func() error {
				_, err := enq.EnqueueFollows(ctx, benchFollows(n))
				return err
			})
		})
	}
}

// BenchmarkBareAsynqEnqueue is the floor under BenchmarkAsynqEnqueuer:
// asynq's client enqueuing a small task of the same size, with no follow
// model, id hashing or fan-out around it.
func BenchmarkBareAsynqEnqueue(b *testing.B) {
	rdb, flush := benchRedis(b)
	client := asynq.NewClientFromRedisClient(rdb)
	payload := []byte(`{"app":"1400000000","from":"UserID_001","to":"UserID_002","t":1767225600123}`)
	enqueue := func() error {
		_, err := client.Enqueue(asynq.NewTask("bench", payload, asynq.Queue("bench")))
		return err
	}
	b.Run("sequential", func(b *testing.B) { benchEnqueues(b, flush, 1, false, enqueue) })
	b.Run("parallel32", func(b *testing.B) { benchEnqueues(b, flush, 1, true, enqueue) })
}

// benchEnqueues is one enqueue benchmark over an emptied database (flush):
// enqueue, which stores n follows, b.N times, sequentially or from 32
// goroutines (parallel), reported as follows/s.
func benchEnqueues(b *testing.B, flush func(), n int, parallel bool, enqueue func() error) {
	flush()
	b.ReportAllocs()
	if parallel {
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	}
	start := time.Now()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := enqueue(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for b.Loop() {
			if err := enqueue(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "follows/s")
}

// BenchmarkLongFollowList is the answer time of one webhook with the longest
// FollowList accepted by default (WEBHOOK_MAX_FOLLOWS, 1000): HTTP on
// loopback, the full handler, AsynqEnqueuer and a real redis-server, one
// webhook at a time. ns/op is the time to the 200, against Tencent's 2 s;
// compare with 1000 × BenchmarkBareAsynqEnqueue/sequential.
func BenchmarkLongFollowList(b *testing.B) {
	rdb, flush := benchRedis(b)
	h := serveWebhook(webhook.NewHandler(webhook.Options{AppIDs: []string{testApp}, CallbackToken: testToken, MaxFollows: 1000},
		webhook.Deps{Enqueuer: webhook.NewAsynqEnqueuer(rdb, 16)}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	const n = 1000
	var body strings.Builder
	body.WriteString(`{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"UserID_001","FollowList":[`)
	for i := range n {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"To_Account":"UserID_` + strconv.Itoa(i+2) + `"}`)
	}
	flush()
	b.ReportAllocs()
	eventTime := time.Now().UnixMilli()
	for b.Loop() {
		eventTime++ // a new event each time, so every follow is stored
		q := signedQuery(tencent.CommandFollowAdd, time.Now())
		resp, err := srv.Client().Post(srv.URL+"/webhook?"+q.Encode(), "application/json",
			strings.NewReader(body.String()+`],"EventTime":`+strconv.FormatInt(eventTime, 10)+`}`))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	if got, err := rdb.LLen(context.Background(), "asynq:{follow}:pending").Result(); err != nil || got != int64(b.N*n) {
		b.Fatalf("pending tasks = %d, %v; want %d", got, err, b.N*n)
	}
}

// BenchmarkReceiverStack is the receiver's whole path per webhook, for
// profiling what the load harness measures from outside: an HTTP server on
// loopback, the full handler, AsynqEnqueuer (pipelines of up to 100 tasks,
// 16 at once) and a real redis-server, driven by 32 concurrent keep-alive
// clients. The profile also holds the client side; focus on the handler:
//
//	go test -run '^$' -bench ReceiverStack -cpuprofile cpu.out ./webhook
//	go tool pprof -top -focus ServeHTTP webhook.test cpu.out
func BenchmarkReceiverStack(b *testing.B) {
	rdb, _ := benchRedis(b)
	h := serveWebhook(webhook.NewHandler(webhook.Options{AppIDs: []string{testApp}, CallbackToken: testToken},
		webhook.Deps{Enqueuer: webhook.NewAsynqEnqueuer(rdb, 16)}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("followees=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					follows := benchFollows(n)
					var body strings.Builder
					body.WriteString(`{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"UserID_001","FollowList":[`)
					for i, f := range follows {
						if i > 0 {
							body.WriteByte(',')
						}
						body.WriteString(`{"To_Account":"` + f.To + `"}`)
					}
					body.WriteString(`],"EventTime":` + strconv.FormatInt(follows[0].EventTime, 10) + `}`)
					q := signedQuery(tencent.CommandFollowAdd, time.Now())
					resp, err := hc.Post(srv.URL+"/webhook?"+q.Encode(), "application/json", strings.NewReader(body.String()))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "follows/s")
		})
	}
}

// BenchmarkStoreRoundTrips stores one webhook's 10 follows as asynq tasks
// with internal/asynqbatch (asynq's own enqueue script): one round trip per
// follow, concurrently (what AsynqEnqueuer did through asynq's client),
// against all 10 in one pipeline (what it does now). The evidence for
// batching the receiver's enqueue.
func BenchmarkStoreRoundTrips(b *testing.B) {
	red := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: red.Addr(), PoolSize: 64})
	defer rdb.Close()
	ctx := context.Background()
	store := asynqbatch.New(rdb)
	const n = 10
	payload := bytes.Repeat([]byte("x"), 80) // about a follow's payload
	var seq atomic.Int64
	task := func() asynqbatch.Task {
		return asynqbatch.Task{Type: "bench", Payload: payload, ID: strconv.FormatInt(seq.Add(1), 10), Queue: "q", MaxRetry: 25}
	}
	b.Run("concurrent-calls", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			var wg sync.WaitGroup
			for pb.Next() {
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := store.Enqueue(ctx, []asynqbatch.Task{task()}); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
		})
		b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "follows/s")
	})
	b.Run("one-pipeline", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			ts := make([]asynqbatch.Task, n)
			for pb.Next() {
				for k := range ts {
					ts[k] = task()
				}
				if _, err := store.Enqueue(ctx, ts); err != nil {
					b.Error(err)
				}
			}
		})
		b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "follows/s")
	})
}
