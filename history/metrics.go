package history

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the history's Prometheus metrics.
type Metrics struct {
	failures prometheus.Counter
}

// NewMetrics registers the history's write metric with reg (nil: a
// private registry, i.e. not exported), at 0 from the start:
//
//	followpush_history_write_failures_total   history entries not written (Redis refused or failed, or the worker's
//	                                          write buffer was full); never retried, never failing a webhook or push
//
// The receiver and the worker of one standalone process share it: when
// reg has it already, that one is used.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Metrics{failures: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "followpush_history_write_failures_total",
		Help: "Follow history entries that could not be written (dropped, not retried).",
	}))}
}

// newRequests registers the history API's request counter with reg (nil:
// not exported); [restapi.NewGate] shows its statuses at 0.
func newRequests(reg prometheus.Registerer) *prometheus.CounterVec {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "followpush_history_api_requests_total",
		Help: "Follow history API requests, by method and HTTP status.",
	}, []string{"method", "code"}))
}

// register registers c with reg, or returns the collector reg has
// already under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
