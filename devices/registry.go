package devices

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/followpush/followpush/internal/rediskey"
	"github.com/followpush/followpush/tencent"
	"github.com/redis/go-redis/v9"
)

// Defaults of [Options].
const (
	// DefaultPrefix starts every key the registry writes.
	DefaultPrefix = rediskey.DefaultPrefix
	// DefaultMaxDevicesPerUser is how many devices a user keeps before the
	// least recently seen is evicted.
	DefaultMaxDevicesPerUser = 10
)

// Options configures a [Registry]. The zero value is ready to use.
type Options struct {
	// Prefix starts every key; "" means [DefaultPrefix]. It must be the same
	// in every receiver and worker sharing the Redis.
	Prefix string
	// MaxDevicesPerUser is how many devices one user keeps; registering one
	// more evicts the least recently seen. 0 or less means
	// [DefaultMaxDevicesPerUser].
	MaxDevicesPerUser int
	// Now is the clock that stamps last-seen times (Device.UpdatedAt); nil
	// means time.Now. It must be safe for concurrent use.
	Now func() time.Time
}

// Registry is the device registry in Redis. Its methods are safe for
// concurrent use, also from several processes sharing the Redis.
type Registry struct {
	rdb    redis.UniversalClient
	prefix string
	max    int
	now    func() time.Time
}

// NewRegistry returns a registry that keeps its keys in rdb (a single
// server, Sentinel-managed or Redis Cluster; see the package documentation
// for the key layout). rdb must not be nil. It does not contact Redis.
func NewRegistry(rdb redis.UniversalClient, opts Options) *Registry {
	r := &Registry{rdb: rdb, prefix: opts.Prefix, max: opts.MaxDevicesPerUser, now: opts.Now}
	if r.prefix == "" {
		r.prefix = DefaultPrefix
	}
	if r.max <= 0 {
		r.max = DefaultMaxDevicesPerUser
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Register registers token as a device of userID, or refreshes it: its
// last-seen time becomes Options.Now, and reg's non-empty fields replace the
// stored platform and locale (empty ones keep them). Registering the same
// token for the same user again changes nothing else.
//
// A token belongs to one user at a time: if it belonged to another user, it
// moves, in the steps described in the package documentation. If the user
// now has more than Options.MaxDevicesPerUser devices, the least recently
// seen ones (never token itself) are unregistered.
//
// Invalid arguments give an error wrapping [ErrInvalidUserID],
// [ErrInvalidToken], [ErrInvalidPlatform] or [ErrInvalidLocale], and touch
// nothing. Other errors come from Redis; the call may then have taken effect
// in part (harmlessly, see the package documentation) and can be retried.
func (r *Registry) Register(ctx context.Context, userID, token string, reg Registration) error {
	if err := firstError(tencent.ValidateUserID(userID), ValidateToken(token),
		ValidatePlatform(reg.Platform), ValidateLocale(reg.Locale)); err != nil {
		return fmt.Errorf("register device: %w", err)
	}

	// Step 1: claim the owner key.
	res, err := claimScript.Run(ctx, r.rdb, []string{r.ownerKey(token)}, userID).StringSlice()
	if err != nil {
		return fmt.Errorf("register device: claim token: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("register device: claim token: unexpected reply %q", res)
	}
	old, gen := res[0], res[1]

	// Step 2: add to the user's devices, evicting beyond the maximum.
	evicted, err := addScript.Run(ctx, r.rdb, r.userKeys(userID),
		token, r.now().UnixMilli(), reg.Platform, reg.Locale, gen, r.max).StringSlice()
	if err != nil {
		return fmt.Errorf("register device: add to user: %w", err)
	}
	var errs []error
	for i := 0; i+1 < len(evicted); i += 2 {
		if err := releaseScript.Run(ctx, r.rdb, []string{r.ownerKey(evicted[i])}, userID, evicted[i+1]).Err(); err != nil {
			errs = append(errs, fmt.Errorf("register device: release evicted device: %w", err))
		}
	}

	// Step 3: remove from the previous owner's devices.
	if oldGen, oldUser, ok := parseOwner(old); ok && oldUser != userID {
		if err := pruneScript.Run(ctx, r.rdb, r.userKeys(oldUser), token, oldGen).Err(); err != nil {
			errs = append(errs, fmt.Errorf("register device: remove from previous owner: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Unregister removes token from userID's devices. If token belongs to
// userID, its owner key is deleted (compare-and-delete, so a concurrent move
// to another user wins). If it belongs to another user, that user's
// registration does not change; a stale entry of token in userID's own keys
// is removed. A token that is not registered is not an error.
//
// Invalid arguments give an error wrapping [ErrInvalidUserID] or
// [ErrInvalidToken] and touch nothing. Other errors come from Redis.
func (r *Registry) Unregister(ctx context.Context, userID, token string) error {
	if err := firstError(tencent.ValidateUserID(userID), ValidateToken(token)); err != nil {
		return fmt.Errorf("unregister device: %w", err)
	}
	res, err := releaseScript.Run(ctx, r.rdb, []string{r.ownerKey(token)}, userID, "").Slice()
	if err != nil {
		return fmt.Errorf("unregister device: release token: %w", err)
	}
	var bound string
	if len(res) == 2 {
		bound, _ = res[1].(string)
	}
	if bound == "" {
		return fmt.Errorf("unregister device: release token: unexpected reply %v", res)
	}
	// Entries newer than bound come from a registration that happened after
	// this unregistration (or from one that still owns the token): keep them.
	if err := pruneScript.Run(ctx, r.rdb, r.userKeys(userID), token, bound).Err(); err != nil {
		return fmt.Errorf("unregister device: remove from user: %w", err)
	}
	return nil
}

// List returns userID's devices, most recently seen first; a user without
// devices (also an unknown one) gets an empty, non-nil slice.
//
// Only tokens whose owner key names userID are listed. An entry left behind
// in userID's keys by an interrupted or concurrent move of its token to
// another user is left out and removed.
//
// An invalid userID gives an error wrapping [ErrInvalidUserID] and touches
// nothing. Other errors come from Redis.
func (r *Registry) List(ctx context.Context, userID string) ([]Device, error) {
	p := r.rdb.TxPipeline()
	q := r.QueueList(ctx, p, userID)
	if q.err == nil {
		_, _ = p.Exec(ctx) // errors are in q's commands
	}
	return q.Result(ctx)
}

// Redis returns the Registry's Redis client: a pipeline on it can carry
// [Registry.QueueList] together with other reads of the same Redis.
func (r *Registry) Redis() redis.UniversalClient { return r.rdb }

// ListQuery is a [Registry.List] whose first reads ride on a caller's
// pipeline, so that they share a round trip with other reads: queue it
// with [Registry.QueueList], run the pipeline, then call Result.
type ListQuery struct {
	r      *Registry
	user   string
	keys   []string
	err    error
	zs     *redis.ZSliceCmd
	hm     *redis.MapStringStringCmd
	owners []*redis.StringCmd // queued by QueueOwners; nil: Result reads them
}

// QueueList queues the reads of userID's devices on p (a transaction
// pipeline gives a consistent view; any pipeline will do, since
// [ListQuery.Result] checks every token's owner anyway). An invalid userID
// queues nothing and Result returns the error.
func (r *Registry) QueueList(ctx context.Context, p redis.Pipeliner, userID string) *ListQuery {
	q := &ListQuery{r: r, user: userID}
	if err := tencent.ValidateUserID(userID); err != nil {
		q.err = fmt.Errorf("list devices: %w", err)
		return q
	}
	q.keys = r.userKeys(userID)
	q.zs = p.ZRevRangeWithScores(ctx, q.keys[0], 0, -1)
	q.hm = p.HGetAll(ctx, q.keys[1])
	return q
}

// Err returns the error of q's reads (or of its invalid user id), once
// the pipeline holding q ran; Result returns it too.
func (q *ListQuery) Err() error {
	if q.err != nil {
		return q.err
	}
	if err := firstError(q.zs.Err(), q.hm.Err()); err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	return nil
}

// Listed returns how many entries userID's keys hold, once the pipeline
// holding q ran: an upper bound of how many devices Result returns. It is
// 0 when the reads failed: check Err first.
func (q *ListQuery) Listed() int {
	if q.Err() != nil {
		return 0
	}
	return len(q.zs.Val())
}

// QueueOwners queues, on p (on the Registry's Redis), the owner reads that
// Result would otherwise make in a round trip of its own; call it after
// the pipeline holding q ran, and Result after p ran.
func (q *ListQuery) QueueOwners(ctx context.Context, p redis.Pipeliner) {
	if q.Err() != nil {
		return
	}
	zs := q.zs.Val()
	q.owners = make([]*redis.StringCmd, len(zs))
	for i, z := range zs {
		tok, _ := z.Member.(string)
		q.owners[i] = p.Get(ctx, q.r.ownerKey(tok))
	}
}

// Result returns what [Registry.List] returns, once the pipeline holding
// q ran. It reads the tokens' owners (one more round trip, unless
// QueueOwners put it on another pipeline) and leaves out, and removes, the
// entries whose token belongs to someone else.
func (q *ListQuery) Result(ctx context.Context) ([]Device, error) {
	if err := q.Err(); err != nil {
		return nil, err
	}
	r, userID, keys := q.r, q.user, q.keys
	metas := q.hm.Val()
	zs := q.zs.Val()
	all := make([]Device, 0, len(zs))
	gens := make([]string, 0, len(zs))
	tokens := make([]string, 0, len(zs))
	for _, z := range zs {
		tok, _ := z.Member.(string)
		var m meta
		if raw, ok := metas[tok]; ok {
			// A corrupt entry shows as a device without platform and locale.
			_ = json.Unmarshal([]byte(raw), &m)
		}
		all = append(all, Device{
			Token:     tok,
			Platform:  m.Platform,
			Locale:    m.Locale,
			UpdatedAt: time.UnixMilli(int64(z.Score)).UTC(),
		})
		gens = append(gens, m.Gen)
		tokens = append(tokens, tok)
	}
	var owners map[string]string
	var err error
	if q.owners != nil {
		owners, err = r.parseOwners(tokens, q.owners)
	} else {
		owners, err = r.owners(ctx, tokens)
	}
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	devices := make([]Device, 0, len(all))
	for i, d := range all {
		if owners[d.Token] == userID {
			devices = append(devices, d)
			continue
		}
		gen := gens[i]
		if gen == "" {
			gen = "0"
		}
		if err := pruneScript.Run(ctx, r.rdb, keys, d.Token, gen).Err(); err != nil {
			return nil, fmt.Errorf("list devices: remove stale device: %w", err)
		}
	}
	return devices, nil
}

// Owners returns, for each of tokens that is registered, the user it
// belongs to (token -> user ID). Tokens that belong to no one are absent
// from the map, which is never nil. The worker calls it right before
// sending: a token whose owner is not the push's recipient must not be sent
// the push.
//
// An invalid token gives an error wrapping [ErrInvalidToken] and touches
// nothing. Other errors come from Redis.
func (r *Registry) Owners(ctx context.Context, tokens []string) (map[string]string, error) {
	for i, t := range tokens {
		if err := ValidateToken(t); err != nil {
			return nil, fmt.Errorf("look up device owners: token %d: %w", i, err)
		}
	}
	owners, err := r.owners(ctx, tokens)
	if err != nil {
		return nil, fmt.Errorf("look up device owners: %w", err)
	}
	return owners, nil
}

// owners is Owners without validation.
func (r *Registry) owners(ctx context.Context, tokens []string) (map[string]string, error) {
	if len(tokens) == 0 {
		return map[string]string{}, nil
	}
	cmds := make([]*redis.StringCmd, len(tokens))
	pipe := r.rdb.Pipeline()
	for i, t := range tokens {
		cmds[i] = pipe.Get(ctx, r.ownerKey(t))
	}
	_, _ = pipe.Exec(ctx) // errors are in cmds; redis.Nil there is "no owner"
	return r.parseOwners(tokens, cmds)
}

// parseOwners reads the answers of GETs of tokens' owner keys (see
// [Registry.owners]).
func (*Registry) parseOwners(tokens []string, cmds []*redis.StringCmd) (map[string]string, error) {
	owners := make(map[string]string, len(tokens))
	for i, c := range cmds {
		v, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, user, ok := parseOwner(v); ok {
			owners[tokens[i]] = user
		}
	}
	return owners, nil
}

// firstError returns the first non-nil of errs, or nil.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// meta is the JSON value of a token in a user's meta HASH, written by
// addScript (cjson).
type meta struct {
	Platform string `json:"platform,omitempty"`
	Locale   string `json:"locale,omitempty"`
	Gen      string `json:"gen,omitempty"`
}

// parseOwner splits an owner key's value "<gen>:<userID>". ok is false for
// "" and for values not in that form (which then name no owner).
func parseOwner(v string) (gen, user string, ok bool) {
	gen, user, ok = strings.Cut(v, ":")
	if !ok || user == "" {
		return "", "", false
	}
	if _, err := strconv.ParseUint(gen, 10, 64); err != nil {
		return "", "", false
	}
	return gen, user, true
}

// ownerKey is the owner key of token: prefix + "tok:" + the first 32 hex
// digits (128 bits) of its SHA-256.
func (r *Registry) ownerKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return r.prefix + "tok:" + hex.EncodeToString(sum[:16])
}

// userKeys are userID's devices ZSET and meta HASH, sharing the hash tag
// {u:<userID>}.
func (r *Registry) userKeys(userID string) []string {
	base := r.prefix + "{u:" + userID + "}:"
	return []string{base + "devices", base + "meta"}
}
