// Command worker sends followpush's pushes: an asynq server that takes
// follow tasks from Redis, looks up the followed user's devices and sends
// FCM messages through firebase-admin-go, retrying what is transient and
// pruning dead tokens. Run as many processes as the load needs. `worker -h`
// lists its settings.
package main

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/app"
	"github.com/followpush/followpush/internal/httpserve"
	"github.com/followpush/followpush/internal/queuemetrics"
)

func main() { app.Main(run) }

var program = app.Program[config.Worker]{
	Name:     config.ProgramWorker,
	Summary:  "worker: follow tasks from Redis in, FCM pushes out.",
	Load:     config.LoadWorker,
	LogLevel: func(c config.Worker) string { return c.LogLevel },
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

	sender, err := app.NewSender(ctx, cfg, log)
	if err != nil {
		return err
	}
	reg := app.NewRegistry()
	queuemetrics.Register(reg, rdb)
	w, err := app.NewWorker(cfg, rdb, sender, log, reg)
	if err != nil {
		return err
	}
	ln, err := httpserve.Listen(cfg.MetricsAddr, "metrics", log)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		ln.Close()
		return err
	}
	// The worker stops on SIGTERM, or when its metrics server fails (as
	// the receiver stops when any of its servers fails).
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return httpserve.Serve(gctx, ln, "metrics", app.OpsHandler(reg, rdb, cfg.Pprof, log), cfg.ShutdownTimeout, log)
	})
	log.Info("worker started", "concurrency", cfg.Concurrency, "follow_queues", w.Queues, "poll_interval", cfg.PollInterval.String(), "redis_mode", cfg.Redis.Mode())
	<-gctx.Done()
	log.Info("shutting down: no new tasks; in-flight tasks may finish", "timeout", cfg.ShutdownTimeout.String())
	w.Shutdown()
	err = g.Wait()
	log.Info("worker stopped")
	return err
}
