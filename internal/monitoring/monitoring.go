package monitoring

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
)

// Path is where asynqmon is mounted on the receiver and standalone.
const Path = "/monitoring"

// sharedConn hands an existing go-redis client to asynq/asynqmon, which take
// a RedisConnOpt. Whoever receives it must not close it.
type sharedConn struct{ c redis.UniversalClient }

func (s sharedConn) MakeRedisClient() any { return s.c }

// Handler returns asynqmon's UI and API rooted at [Path] over
// rdb, behind HTTP basic authentication when user is not empty. Writes
// from other sites are refused (403): an unsafe method (POST, DELETE...)
// whose Origin or Sec-Fetch-Site header says a page of another site sent
// it, as a form that pauses the queue would (see refuseCrossSiteWrites).
// Without a user (standalone on loopback) there is no authentication, so
// every request must also name a loopback Host (see [RefuseForeignHosts]).
// Refusals are logged to log.
func Handler(rdb redis.UniversalClient, user, password string, log *slog.Logger) http.Handler {
	ui := asynqmon.New(asynqmon.Options{RootPath: Path, RedisConnOpt: sharedConn{rdb}})
	if user == "" {
		return RefuseForeignHosts(refuseCrossSiteWrites(ui, log), "")
	}
	guarded := refuseCrossSiteWrites(ui, log)
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="followpush monitoring", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}
