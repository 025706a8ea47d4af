package history

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the history's Prometheus metrics.
type Metrics struct {
	failures prometheus.Counter
	requests *prometheus.CounterVec
}

// NewMetrics registers the history's metrics with reg (nil: a private
// registry, i.e. not exported):
//
//	followpush_history_write_failures_total        history entries not written (Redis refused or failed, or the worker's
//	                                               write buffer was full); never retried, never failing a webhook or push
//	followpush_history_api_requests_total{method,code}  history API requests, by method and HTTP status
//
// every series at 0 from the start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	m := &Metrics{
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "followpush_history_write_failures_total",
			Help: "Follow history entries that could not be written (dropped, not retried).",
		}),
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "followpush_history_api_requests_total",
			Help: "Follow history API requests, by method and HTTP status.",
		}, []string{"method", "code"}),
	}
	for _, code := range []int{http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusServiceUnavailable} {
		m.requests.WithLabelValues(http.MethodGet, strconv.Itoa(code))
	}
	return m
}
