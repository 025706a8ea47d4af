package asynqbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/asynqbatch"
	"github.com/followpush/followpush/internal/testrig/asynqlog"
	"github.com/followpush/followpush/internal/testrig/redistest"
)

// asynqTask is t as asynq's client is given it.
func asynqTask(t asynqbatch.Task) *asynq.Task {
	opts := []asynq.Option{asynq.TaskID(t.ID), asynq.Queue(t.Queue), asynq.MaxRetry(t.MaxRetry)}
	if t.Timeout != 0 {
		opts = append(opts, asynq.Timeout(t.Timeout))
	}
	if t.Retention != 0 {
		opts = append(opts, asynq.Retention(t.Retention))
	}
	return asynq.NewTask(t.Type, t.Payload, opts...)
}

// compatTasks cover the encoding's corners: defaults, zero values omitted,
// a negative retry budget, a fractional timeout and retention, multi-byte
// lengths, two queues.
var compatTasks = []asynqbatch.Task{
	{Type: "follow:notify", Payload: []byte(`{"app":"1400000000","from":"UserID_001","to":"UserID_002","t":1767225600123}`),
		ID: "follow:0123456789abcdef0123456789abcdef", Queue: "follow", MaxRetry: 25, Timeout: time.Minute},
	{Type: "follow:notify", Payload: []byte(`{"app":"1400000000","from":"UserID_001","to":"UserID_003","t":1767225600123}`),
		ID: "follow:retained", Queue: "follow", MaxRetry: 25, Timeout: time.Minute, Retention: time.Hour},
	{Type: "t", Payload: []byte("x"), ID: "subsecond-retention", Queue: "other", Retention: 2500 * time.Millisecond},
	{Type: "t", Payload: []byte("x"), ID: "retention-under-a-second", Queue: "other", Retention: 400 * time.Millisecond},
	{Type: "t", ID: "no-payload-defaults", Queue: "follow"},
	{Type: "t", Payload: []byte{}, ID: "empty-payload", Queue: "other", MaxRetry: -3, Timeout: 1500 * time.Millisecond},
	{Type: "t", Payload: []byte("x"), ID: "subsecond-timeout", Queue: "other", MaxRetry: 1, Timeout: 300 * time.Millisecond},
	{Type: strings.Repeat("τ", 100), Payload: []byte(strings.Repeat("p", 20000)), ID: strings.Repeat("i", 200),
		Queue: "q-ünïcode", MaxRetry: 1 << 20, Timeout: 48 * time.Hour},
}

// dbClient is a client for database db of red, closed at test cleanup.
func dbClient(t *testing.T, red *redistest.Server, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: red.Addr(), DB: db})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Tasks stored by asynqbatch are, byte for byte, what asynq's client
// stores: the same keys, the same task hash (msg, state, pending_since),
// the same pending lists and queue set, and the Inspector reads the same
// TaskInfo back.
func TestCompatibleWithAsynqClient(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	ctx := context.Background()
	viaAsynq, viaBatch := dbClient(t, red, 0), dbClient(t, red, 1)

	client := asynq.NewClientFromRedisClient(viaAsynq)
	before := time.Now().UnixNano()
	for _, tk := range compatTasks {
		if _, err := client.EnqueueContext(ctx, asynqTask(tk)); err != nil {
			t.Fatalf("asynq enqueue %s: %v", tk.ID, err)
		}
	}
	created, err := asynqbatch.New(viaBatch).Enqueue(ctx, compatTasks)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixNano()
	for i, c := range created {
		if !c {
			t.Errorf("created[%d] = false for a new task", i)
		}
	}

	keys := func(rdb *redis.Client) []string {
		k, err := rdb.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	wantKeys := keys(viaAsynq)
	if d := cmp.Diff(wantKeys, keys(viaBatch), cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
		t.Errorf("keys (-asynq +asynqbatch):\n%s", d)
	}
	for _, k := range wantKeys {
		typ, err := viaAsynq.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "hash":
			want, got := viaAsynq.HGetAll(ctx, k).Val(), viaBatch.HGetAll(ctx, k).Val()
			for _, h := range []map[string]string{want, got} {
				ns, err := strconv.ParseInt(h["pending_since"], 10, 64)
				if err != nil || ns < before || ns > after {
					t.Errorf("%s: pending_since %q, want a time in [%d, %d]", k, h["pending_since"], before, after)
				}
				delete(h, "pending_since")
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("hash %s (-asynq +asynqbatch), pending_since aside:\n%s", k, d)
			}
			if want["msg"] != got["msg"] {
				t.Errorf("%s: msg %x, asynq wrote %x", k, got["msg"], want["msg"])
			}
		case "list":
			if d := cmp.Diff(viaAsynq.LRange(ctx, k, 0, -1).Val(), viaBatch.LRange(ctx, k, 0, -1).Val()); d != "" {
				t.Errorf("list %s (-asynq +asynqbatch):\n%s", k, d)
			}
		case "set":
			if d := cmp.Diff(viaAsynq.SMembers(ctx, k).Val(), viaBatch.SMembers(ctx, k).Val(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
				t.Errorf("set %s (-asynq +asynqbatch):\n%s", k, d)
			}
		default:
			t.Errorf("asynq wrote %s of type %s; the test does not compare those", k, typ)
		}
	}

	inspA, inspB := asynq.NewInspectorFromRedisClient(viaAsynq), asynq.NewInspectorFromRedisClient(viaBatch)
	for _, tk := range compatTasks {
		want, err := inspA.GetTaskInfo(tk.Queue, tk.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := inspB.GetTaskInfo(tk.Queue, tk.ID)
		if err != nil {
			t.Fatalf("GetTaskInfo(%s): %v", tk.ID, err)
		}
		// NextProcessAt of a pending task is "now" at the time of reading.
		if d := cmp.Diff(want, got, cmpopts.EquateApproxTime(time.Minute)); d != "" {
			t.Errorf("TaskInfo of %s (-asynq +asynqbatch):\n%s", tk.ID, d)
		}
	}
}

// An asynq server processes tasks stored by asynqbatch, with their payload,
// id, queue and retry budget.
func TestAsynqServerProcesses(t *testing.T) {
	t.Parallel()
	red := redistest.Start(t)
	rdb := red.Client(t)
	type seen struct {
		id, queue, payload string
		maxRetry           int
		hasDeadline        bool
	}
	got := make(chan seen, 100)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency:       4,
		Queues:            map[string]int{"a": 1, "b": 1},
		TaskCheckInterval: 10 * time.Millisecond,
		Logger:            asynqlog.Discard{},
		LogLevel:          asynq.FatalLevel,
	})
	if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, tk *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		q, _ := asynq.GetQueueName(ctx)
		mr, _ := asynq.GetMaxRetry(ctx)
		_, dl := ctx.Deadline()
		got <- seen{id: id, queue: q, payload: string(tk.Payload()), maxRetry: mr, hasDeadline: dl}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	var ts []asynqbatch.Task
	want := map[string]seen{}
	for i := range 20 {
		q := []string{"a", "b"}[i%2]
		tk := asynqbatch.Task{Type: "job", Payload: []byte(fmt.Sprintf("payload %d", i)), ID: fmt.Sprintf("id-%d", i),
			Queue: q, MaxRetry: i, Timeout: time.Minute}
		ts = append(ts, tk)
		want[tk.ID] = seen{id: tk.ID, queue: q, payload: string(tk.Payload), maxRetry: i, hasDeadline: true}
	}
	if _, err := asynqbatch.New(rdb).Enqueue(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case s := <-got:
			if w, ok := want[s.id]; !ok {
				t.Fatalf("processed unexpected or repeated task %+v", s)
			} else if w != s {
				t.Errorf("processed %+v, want %+v", s, w)
			}
			delete(want, s.id)
		case <-timeout:
			t.Fatalf("tasks not processed within 30s: %d left", len(want))
		}
	}
}

func pendingIDs(t *testing.T, rdb redis.UniversalClient, queue string) []string {
	t.Helper()
	ids, err := rdb.LRange(context.Background(), "asynq:{"+queue+"}:pending", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func task(id string) asynqbatch.Task {
	return asynqbatch.Task{Type: "job", Payload: []byte("payload of " + id), ID: id, Queue: "q", MaxRetry: 3, Timeout: time.Minute}
}

// An id that already exists, from an earlier call or earlier in the same
// call, is created=false and stored once; the first task's message stays.
func TestDuplicateIDs(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	c := asynqbatch.New(rdb)
	dupA := task("a")
	dupA.Payload = []byte("second a")
	created, err := c.Enqueue(ctx, []asynqbatch.Task{task("a"), task("b"), dupA})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]bool{true, true, false}, created); d != "" {
		t.Errorf("created (-want +got):\n%s", d)
	}
	created, err = c.Enqueue(ctx, []asynqbatch.Task{task("b"), task("c"), task("a")})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]bool{false, true, false}, created); d != "" {
		t.Errorf("created, second call (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"c", "b", "a"}, pendingIDs(t, rdb, "q")); d != "" {
		t.Errorf("pending (-want +got):\n%s", d)
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo("q", "a")
	if err != nil {
		t.Fatal(err)
	}
	if string(info.Payload) != "payload of a" {
		t.Errorf("task a's payload is %q: the duplicate overwrote it", info.Payload)
	}
}

// After SCRIPT FLUSH (what a Redis restart does to the script cache) the
// next call still stores its tasks and reports existing ones as such, and
// the script is cached again.
func TestNoScriptRecovery(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	c := asynqbatch.New(rdb)
	if _, err := c.Enqueue(ctx, []asynqbatch.Task{task("a")}); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		n := strconv.Itoa(round)
		created, err := c.Enqueue(ctx, []asynqbatch.Task{task("new1-" + n), task("a"), task("new2-" + n), task("new1-" + n)})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if d := cmp.Diff([]bool{true, false, true, false}, created); d != "" {
			t.Errorf("round %d: created (-want +got):\n%s", round, d)
		}
	}
	if d := cmp.Diff([]string{"new2-1", "new1-1", "new2-0", "new1-0", "a"}, pendingIDs(t, rdb, "q")); d != "" {
		t.Errorf("pending (-want +got):\n%s", d)
	}
	created, err := c.Enqueue(ctx, []asynqbatch.Task{task("after")})
	if err != nil || !created[0] {
		t.Errorf("enqueue after recovery = %v, %v", created, err)
	}
}

// A task that does not validate fails the whole call before anything is
// written, asynq:queues included.
func TestValidationWritesNothing(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	c := asynqbatch.New(rdb)
	for name, bad := range map[string]func(*asynqbatch.Task){
		"empty type":         func(t *asynqbatch.Task) { t.Type = "" },
		"blank type":         func(t *asynqbatch.Task) { t.Type = " \t" },
		"empty id":           func(t *asynqbatch.Task) { t.ID = "" },
		"blank id":           func(t *asynqbatch.Task) { t.ID = "  " },
		"empty queue":        func(t *asynqbatch.Task) { t.Queue = "" },
		"blank queue":        func(t *asynqbatch.Task) { t.Queue = " " },
		"negative timeout":   func(t *asynqbatch.Task) { t.Timeout = -time.Second },
		"negative retention": func(t *asynqbatch.Task) { t.Retention = -time.Second },
		"non-UTF-8 type":     func(t *asynqbatch.Task) { t.Type = "follow:\xff" },
		"non-UTF-8 id":       func(t *asynqbatch.Task) { t.ID = "id-\xfe" },
		"non-UTF-8 queue":    func(t *asynqbatch.Task) { t.Queue = "q\xc3" },
	} {
		b := task("bad")
		bad(&b)
		if err := b.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", name)
		}
		created, err := c.Enqueue(ctx, []asynqbatch.Task{task("good"), b})
		if err == nil || created != nil {
			t.Errorf("%s: Enqueue = %v, %v; want nil, an error", name, created, err)
		}
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("Redis holds %d keys (%v) after invalid calls, want 0", n, err)
	}
	if created, err := c.Enqueue(ctx, nil); created != nil || err != nil {
		t.Errorf("Enqueue(nil) = %v, %v", created, err)
	}
}

// Through a Redis Cluster client the tasks of several queues, on several
// nodes, are stored and visible to asynq's Inspector; when only some nodes
// lost the script, only their commands are sent again.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	rc := cl.Client(t)
	ctx := context.Background()
	c := asynqbatch.New(rc)
	queues := []string{"q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7"}
	batch := func(prefix string) []asynqbatch.Task {
		var ts []asynqbatch.Task
		for _, q := range queues {
			for j := range 3 {
				ts = append(ts, asynqbatch.Task{Type: "job", Payload: []byte(q), ID: fmt.Sprintf("%s-%s-%d", prefix, q, j), Queue: q})
			}
		}
		return ts
	}
	allTrue := func(n int) []bool {
		b := make([]bool, n)
		for i := range b {
			b[i] = true
		}
		return b
	}
	first := batch("first")
	created, err := c.Enqueue(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(allTrue(len(first)), created); d != "" {
		t.Errorf("created (-want +got):\n%s", d)
	}

	insp := asynq.NewInspectorFromRedisClient(rc)
	gotQueues, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(queues, gotQueues, cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
		t.Errorf("Inspector.Queues (-want +got):\n%s", d)
	}
	for _, tk := range first {
		info, err := insp.GetTaskInfo(tk.Queue, tk.ID)
		if err != nil {
			t.Fatalf("GetTaskInfo(%s, %s): %v", tk.Queue, tk.ID, err)
		}
		if info.State != asynq.TaskStatePending || string(info.Payload) != tk.Queue || info.Timeout != asynqbatch.DefaultTimeout {
			t.Errorf("task %s: %+v", tk.ID, info)
		}
	}

	// Flush the scripts of the node holding q0 only.
	slot, err := rc.ClusterKeySlot(ctx, "asynq:{q0}:pending").Result()
	if err != nil {
		t.Fatal(err)
	}
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var owner string
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) {
			owner = s.Nodes[0].Addr
		}
	}
	var flushed, others int
	for _, q := range queues {
		qs, _ := rc.ClusterKeySlot(ctx, "asynq:{"+q+"}:pending").Result()
		for _, s := range slots {
			if int64(s.Start) <= qs && qs <= int64(s.End) {
				if s.Nodes[0].Addr == owner {
					flushed++
				} else {
					others++
				}
			}
		}
	}
	if flushed == 0 || others == 0 {
		t.Fatalf("queues on the flushed node: %d, elsewhere: %d; the test needs both", flushed, others)
	}
	for _, n := range cl.Nodes() {
		if n.Addr() == owner {
			if err := n.Client(t).ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	second := append(batch("second"), first[0], first[len(first)-1])
	created, err = c.Enqueue(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	want := append(allTrue(len(second)-2), false, false)
	if d := cmp.Diff(want, created); d != "" {
		t.Errorf("created after a partial script flush (-want +got):\n%s", d)
	}
	for _, q := range queues {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		if info.Pending != 6 {
			t.Errorf("queue %s: %d pending, want 6", q, info.Pending)
		}
	}
}
