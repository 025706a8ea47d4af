package app

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/delivery"
	"github.com/followpush/followpush/devices"
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
	Handler http.Handler
	client  *asynq.Client
}

// Close releases the receiver's asynq client (not the shared Redis client).
func (r *Receiver) Close() error { return r.client.Close() }

// NewReceiver assembles the receiver's HTTP handler over rdb. monitoring
// (asynqmon, see [Monitoring]) is mounted at /monitoring/ when not nil.
func NewReceiver(cfg config.Receiver, rdb redis.UniversalClient, log *slog.Logger, reg *prometheus.Registry, monitoring http.Handler) *Receiver {
	client := asynq.NewClientFromRedisClient(rdb)
	h := webhook.NewServer(webhook.Options{
		AppIDs:            cfg.AppIDs,
		CallbackToken:     cfg.CallbackToken,
		RequestTimeWindow: cfg.RequestTimeWindow,
		APIToken:          cfg.APIToken,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		MaxFollows:        cfg.MaxFollows,
	}, webhook.Deps{
		Logger:    log,
		Enqueuer:  webhook.NewAsynqEnqueuer(client, cfg.EnqueueConcurrency),
		Canceller: delivery.New(rdb, delivery.Options{Prefix: cfg.Redis.KeyPrefix, CancelTTL: cfg.MaxEventAge}),
		Devices: devices.NewRegistry(rdb, devices.Options{
			Prefix: cfg.Redis.KeyPrefix, MaxDevicesPerUser: cfg.MaxDevicesPerUser,
		}),
		Ready:          webhook.PingFunc(func(ctx context.Context) error { return rdb.Ping(ctx).Err() }),
		Metrics:        webhook.NewMetrics(reg),
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Monitoring:     monitoring,
	})
	return &Receiver{Handler: h, client: client}
}

// LogReceiverStart logs the receiver's security-relevant state: whether
// webhooks are signed and whether the device API is on. Secrets are never
// logged.
func LogReceiverStart(cfg config.Receiver, log *slog.Logger) {
	if cfg.CallbackToken == "" {
		log.Warn("TENCENT_CALLBACK_TOKEN is not set: webhook signatures are NOT checked; anyone who knows the URL and SDKAppID can post follows")
	}
	if cfg.APIToken == "" {
		log.Warn("API_TOKEN is not set: the device API answers 503")
	}
	log.Info("receiver configured", "sdkappids", cfg.AppIDs, "signed_webhooks", cfg.CallbackToken != "",
		"device_api", cfg.APIToken != "", "redis_mode", cfg.Redis.Mode())
}
