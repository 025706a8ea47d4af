package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/internal/rediskey"
	"github.com/followpush/followpush/tencent"
)

// DefaultDisplayNameCacheTTL is TencentConfig.CacheTTL's default.
const DefaultDisplayNameCacheTTL = time.Hour

// NameResolver returns the display names of UserIDs of app: every UserID
// asked for is in the map, mapped to itself when it has no display name or
// cannot be resolved. It never fails: a push names the follower by UserID
// rather than not going out. [*TencentProfiles] implements it.
type NameResolver interface {
	// DisplayNames maps each of userIDs to its display name, or to itself.
	DisplayNames(ctx context.Context, appID string, userIDs []string) map[string]string
}

// TencentConfig configures [TencentProfiles].
type TencentConfig struct {
	// BaseURL is the Tencent Cloud Chat REST API domain of the app's region,
	// e.g. "https://adminapisgp.im.qcloud.com" (Singapore) or
	// "https://console.tim.qq.com" (China); required.
	BaseURL string
	// Identifier is the app admin account (default
	// tencent.DefaultIdentifier).
	Identifier string
	// UserSigs are the admin account's UserSig per SDKAppID; the key "" serves
	// any app not listed. Never logged.
	UserSigs map[string]string
	// SecretKeys are the apps' secret keys per SDKAppID (the key "" serves
	// any app not listed): for these apps the admin's UserSig is made here
	// and renewed (see tencent.Signer), valid UserSigValidity. An app's own
	// entry, in either map, wins over an entry "" of the other. UserSigs or
	// SecretKeys is required. Never logged.
	SecretKeys map[string]string
	// UserSigValidity is how long a UserSig made from a secret key is valid
	// (default tencent.DefaultValidity, 24 h; renewed after half of it).
	UserSigValidity time.Duration
	// CacheTTL is how long a display name (or its absence) is cached in
	// Redis (default [DefaultDisplayNameCacheTTL]).
	CacheTTL time.Duration
	// KeyPrefix starts the cache keys, "{prefix}nick:<app>:<UserID>"
	// (default "followpush:").
	KeyPrefix string
	// Timeout bounds one portrait_get call (default
	// tencent.DefaultRESTTimeout).
	Timeout time.Duration
	// FailurePause: after a failed call (timeout, HTTP error, expired
	// UserSig...), calls for the same SDKAppID are skipped for this long and
	// followers not in the cache are named by UserID, so that a slow or
	// down API does not slow every push (default 30 s). Then one call tries
	// again; its success resumes calls, its failure pauses them again. The
	// pause is per process: each worker finds out on its own.
	FailurePause time.Duration
	// HTTPClient sends the calls (default: a client with Timeout).
	HTTPClient *http.Client
	// Now is the clock of FailurePause (default time.Now).
	Now func() time.Time
}

// TencentProfiles resolves display names (the nickname,
// Tag_Profile_IM_Nick) through Tencent Cloud Chat's REST API
// v4/profile/portrait_get ([tencent.Client]), caching them in Redis. It is
// safe for concurrent use.
type TencentProfiles struct {
	cfg    TencentConfig
	rdb    redis.UniversalClient
	client *tencent.Client
	log    *slog.Logger

	mu     sync.Mutex
	paused map[string]time.Time // SDKAppID -> calls skipped until
}

// NewTencentProfiles returns a resolver over cfg, caching in rdb and
// logging failures (at warn level, without the UserSig) to log. It returns
// an error when BaseURL is missing, or both UserSigs and SecretKeys are.
func NewTencentProfiles(cfg TencentConfig, rdb redis.UniversalClient, log *slog.Logger) (*TencentProfiles, error) {
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultDisplayNameCacheTTL
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = rediskey.DefaultPrefix
	}
	if cfg.FailurePause <= 0 {
		cfg.FailurePause = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client, err := tencent.NewClient(tencent.ClientConfig{
		BaseURL: cfg.BaseURL, Identifier: cfg.Identifier, UserSigs: cfg.UserSigs, SecretKeys: cfg.SecretKeys,
		UserSigValidity: cfg.UserSigValidity, Timeout: cfg.Timeout, HTTPClient: cfg.HTTPClient, Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("display names: %w", err)
	}
	return &TencentProfiles{cfg: cfg, rdb: rdb, client: client, log: log, paused: map[string]time.Time{}}, nil
}

// callAllowed reports whether a portrait_get call for app may go out: not
// while calls are paused after a failure. Once the pause is over, it lets
// one caller through and keeps the others out for another pause, so that
// one call, not all of them, finds out whether the API is back.
func (p *TencentProfiles) callAllowed(app string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, paused := p.paused[app]
	if !paused {
		return true
	}
	now := p.cfg.Now()
	if now.Before(until) {
		return false
	}
	p.paused[app] = now.Add(p.cfg.FailurePause)
	return true
}

// callDone records the outcome of a call for app: a failure pauses calls,
// a success resumes them.
func (p *TencentProfiles) callDone(app string, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if failed {
		p.paused[app] = p.cfg.Now().Add(p.cfg.FailurePause)
	} else {
		delete(p.paused, app)
	}
}

func (p *TencentProfiles) cacheKey(app, user string) string {
	return p.cfg.KeyPrefix + "nick:" + app + ":" + user
}

// DisplayNames implements [NameResolver]: cached names first, the rest in
// one portrait_get call per 100 users. A user without a nickname, or one
// Tencent does not know, is cached as having none; a failed call is not
// cached, and pauses calls for the app ([TencentConfig.FailurePause]):
// meanwhile users not in the cache are named by UserID at once.
func (p *TencentProfiles) DisplayNames(ctx context.Context, appID string, userIDs []string) map[string]string {
	out := make(map[string]string, len(userIDs))
	for _, id := range userIDs {
		out[id] = id
	}
	if len(userIDs) == 0 {
		return out
	}
	cmds := make([]*redis.StringCmd, len(userIDs))
	_, err := p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, id := range userIDs {
			cmds[i] = pl.Get(ctx, p.cacheKey(appID, id))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		p.log.Warn("display name cache unavailable", "task_id", taskID(ctx), "err", err)
	}
	var missing []string
	for i, id := range userIDs {
		name, err := cmds[i].Result()
		switch {
		case err == nil:
			if name != "" {
				out[id] = name
			}
		default:
			missing = append(missing, id)
		}
	}
	for len(missing) > 0 && p.callAllowed(appID) {
		batch := missing[:min(len(missing), tencent.PortraitGetMax)]
		missing = missing[len(batch):]
		names, err := p.client.PortraitGet(ctx, appID, batch)
		var terr *tencent.APIError
		if errors.As(err, &terr) && terr.Code == tencent.CodeAccountNotFound {
			// One unknown account fails the whole call: ask for each alone,
			// and remember the unknown one as having no name.
			names, err = map[string]string{}, nil
			for _, id := range batch {
				one, oneErr := p.client.PortraitGet(ctx, appID, []string{id})
				switch {
				case errors.As(oneErr, &terr) && terr.Code == tencent.CodeAccountNotFound:
					names[id] = ""
				case oneErr != nil:
					err = oneErr
				default:
					names[id] = one[id]
				}
			}
		}
		if err != nil {
			paused := time.Duration(0)
			if ctx.Err() == nil { // the API's failure, not the caller giving up
				p.callDone(appID, true)
				paused = p.cfg.FailurePause
			}
			p.log.Warn("display names not resolved: naming followers by UserID", "task_id", taskID(ctx), "sdkappid", appID, "err", err,
				"paused", paused.String())
			continue
		}
		p.callDone(appID, false)
		_, err = p.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, id := range batch {
				pl.Set(ctx, p.cacheKey(appID, id), names[id], p.cfg.CacheTTL)
			}
			return nil
		})
		if err != nil {
			p.log.Warn("could not cache display names", "task_id", taskID(ctx), "err", err)
		}
		for id, name := range names {
			if name != "" {
				out[id] = name
			}
		}
	}
	return out
}
