package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
	"github.com/followpush/followpush/history"
	"github.com/followpush/followpush/internal/spool"
	"github.com/followpush/followpush/preferences"
	"github.com/followpush/followpush/webhook"
)

// NewRegistry returns a Prometheus registry with the Go and process
// collectors: each program has its own, none is global.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Receiver is an assembled receiver: its HTTP handler and what must be
// closed after it stops serving.
type Receiver struct {
	// Handler serves the webhook, the device API, health and readiness,
	// and /metrics unless cfg.MetricsAddr moves it to MetricsHandler.
	Handler http.Handler
	// MetricsHandler serves GET /metrics (anything else: 404), for the
	// listener of cfg.MetricsAddr; nil when cfg.MetricsAddr is empty.
	MetricsHandler http.Handler
	spool          *spool.Spool
	drained        chan struct{}
}

// Close stops the spool drainer (its context must be done) and closes the
// spool, if any (not the shared Redis client).
func (r *Receiver) Close() error {
	if r.spool == nil {
		return nil
	}
	<-r.drained
	return r.spool.Close()
}

// NewReceiver assembles the receiver's HTTP handler over rdb. monitoring
// (asynqmon, see [Monitoring]) is mounted at /monitoring/ when not nil.
// /metrics is on Handler, or on MetricsHandler alone when cfg.MetricsAddr
// is set.
// With cfg.SpoolDir set it opens the spool and drains it into Redis in the
// background, cfg.SpoolDrainBatch events per step, until ctx is done.
func NewReceiver(ctx context.Context, cfg config.Receiver, rdb redis.UniversalClient, log *slog.Logger, reg *prometheus.Registry, monitoring http.Handler) (*Receiver, error) {
	rcv := &Receiver{}
	metrics := webhook.NewMetrics(reg)
	enq := webhook.NewAsynqEnqueuer(rdb, cfg.EnqueueConcurrency)
	enq.Retention = cfg.CompletedTaskRetention
	enq.Shards = cfg.FollowQueues
	var canceller webhook.Canceller = delivery.New(rdb, delivery.Options{Prefix: cfg.Redis.KeyPrefix, CancelTTL: delivery.UnfollowTTL(cfg.MaxEventAge)})
	var hist *history.Store // nil: FOLLOW_HISTORY=off
	if cfg.History.Enabled {
		hist = history.New(rdb, cfg.History.Options(cfg.Redis.KeyPrefix), history.NewMetrics(reg))
		enq.Journal = hist
		canceller = historyCanceller{canceller.(*delivery.Store), hist}
	}
	var sp webhook.Spool
	if cfg.SpoolDir != "" {
		s, err := spool.Open(spool.Options{Dir: cfg.SpoolDir, MaxBytes: cfg.SpoolMaxBytes})
		if err != nil {
			return nil, fmt.Errorf("open spool: %w", err)
		}
		if rec := s.Recovery(); rec != (spool.Recovery{}) {
			log.Warn("spool repaired at open", "torn_bytes", rec.TornBytes, "corrupt_bytes", rec.CorruptBytes, "position_reset", rec.PositionReset)
		}
		log.Info("spool open", "dir", cfg.SpoolDir, "pending", s.Len(), "max_bytes", cfg.SpoolMaxBytes, "drain_batch", cfg.SpoolDrainBatch)
		rcv.spool, sp = s, s
		rcv.drained = make(chan struct{})
		d := &webhook.Drainer{Spool: s, Enqueuer: enq, Canceller: canceller, Logger: log, Metrics: metrics, Batch: cfg.SpoolDrainBatch}
		go func() { defer close(rcv.drained); d.Run(ctx) }()
	}
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		rcv.MetricsHandler, metricsHandler = mux, nil
	}
	rcv.Handler = receiverRoutes(receiverParts{
		webhook: webhook.NewHandler(webhook.Options{
			AppIDs:            cfg.AppIDs,
			CallbackTokens:    cfg.CallbackTokens,
			RequestTimeWindow: cfg.RequestTimeWindow,
			MaxBodyBytes:      cfg.MaxBodyBytes,
			MaxFollows:        cfg.MaxFollows,
		}, webhook.Deps{Logger: log, Enqueuer: enq, Canceller: canceller, Spool: sp, Metrics: metrics}),
		devices: devices.NewAPI(devices.NewRegistry(rdb, devices.Options{
			Prefix: cfg.Redis.KeyPrefix, MaxDevicesPerUser: cfg.MaxDevicesPerUser,
		}), cfg.APIToken, log, reg),
		prefs:      preferences.NewAPI(preferences.NewStore(rdb, cfg.Redis.KeyPrefix), cfg.APIToken, log, reg),
		history:    history.NewAPI(hist, cfg.APIToken, log, reg).Handler(),
		ready:      readiness{ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }, log: log, spool: sp, maxBytes: cfg.SpoolMaxBytes, metrics: metrics},
		metrics:    metricsHandler,
		monitoring: monitoring,
	})
	return rcv, nil
}

// LogReceiverStart logs the receiver's security-relevant state: whether
// webhooks are signed and whether the device API is on. Secrets are never
// logged.
func LogReceiverStart(cfg config.Receiver, log *slog.Logger) {
	if len(cfg.CallbackTokens) == 0 {
		log.Warn("TENCENT_CALLBACK_TOKEN is not set: webhook signatures are NOT checked; anyone who knows the URL and SDKAppID can post follows")
	}
	if cfg.APIToken == "" {
		log.Warn("API_TOKEN is not set: the device API answers 503")
	}
	tokens := "none"
	if _, one := cfg.CallbackTokens[""]; one {
		tokens = "one for every app"
	} else if len(cfg.CallbackTokens) > 0 {
		tokens = "one per app"
	}
	log.Info("receiver configured", "sdkappids", cfg.AppIDs, "signed_webhooks", len(cfg.CallbackTokens) > 0, "callback_tokens", tokens,
		"device_api", cfg.APIToken != "", "redis_mode", cfg.Redis.Mode())
}

// historyCanceller records unfollows with their history entries in the
// same pipeline (FOLLOW_HISTORY=on).
type historyCanceller struct {
	store *delivery.Store
	hist  *history.Store
}

// Cancel records the unfollows (delivery.Store.Cancel) and their history
// entries, whose failure is counted, not returned.
func (c historyCanceller) Cancel(ctx context.Context, app, from string, to []string, eventTime int64) error {
	done := func() {}
	err := c.store.CancelAlso(ctx, app, from, to, eventTime, func(p redis.Pipeliner) {
		done = c.hist.QueueUnfollows(ctx, p, from, to, eventTime)
	})
	done()
	return err
}
