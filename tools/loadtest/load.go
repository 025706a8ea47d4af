package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/followpush/followpush/tencent"
	"golang.org/x/sync/errgroup"
)

// Fixed identities the harness gives the programs.
const (
	appID         = "1400000000"
	callbackToken = "loadtest-callback-token"
	apiToken      = "loadtest-api-token-0123456789"
	fcmProject    = "load"
)

// userID is the UserID of population member i.
func userID(i int) string { return "u" + strconv.Itoa(i) }

// deviceToken is the one FCM token registered for population member i.
func deviceToken(i int) string { return "loadtest-device-token-" + strconv.Itoa(i) }

// population draws followees: uniformly, or Zipf-distributed (a few users
// are followed far more often than the rest, as on a real social app).
type population struct {
	users int
	dist  string  // "uniform" or "zipf"
	zipfS float64 // Zipf exponent, > 1
}

// sampler returns a function drawing k distinct users, using its own
// random source (not safe for concurrent use).
func (p population) sampler(seed uint64) func(k int, into []int) []int {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	draw := func() int { return r.IntN(p.users) }
	if p.dist == "zipf" {
		z := rand.NewZipf(r, p.zipfS, 1, uint64(p.users-1))
		draw = func() int { return int(z.Uint64()) }
	}
	return func(k int, into []int) []int {
		into = into[:0]
		seen := make(map[int]bool, k)
		for tries := 0; len(into) < k; tries++ {
			u := draw()
			if tries > 50*k { // a very skewed distribution: fill up in order
				u = (u + tries) % p.users
			}
			if !seen[u] {
				seen[u] = true
				into = append(into, u)
			}
		}
		return into
	}
}

// client is the HTTP client of the harness: keep-alive connections to
// loopback only (no proxy from the environment), as many idle ones kept as
// there are concurrent senders.
func newHTTPClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// registerDevices registers one android device for each of users 0..n-1
// through the receiver's device API.
func registerDevices(ctx context.Context, base string, n, concurrency int) error {
	client := newHTTPClient(concurrency)
	defer client.CloseIdleConnections()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	body := []byte(`{"platform":"android"}`)
	for i := range n {
		g.Go(func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut,
				base+"/v1/users/"+userID(i)+"/devices/"+deviceToken(i), bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+apiToken)
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("register device of %s: %w", userID(i), err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("register device of %s: %d %s", userID(i), resp.StatusCode, b)
			}
			return nil
		})
	}
	return g.Wait()
}

// loadSpec is one stream of follow webhooks.
type loadSpec struct {
	Rate        float64       `json:"rate"`        // webhooks/s; 0 = as fast as Concurrency allows
	Concurrency int           `json:"concurrency"` // webhooks in flight at most
	Followees   int           `json:"followees"`   // FollowList length
	Count       int           `json:"count"`       // webhooks; 0 = until Duration
	Duration    time.Duration `json:"duration"`    // 0 = until Count
}

func (s loadSpec) String() string {
	rate := "max"
	if s.Rate > 0 {
		rate = fmt.Sprintf("%g/s", s.Rate)
	}
	bound := s.Duration.String()
	if s.Count > 0 {
		bound = strconv.Itoa(s.Count) + " webhooks"
	}
	return fmt.Sprintf("rate %s × %d followees, concurrency %d, %s", rate, s.Followees, s.Concurrency, bound)
}

// sent is one webhook the generator sent.
type sent struct {
	From      string
	To        []int // population indices
	EventTime int64
	Sched     time.Time // when it was due (open loop), = Start otherwise
	Start     time.Time // when the request was handed to the client
	End       time.Time // when the answer was read
	Status    int       // 0 = transport error
	OK        bool      // 200 with ActionStatus OK
	Err       string
}

// loadResult is everything one stream sent.
type loadResult struct {
	Spec  loadSpec
	Sent  []sent
	Began time.Time
	Ended time.Time
}

// generator sends correctly signed follow webhooks to the receiver.
type generator struct {
	base   string
	pop    population
	seed   uint64
	nextID atomic.Int64 // follower ids: every webhook is a new follower, so every follow is a new event
	runs   atomic.Uint64
}

// run sends the stream described by spec and returns what was sent and
// answered. It stops at spec's count or duration, or when ctx ends (then
// it returns ctx's error along with what was sent).
func (g *generator) run(ctx context.Context, spec loadSpec) (*loadResult, error) {
	if spec.Concurrency < 1 {
		spec.Concurrency = 1
	}
	if spec.Count == 0 && spec.Duration == 0 {
		return nil, fmt.Errorf("load spec %v has neither count nor duration", spec)
	}
	client := newHTTPClient(spec.Concurrency)
	defer client.CloseIdleConnections()
	type job struct{ sched time.Time }
	jobs := make(chan job)
	results := make([][]sent, spec.Concurrency)
	run := g.runs.Add(1)
	began := time.Now()

	var wg sync.WaitGroup
	for w := range spec.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sample := g.pop.sampler(g.seed + run<<20 + uint64(w))
			var to []int
			var body bytes.Buffer
			var rt, sign string
			var rtSec int64
			for j := range jobs {
				to = sample(spec.Followees, to)
				s := sent{From: "f" + strconv.FormatInt(g.nextID.Add(1), 10), To: append([]int(nil), to...), Sched: j.sched}
				now := time.Now()
				if sec := now.Unix(); sec != rtSec {
					rtSec, rt = sec, strconv.FormatInt(sec, 10)
					sign = tencent.Sign(callbackToken, rt)
				}
				s.EventTime = now.UnixMilli()
				body.Reset()
				followBody(&body, s.From, s.To, s.EventTime)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/webhook?SdkAppid="+appID+
					"&CallbackCommand=Follow.CallbackAfterFollowAdd&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime="+
					rt+"&Sign="+sign, bytes.NewReader(body.Bytes()))
				if err != nil {
					s.Err = err.Error()
					results[w] = append(results[w], s)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				s.Start = time.Now()
				if s.Sched.IsZero() {
					s.Sched = s.Start
				}
				resp, err := client.Do(req)
				if err != nil {
					s.End, s.Err = time.Now(), err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					s.End, s.Status = time.Now(), resp.StatusCode
					s.OK = resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"ActionStatus":"OK"`))
					if !s.OK {
						s.Err = string(b)
					}
				}
				results[w] = append(results[w], s)
			}
		}()
	}

	var deadline time.Time
	if spec.Duration > 0 {
		deadline = began.Add(spec.Duration)
	}
	var ctxErr error
produce:
	for i := 0; spec.Count == 0 || i < spec.Count; i++ {
		var j job
		if spec.Rate > 0 {
			j.sched = began.Add(time.Duration(float64(i) / spec.Rate * float64(time.Second)))
			if !deadline.IsZero() && !j.sched.Before(deadline) {
				break
			}
			if d := time.Until(j.sched); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					ctxErr = ctx.Err()
					break produce
				}
			}
		} else if !deadline.IsZero() && !time.Now().Before(deadline) {
			break
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break produce
		}
		if spec.Rate > 0 && !deadline.IsZero() && time.Now().After(deadline.Add(spec.Duration/2)) {
			break // hopelessly behind: the phase stays bounded; achieved < offered says so
		}
	}
	close(jobs)
	wg.Wait()
	res := &loadResult{Spec: spec, Began: began, Ended: time.Now()}
	for _, r := range results {
		res.Sent = append(res.Sent, r...)
	}
	return res, ctxErr
}

// followBody writes a Follow.CallbackAfterFollowAdd body. UserIDs made by
// the harness need no JSON escaping.
func followBody(b *bytes.Buffer, from string, to []int, eventTime int64) {
	b.WriteString(`{"CallbackCommand":"Follow.CallbackAfterFollowAdd","From_Account":"`)
	b.WriteString(from)
	b.WriteString(`","FollowList":[`)
	for i, u := range to {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"To_Account":"`)
		b.WriteString(userID(u))
		b.WriteString(`"}`)
	}
	b.WriteString(`],"EventTime":`)
	b.WriteString(strconv.FormatInt(eventTime, 10))
	b.WriteByte('}')
}

// loadStats summarises a loadResult.
type loadStats struct {
	Offered      int           `json:"offered"`       // webhooks due (rate × duration, or count)
	Sent         int           `json:"sent"`          // webhooks sent
	OK           int           `json:"ok"`            // answered 200 OK
	Failed       int           `json:"failed"`        // anything else
	FirstFailure string        `json:"first_failure"` // the first failure's answer or error
	Elapsed      time.Duration `json:"elapsed"`       // first send to last answer
	WebhooksPerS float64       `json:"webhooks_per_s"`
	FollowsPerS  float64       `json:"follows_per_s"`
	Latency      latencyStats  `json:"latency"` // due time to answer, OK webhooks
	Windows      windowStats   `json:"windows"` // Latency by one-second window (fixed-rate phases)

	samples []timedLatency
}

func (r *loadResult) stats() loadStats {
	st := loadStats{Sent: len(r.Sent)}
	switch {
	case r.Spec.Rate > 0 && r.Spec.Duration > 0:
		st.Offered = int(r.Spec.Rate * r.Spec.Duration.Seconds())
		if r.Spec.Count > 0 {
			st.Offered = min(st.Offered, r.Spec.Count)
		}
	case r.Spec.Count > 0:
		st.Offered = r.Spec.Count
	default:
		st.Offered = st.Sent
	}
	var first, last time.Time
	lat := make([]time.Duration, 0, len(r.Sent))
	follows := 0
	for _, s := range r.Sent {
		if !s.Start.IsZero() && (first.IsZero() || s.Start.Before(first)) {
			first = s.Start
		}
		if s.End.After(last) {
			last = s.End
		}
		if s.OK {
			st.OK++
			follows += len(s.To)
			lat = append(lat, s.End.Sub(s.Sched))
			st.samples = append(st.samples, timedLatency{At: s.Sched, D: s.End.Sub(s.Sched)})
		} else {
			st.Failed++
			if st.FirstFailure == "" {
				st.FirstFailure = fmt.Sprintf("status %d: %.200s", s.Status, s.Err)
			}
		}
	}
	st.Elapsed = last.Sub(first)
	if st.Elapsed > 0 {
		st.WebhooksPerS = float64(st.OK) / st.Elapsed.Seconds()
		st.FollowsPerS = float64(follows) / st.Elapsed.Seconds()
	}
	st.Latency = latencies(lat)
	return st
}
