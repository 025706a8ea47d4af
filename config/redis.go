package config

import (
	"crypto/tls"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis says how to reach Redis: exactly one of URL, ClusterAddrs or
// SentinelAddrs is in force (cluster wins over sentinel, both over URL).
type Redis struct {
	// URL is REDIS_URL, parsed. Empty in standalone when the embedded Redis
	// is to be used.
	URL string
	// ClusterAddrs is REDIS_CLUSTER_ADDRS: seed nodes of a Redis Cluster.
	ClusterAddrs []string
	// SentinelAddrs and SentinelMaster are REDIS_SENTINEL_ADDRS and
	// REDIS_SENTINEL_MASTER.
	SentinelAddrs []string
	// SentinelMaster is the master name the sentinels watch.
	SentinelMaster string
	// Username and Password (REDIS_USERNAME, REDIS_PASSWORD) serve cluster
	// and sentinel modes; REDIS_URL carries its own.
	Username string
	// Password is never logged.
	Password string
	// KeyPrefix starts every key followpush itself writes (default "followpush:").
	KeyPrefix string

	// PoolSize is the connection pool size per node (default 64; workers
	// size it from WORKER_CONCURRENCY).
	PoolSize int

	url *redis.Options // parsed URL, when URL is in force
}

func (r Redis) poolSize() int {
	if r.PoolSize > 0 {
		return r.PoolSize
	}
	return 64
}

// Mode is "cluster", "sentinel", "url" or "embedded".
func (r Redis) Mode() string {
	switch {
	case len(r.ClusterAddrs) > 0:
		return "cluster"
	case len(r.SentinelAddrs) > 0:
		return "sentinel"
	case r.URL != "":
		return "url"
	}
	return "embedded"
}

// Client returns a go-redis client for the configured mode. It does not
// connect: an unreachable Redis shows up on first use, not here.
func (r Redis) Client() redis.UniversalClient {
	common := func(o *redis.UniversalOptions) *redis.UniversalOptions {
		o.DialTimeout = 2 * time.Second
		o.ReadTimeout = 3 * time.Second
		o.WriteTimeout = 3 * time.Second
		o.PoolSize, o.MinIdleConns = r.poolSize(), 4
		o.MaxRetries, o.MaxRetryBackoff = 2, 128*time.Millisecond
		// Without this go-redis ignores context deadlines and a stalled
		// Redis holds a webhook for ReadTimeout, past Tencent's 2 s.
		o.ContextTimeoutEnabled = true
		return o
	}
	switch r.Mode() {
	case "cluster":
		return redis.NewClusterClient(common(&redis.UniversalOptions{
			Addrs: r.ClusterAddrs, Username: r.Username, Password: r.Password,
		}).Cluster())
	case "sentinel":
		return redis.NewFailoverClient(common(&redis.UniversalOptions{
			Addrs: r.SentinelAddrs, MasterName: r.SentinelMaster,
			Username: r.Username, Password: r.Password,
		}).Failover())
	}
	o := *r.url
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 2*time.Second, 3*time.Second, 3*time.Second
	o.PoolSize, o.MinIdleConns = r.poolSize(), 4
	o.MaxRetries, o.MaxRetryBackoff = 2, 128*time.Millisecond
	o.ContextTimeoutEnabled = true
	if o.TLSConfig != nil {
		o.TLSConfig = o.TLSConfig.Clone()
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return redis.NewClient(&o)
}

// WithURL returns r pointed at the Redis URL u (used by standalone for its
// embedded server). u must parse.
func (r Redis) WithURL(u string) (Redis, error) {
	o, err := redis.ParseURL(u)
	if err != nil {
		return r, err
	}
	r.URL, r.url = u, o
	r.ClusterAddrs, r.SentinelAddrs = nil, nil
	return r, nil
}

func (l *loader) redis(urlDefault string) Redis {
	r := Redis{
		URL:            l.raw("REDIS_URL", urlDefault),
		ClusterAddrs:   l.list("REDIS_CLUSTER_ADDRS"),
		SentinelAddrs:  l.list("REDIS_SENTINEL_ADDRS"),
		SentinelMaster: l.raw("REDIS_SENTINEL_MASTER", ""),
		Username:       l.raw("REDIS_USERNAME", ""),
		Password:       l.raw("REDIS_PASSWORD", ""),
		KeyPrefix:      l.raw("REDIS_KEY_PREFIX", DefaultKeyPrefix),
	}
	for _, a := range append(append([]string{}, r.ClusterAddrs...), r.SentinelAddrs...) {
		if _, _, err := splitHostPort(a); err != nil {
			name := "REDIS_CLUSTER_ADDRS"
			if !contains(r.ClusterAddrs, a) {
				name = "REDIS_SENTINEL_ADDRS"
			}
			l.fail(name, "%q is not host:port", a)
		}
	}
	switch {
	case len(r.ClusterAddrs) > 0 && (len(r.SentinelAddrs) > 0 || r.SentinelMaster != ""):
		l.fail("REDIS_CLUSTER_ADDRS", "cannot be combined with REDIS_SENTINEL_ADDRS/REDIS_SENTINEL_MASTER")
	case len(r.SentinelAddrs) > 0 && r.SentinelMaster == "":
		l.fail("REDIS_SENTINEL_MASTER", "required when REDIS_SENTINEL_ADDRS is set")
	case len(r.SentinelAddrs) == 0 && r.SentinelMaster != "":
		l.fail("REDIS_SENTINEL_ADDRS", "required when REDIS_SENTINEL_MASTER is set")
	}
	if r.Mode() == "url" {
		o, err := redis.ParseURL(r.URL)
		if err != nil {
			l.fail("REDIS_URL", "%v (want redis://[user:pass@]host:port/db or rediss://...)", redactURLError(err, r.URL))
		}
		r.url = o
	}
	if r.KeyPrefix == "" || len(r.KeyPrefix) > 64 {
		l.fail("REDIS_KEY_PREFIX", "must be 1 to 64 bytes")
	}
	return r
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
