// Command receiver is followpush's stateless HTTP front: it authenticates
// Tencent Cloud Chat webhooks, stores one asynq task per followed user in
// Redis before answering, and serves the device-registration API. Run as
// many copies as you like behind a load balancer. `receiver -h` lists its
// settings.
package main

import (
	"context"
	"io"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/app"
	"github.com/followpush/followpush/internal/httpserve"
	"github.com/followpush/followpush/internal/monitoring"
)

func main() { app.Main(run) }

var program = app.Program[config.Receiver]{
	Name:     config.ProgramReceiver,
	Summary:  "receiver: Tencent Cloud Chat follow webhooks in, asynq tasks out; device API.",
	Load:     config.LoadReceiver,
	LogLevel: func(c config.Receiver) string { return c.LogLevel },
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, log, flushLogs, err := program.Start(args, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	defer flushLogs()
	rdb := cfg.Redis.Client()
	defer rdb.Close()
	app.CheckRedisSettings(ctx, rdb, log)
	app.LogReceiverStart(cfg, log)

	var ui http.Handler
	if cfg.MonitoringUser != "" {
		ui = monitoring.Handler(rdb, cfg.MonitoringUser, cfg.MonitoringPassword, log)
	}
	rcv, err := app.NewReceiver(ctx, cfg, rdb, log, app.NewRegistry(), ui)
	if err != nil {
		return err
	}
	defer rcv.Close()
	ln, err := httpserve.Listen(cfg.ListenAddr, "http", log)
	if err != nil {
		return err
	}
	// The webhook's listener and, with METRICS_ADDR, the metrics one: both
	// stop on SIGTERM, and both stop when either fails.
	g, gctx := errgroup.WithContext(ctx)
	if cfg.MetricsAddr != "" {
		mln, err := httpserve.Listen(cfg.MetricsAddr, "metrics", log)
		if err != nil {
			ln.Close()
			return err
		}
		g.Go(func() error {
			return httpserve.Serve(gctx, mln, "metrics", rcv.MetricsHandler, cfg.ShutdownTimeout, log)
		})
	}
	g.Go(func() error {
		return httpserve.Serve(gctx, app.Listener(ln), "http", rcv.Handler, cfg.ShutdownTimeout, log)
	})
	err = g.Wait()
	log.Info("receiver stopped")
	return err
}
