// Package asynqbatch stores many plain pending asynq tasks in one Redis round
// trip, writing exactly what asynq's Client.EnqueueContext writes for each.
//
// It exists because asynq v0.26.0, the newest release, has no batch enqueue:
// its client stores one task per round trip (one EVALSHA of its enqueue
// script), and storing the follows of one webhook that way made the
// receiver's ingest about half as fast as it could be. This package runs the
// same script (internal/rdb enqueueCmd, copied byte for byte so that both
// share Redis's script cache) for a whole batch in one pipeline, with the
// same keys, arguments and encoded task message.
//
// Upstream has merged Client.BatchEnqueueContext (hibiken/asynq#1094), not
// yet released. Drop this package and use that once a release has it.
//
// Only what this service needs is supported: a task with a type, payload, id,
// queue, retry budget, timeout and retention, enqueued as pending now. No
// deadline, uniqueness lock, group, process-at time or headers. The format
// written is asynq v0.26.0's (task hash asynq:{<queue>}:t:<id> with fields
// msg, state and pending_since; the id LPUSHed onto asynq:{<queue>}:pending;
// the queue added once per Client to the set asynq:queues); the
// compatibility tests compare it with asynq's own client and must pass
// again before asynq is upgraded.
package asynqbatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// DefaultTimeout is the timeout stored for a [Task] whose Timeout is zero:
// asynq's default when a task has neither a timeout nor a deadline.
const DefaultTimeout = 30 * time.Minute

// allQueues is the set of queue names asynq's Inspector and asynqmon list
// (asynq internal/base AllQueues).
const allQueues = "asynq:queues"

// enqueueScript is asynq v0.26.0's enqueueCmd (internal/rdb/rdb.go),
// unchanged to the byte, so that its SHA1 is the one asynq's client loads.
//
// KEYS[1] -> asynq:{<qname>}:t:<task_id>
// KEYS[2] -> asynq:{<qname>}:pending
// ARGV[1] -> task message data
// ARGV[2] -> task ID
// ARGV[3] -> current unix time in nsec
//
// It returns 1 if the task was enqueued, 0 if the task ID already exists.
var enqueueScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then
	return 0
end
redis.call("HSET", KEYS[1],
           "msg", ARGV[1],
           "state", "pending",
           "pending_since", ARGV[3])
redis.call("LPUSH", KEYS[2], ARGV[2])
return 1
`)

// Task is one task to enqueue: what asynq.NewTask(Type, Payload,
// asynq.TaskID(ID), asynq.Queue(Queue), asynq.MaxRetry(MaxRetry),
// asynq.Timeout(Timeout), asynq.Retention(Retention)) describes.
type Task struct {
	// Type is the task type name handlers are registered for; not blank.
	Type string
	// Payload is the task's data, stored as is.
	Payload []byte
	// ID is the task id, unique within the queue; not blank.
	ID string
	// Queue is the asynq queue name; not blank.
	Queue string
	// MaxRetry is the retry budget; a negative value means 0, as with
	// asynq.MaxRetry.
	MaxRetry int
	// Timeout bounds one processing attempt, stored in whole seconds
	// (truncated, as asynq does). Zero means [DefaultTimeout], as when
	// asynq.Timeout is not given; negative is an error.
	Timeout time.Duration
	// Retention is how long the task is kept as completed after it
	// succeeded, stored in whole seconds (truncated, as asynq does). Zero:
	// deleted at once, as when asynq.Retention is not given; negative is an
	// error.
	Retention time.Duration
}

// Client enqueues batches of tasks over a Redis client. It is safe for
// concurrent use. Like asynq's client, it remembers which queues it has
// already added to asynq:queues and adds each only once.
type Client struct {
	rdb       redis.UniversalClient
	published sync.Map // queue name -> struct{}: SADDed to asynq:queues
}

// New returns a Client over rdb (a *redis.Client, *redis.ClusterClient or
// failover client; every key of one queue shares the {queue} hash tag, so
// Redis Cluster works). rdb is not closed by the Client.
func New(rdb redis.UniversalClient) *Client {
	return &Client{rdb: rdb}
}

// Validate reports whether t can be enqueued: it returns an error for a
// blank type, id or queue (what asynq's client refuses), one that is not
// valid UTF-8 (what asynq's protobuf encoding refuses) or a negative
// timeout or retention.
func (t Task) Validate() error {
	switch {
	case strings.TrimSpace(t.Type) == "":
		return errors.New("asynqbatch: task type cannot be empty")
	case strings.TrimSpace(t.ID) == "":
		return errors.New("asynqbatch: task ID cannot be empty")
	case strings.TrimSpace(t.Queue) == "":
		return fmt.Errorf("asynqbatch: task %s: queue name cannot be empty", t.ID)
	case t.Timeout < 0:
		return fmt.Errorf("asynqbatch: task %s: negative timeout %v", t.ID, t.Timeout)
	case t.Retention < 0:
		return fmt.Errorf("asynqbatch: task %s: negative retention %v", t.ID, t.Retention)
	case !utf8.ValidString(t.Type) || !utf8.ValidString(t.ID) || !utf8.ValidString(t.Queue):
		// asynq's proto.Marshal refuses these; the worker could not decode them.
		return fmt.Errorf("asynqbatch: task %q: type, ID and queue must be valid UTF-8", t.ID)
	}
	return nil
}

// Enqueue stores ts as pending tasks in one Redis pipeline (one round trip
// per node holding their queues), in order. created[i] reports whether
// ts[i] was stored by this call; false means a task with its id already
// exists in its queue (what asynq reports as ErrTaskIDConflict; an id
// repeated within ts counts from its second occurrence on), which is not an
// error.
//
// If any task does not validate ([Task.Validate]), Enqueue returns an error
// and writes nothing. If a Redis command fails, Enqueue returns an error
// and a created that is nil (nothing stored) or true only for the tasks
// known to be stored by this call: the other tasks may or may not exist.
// Enqueue does not split ts; callers bound the size of one pipeline.
//
// When Redis does not know the script (it restarted, or SCRIPT FLUSH ran),
// the commands that failed with NOSCRIPT, and only those, are sent again
// with the script's source in a second round trip.
func (c *Client) Enqueue(ctx context.Context, ts []Task) (created []bool, err error) {
	return c.EnqueueAlso(ctx, ts, nil)
}

// EnqueueAlso is [Client.Enqueue] that also queues, through also (when not
// nil), the caller's own commands on the pipeline that stores ts, ahead of
// the tasks: they share its round trip. Their errors are not Enqueue's:
// the caller reads them from its commands once EnqueueAlso returned. They
// run once, in the first round trip, and not at all when Enqueue writes
// nothing (a task that does not validate, or asynq:queues failing).
func (c *Client) EnqueueAlso(ctx context.Context, ts []Task, also func(redis.Pipeliner)) (created []bool, err error) {
	if len(ts) == 0 {
		return nil, nil
	}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return nil, err
		}
	}
	if err := c.publishQueues(ctx, ts); err != nil {
		return nil, err
	}

	type call struct {
		keys []string
		args []any
	}
	calls := make([]call, len(ts))
	for i, t := range ts {
		calls[i] = call{
			keys: []string{taskKey(t.Queue, t.ID), pendingKey(t.Queue)},
			args: []any{encodeMessage(t), t.ID, time.Now().UnixNano()},
		}
	}

	created = make([]bool, len(ts))
	cmds := make([]*redis.Cmd, len(ts))
	pipe := c.rdb.Pipeline()
	if also != nil {
		also(pipe)
	}
	for i, cl := range calls {
		cmds[i] = enqueueScript.EvalSha(ctx, pipe, cl.keys, cl.args...)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below

	var retry []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		// EVAL sends the source, runs it and caches it again: no separate
		// SCRIPT LOAD round trip (which on a cluster would go to every
		// master). A command that succeeded must not run again: it would
		// find its own task and report a conflict.
		pipe := c.rdb.Pipeline()
		for _, i := range retry {
			cmds[i] = enqueueScript.Eval(ctx, pipe, calls[i].keys, calls[i].args...)
		}
		_, _ = pipe.Exec(ctx)
	}

	var errs []error
	for i, cmd := range cmds {
		n, err := cmd.Int64()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("task %s: %w", ts[i].ID, err))
		case n == 1:
			created[i] = true
		case n != 0:
			errs = append(errs, fmt.Errorf("task %s: enqueue script returned %d", ts[i].ID, n))
		}
	}
	if len(errs) > 0 {
		return created, fmt.Errorf("asynqbatch: enqueue %d tasks, %d failed: %w", len(ts), len(errs), errs[0])
	}
	return created, nil
}

// publishQueues adds the queues of ts that this Client has not added yet to
// asynq:queues, before any task of theirs is stored, as asynq's client does
// (once per queue and client; a queue is remembered only once SADD
// succeeded).
func (c *Client) publishQueues(ctx context.Context, ts []Task) error {
	var missing []any
	for _, t := range ts {
		if _, ok := c.published.Load(t.Queue); ok {
			continue
		}
		dup := false
		for _, q := range missing {
			dup = dup || q == t.Queue
		}
		if !dup {
			missing = append(missing, t.Queue)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := c.rdb.SAdd(ctx, allQueues, missing...).Err(); err != nil {
		return fmt.Errorf("asynqbatch: add queues to %s: %w", allQueues, err)
	}
	for _, q := range missing {
		c.published.Store(q, struct{}{})
	}
	return nil
}

// taskKey and pendingKey are asynq internal/base TaskKey and PendingKey.
func taskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }
func pendingKey(queue string) string  { return "asynq:{" + queue + "}:pending" }

// Field numbers of asynq's TaskMessage (internal/proto/asynq.proto) that a
// plain pending task sets.
const (
	fieldType    protowire.Number = 1
	fieldPayload protowire.Number = 2
	fieldID      protowire.Number = 3
	fieldQueue   protowire.Number = 4
	fieldRetry   protowire.Number = 5
	fieldTimeout protowire.Number = 8
	// retention (12) is set when the task has one.
	fieldRetention protowire.Number = 12
	// deadline (9) is 0 (asynq's noDeadline is the Unix epoch) and the
	// others (headers, retried, error_msg, last_failed_at, unique_key,
	// group_key, completed_at) are zero at enqueue: proto3 omits zero
	// values.
)

// encodeMessage is the protobuf encoding of the TaskMessage asynq's
// EnqueueContext builds for t (base.EncodeMessage): fields in field-number
// order, zero values omitted, as Go's proto.Marshal writes them.
func encodeMessage(t Task) []byte {
	retry := int32(max(t.MaxRetry, 0)) // asynq.MaxRetry clamps; EncodeMessage converts with int32()
	timeout := t.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	secs := int64(timeout.Seconds())

	b := make([]byte, 0, 32+len(t.Type)+len(t.Payload)+len(t.ID)+len(t.Queue))
	b = appendString(b, fieldType, t.Type)
	if len(t.Payload) > 0 {
		b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
		b = protowire.AppendBytes(b, t.Payload)
	}
	b = appendString(b, fieldID, t.ID)
	b = appendString(b, fieldQueue, t.Queue)
	if retry != 0 {
		b = protowire.AppendTag(b, fieldRetry, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(retry))) // int32: sign-extended
	}
	if secs != 0 {
		b = protowire.AppendTag(b, fieldTimeout, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(secs))
	}
	if retention := int64(t.Retention.Seconds()); retention != 0 {
		b = protowire.AppendTag(b, fieldRetention, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(retention))
	}
	return b
}

func appendString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}
