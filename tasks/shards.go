package tasks

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// DefaultFollowQueueShards is the default of FOLLOW_QUEUE_SHARDS: one
// queue, [QueueFollow], exactly the layout of earlier releases.
const DefaultFollowQueueShards = 1

// MaxFollowQueueShards is the largest FOLLOW_QUEUE_SHARDS accepted. Every
// worker polls every shard while idle, so more shards than Redis Cluster
// masters (times a small factor) only add idle polling.
const MaxFollowQueueShards = 64

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

// Shards routes follow and digest tasks to N asynq queues by followee. The
// zero Shards is the single queue [QueueFollow] (N = 1).
//
// With N > 1 the followee's UserID picks the shard: FNV-1a (64 bit) of the
// UserID's bytes, modulo N ([Shards.Index]). Every task of one followee
// (its follows and its digests) goes to the same queue, on every process
// that has the same N. Shard i's queue is [ShardQueue](i, N).
type Shards struct {
	names []string
}

// NewShards returns the routing over n queues, 1 to [MaxFollowQueueShards].
func NewShards(n int) (Shards, error) {
	if n < 1 || n > MaxFollowQueueShards {
		return Shards{}, fmt.Errorf("follow queue shards %d: want 1 to %d", n, MaxFollowQueueShards)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = ShardQueue(i, n)
	}
	return Shards{names: names}, nil
}

// N returns the number of queues (1 for the zero Shards).
func (s Shards) N() int { return max(1, len(s.names)) }

// Names returns the queue names, shard 0 first.
func (s Shards) Names() []string {
	if len(s.names) == 0 {
		return []string{QueueFollow}
	}
	return append([]string(nil), s.names...)
}

// Index returns the shard of followee userID: FNV-1a 64 of its bytes,
// modulo N (0 when N is 1).
func (s Shards) Index(userID string) int {
	if len(s.names) <= 1 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(userID))
	return int(h.Sum64() % uint64(len(s.names)))
}

// Queue returns the queue of followee userID's tasks.
func (s Shards) Queue(userID string) string {
	if len(s.names) == 0 {
		return QueueFollow
	}
	return s.names[s.Index(userID)]
}

// ShardQueue returns the queue name of shard i of n (0 <= i < n <=
// [MaxFollowQueueShards]): [QueueFollow] when n is 1, else
// "follow-<i>of<n>-<k>" with the smallest k >= 0 whose Redis Cluster hash
// slot (CRC16 of the name modulo 16384; asynq's keys are
// asynq:{<queue>}:..., so the name is the hash tag) falls in the i-th of n
// equal slot ranges, [i*16384/n, (i+1)*16384/n). A cluster whose masters
// hold equal contiguous slot ranges (what redis-cli --cluster create
// makes) thus gets n/masters shards on each master when n is a multiple
// of the number of masters. The name is a pure function of i and n: every
// process computes the same.
func ShardQueue(i, n int) string {
	if n == 1 {
		return QueueFollow
	}
	if n < 1 || i < 0 || i >= n || n > MaxFollowQueueShards {
		panic(fmt.Sprintf("tasks.ShardQueue(%d, %d): want 0 <= i < n <= %d", i, n, MaxFollowQueueShards))
	}
	lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
	prefix := QueueFollow + "-" + strconv.Itoa(i) + "of" + strconv.Itoa(n) + "-"
	for k := 0; ; k++ {
		name := prefix + strconv.Itoa(k)
		if slot := ClusterSlot(name); slot >= lo && slot < hi {
			return name
		}
	}
}

// IsFollowQueue reports whether name is a follow queue of some number of
// shards: [QueueFollow], or [ShardQueue](i, n) for some 2 <= n <=
// [MaxFollowQueueShards]. Workers consume every such queue they find in
// Redis at start, so that tasks stored under another FOLLOW_QUEUE_SHARDS
// are not stranded.
func IsFollowQueue(name string) bool {
	if name == QueueFollow {
		return true
	}
	rest, ok := strings.CutPrefix(name, QueueFollow+"-")
	if !ok {
		return false
	}
	is, rest, ok := strings.Cut(rest, "of")
	if !ok {
		return false
	}
	ns, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil || n < 2 || n > MaxFollowQueueShards || i < 0 || i >= n {
		return false
	}
	return ShardQueue(i, n) == name
}

// ClusterSlot returns the Redis Cluster hash slot of key s taken whole
// (no hash tag applied): CRC16-CCITT (XMODEM) of its bytes modulo 16384,
// what CLUSTER KEYSLOT answers for "{s}".
func ClusterSlot(s string) int {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % clusterSlots
}
