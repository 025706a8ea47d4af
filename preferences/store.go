package preferences

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/rediskey"
	"github.com/followpush/followpush/tencent"
)

// DefaultPrefix is the default key prefix, the programs' REDIS_KEY_PREFIX
// default.
const DefaultPrefix = rediskey.DefaultPrefix

// Store keeps preferences in Redis: one JSON string per user who has any,
// at <prefix>prefs:<userID>, without expiry. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewStore returns a Store over rdb; prefix "" is [DefaultPrefix].
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, prefix: prefix}
}

func (s *Store) key(user string) string { return s.prefix + "prefs:" + user }

// Get returns user's preferences: the defaults when none are stored.
func (s *Store) Get(ctx context.Context, user string) (Preferences, error) {
	if err := tencent.ValidateUserID(user); err != nil {
		return Preferences{}, err
	}
	return decode(s.rdb.Get(ctx, s.key(user)))
}

// Put stores p for user (the defaults delete what is stored). p must be
// valid; the error wraps [ErrInvalid] or tencent.ErrInvalidUserID then,
// and nothing is written.
func (s *Store) Put(ctx context.Context, user string, p Preferences) error {
	if err := tencent.ValidateUserID(user); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if p.IsDefault() {
		return s.rdb.Del(ctx, s.key(user)).Err()
	}
	p.FollowPushes = p.Mode()
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return s.rdb.Set(ctx, s.key(user), b, 0).Err()
}

// Delete removes user's preferences: the defaults apply again.
func (s *Store) Delete(ctx context.Context, user string) error {
	if err := tencent.ValidateUserID(user); err != nil {
		return err
	}
	return s.rdb.Del(ctx, s.key(user)).Err()
}

// Query is a pending read of one user's preferences queued on a pipeline.
type Query struct{ cmd *redis.StringCmd }

// QueueGet queues the read of user's preferences on pipe, so that it
// costs no round trip of its own; Result reads it after pipe ran.
func (s *Store) QueueGet(ctx context.Context, pipe redis.Pipeliner, user string) *Query {
	return &Query{cmd: pipe.Get(ctx, s.key(user))}
}

// Result returns the preferences read: the defaults when none are stored.
// A nil Query (nothing was queued: no store) answers the defaults.
func (q *Query) Result() (Preferences, error) {
	if q == nil {
		return Preferences{}, nil
	}
	return decode(q.cmd)
}

// decode reads a stored value. One that does not decode or validate (a
// hand-edited key) is an error, not the defaults: a user who turned
// pushes off must not get them because of a bad key.
func decode(cmd *redis.StringCmd) (Preferences, error) {
	b, err := cmd.Bytes()
	if errors.Is(err, redis.Nil) {
		return Preferences{}, nil
	}
	if err != nil {
		return Preferences{}, fmt.Errorf("read preferences: %w", err)
	}
	// %v, not %w: a bad stored value is the store's fault (503), not the
	// caller's invalid input (400, which would show the key).
	var p Preferences
	if err := json.Unmarshal(b, &p); err != nil {
		return Preferences{}, fmt.Errorf("stored preferences %s: %v", cmd.Args()[1], err)
	}
	if err := p.Validate(); err != nil {
		return Preferences{}, fmt.Errorf("stored preferences %s: %v", cmd.Args()[1], err)
	}
	return p, nil
}
