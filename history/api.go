package history

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/followpush/followpush/internal/restapi"
	"github.com/followpush/followpush/tencent"
)

// API is the history's HTTP API, which the receiver serves for the app
// backend:
//
//	GET /v1/users/{userID}/notifications?from=<UserID>&limit=50   200 [Answer]
//
// from (optional) keeps only what is about that follower; limit is 1 to
// [MaxLimit] items ([DefaultLimit] when absent). It needs the API token
// ([restapi.Bearer]) and answers errors as the device API does
// ({"error": "..."}): a bad userID, from or limit 400, Redis failing 503,
// and 503 when the history is off (FOLLOW_HISTORY=off).
type API struct {
	store *Store
	log   *slog.Logger
	gate  restapi.Gate
}

// NewAPI returns the API over store (nil: the history is off, every
// request that passes the token is answered 503), guarded by token. It
// registers with reg (nil: not exported), with the statuses the API gives
// itself at 0:
//
//	followpush_history_api_requests_total{method,code}   history API requests, by method and HTTP status
func NewAPI(store *Store, token string, log *slog.Logger, reg prometheus.Registerer) *API {
	return &API{store: store, log: log, gate: restapi.NewGate(newRequests(reg), token, map[string]int{http.MethodGet: http.StatusOK})}
}

// Handler is the route's handler: counted, behind the API token.
func (a *API) Handler() http.Handler {
	return a.gate.Guard(a.serve)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("userID")
	if err := tencent.ValidateUserID(user); err != nil {
		restapi.WriteError(w, http.StatusBadRequest, "userID: "+err.Error())
		return
	}
	q := r.URL.Query()
	from := ""
	switch vs := q["from"]; len(vs) {
	case 0:
	case 1:
		from = vs[0]
		if err := tencent.ValidateUserID(from); err != nil {
			restapi.WriteError(w, http.StatusBadRequest, "from: "+err.Error())
			return
		}
	default:
		restapi.WriteError(w, http.StatusBadRequest, "from: given more than once")
		return
	}
	limit := DefaultLimit
	switch vs := q["limit"]; len(vs) {
	case 0:
	case 1:
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > MaxLimit {
			restapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit: want a whole number from 1 to %d", MaxLimit))
			return
		}
		limit = n
	default:
		restapi.WriteError(w, http.StatusBadRequest, "limit: given more than once")
		return
	}
	if a.store == nil {
		restapi.WriteError(w, http.StatusServiceUnavailable, "follow history is off (FOLLOW_HISTORY=off)")
		return
	}
	ans, err := a.store.Read(r.Context(), user, from, limit)
	if err != nil {
		a.log.Error("history API", "err", err)
		restapi.WriteError(w, http.StatusServiceUnavailable, "history store unavailable")
		return
	}
	restapi.WriteJSON(w, http.StatusOK, ans)
}
