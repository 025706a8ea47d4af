// Command standalone is followpush in one process for a first try: the
// receiver and a worker sharing one Redis. With no REDIS_URL it runs an
// embedded in-memory Redis (miniredis); with no FCM settings its pushes go
// to the log. It listens on 127.0.0.1:8080 and prints a copy-paste
// walkthrough at start. `standalone -h` lists its settings.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/followpush/followpush/config"
	"github.com/followpush/followpush/internal/app"
	"github.com/followpush/followpush/webhook"
)

func main() { app.Main(run) }

func usage(w io.Writer) {
	config.PrintUsage(w, config.ProgramStandalone, "standalone: receiver and worker in one process, for a first try (embedded Redis, pushes to the log).")
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if err := app.ParseFlags(args, stdout, usage); err != nil {
		return err
	}
	cfg, err := config.LoadStandalone(getenv)
	if err != nil {
		return app.BadConfig(err)
	}
	log, flushLogs := app.StartLogging(stderr, cfg.Receiver.LogLevel)
	defer flushLogs()

	if cfg.EmbeddedRedis {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start embedded redis: %w", err)
		}
		defer m.Close()
		// miniredis expires keys only when told time has passed.
		go advanceClock(ctx, m)
		rd, err := cfg.Receiver.Redis.WithURL("redis://" + m.Addr() + "/0")
		if err != nil {
			return err
		}
		cfg.Receiver.Redis, cfg.Worker.Redis = rd, rd
		log.Info("embedded in-memory Redis started: nothing survives a restart", "addr", m.Addr())
	}
	rdb := cfg.Receiver.Redis.Client()
	defer rdb.Close()
	if !cfg.EmbeddedRedis {
		app.CheckRedisSettings(ctx, rdb, log)
	}
	app.LogReceiverStart(cfg.Receiver, log)

	sender, err := app.NewSender(ctx, cfg.Worker, log)
	if err != nil {
		return err
	}
	reg := app.NewRegistry()
	w, err := app.NewWorker(cfg.Worker, rdb, sender, log, reg)
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Shutdown()

	var monitoring http.Handler
	switch rc := cfg.Receiver; {
	case rc.MonitoringUser != "":
		monitoring = app.Monitoring(rdb, rc.MonitoringUser, rc.MonitoringPassword, log)
	case config.LoopbackOnly(rc.ListenAddr):
		monitoring = app.Monitoring(rdb, "", "", log) // loopback only: no auth, loopback Host names only
	default:
		log.Warn("asynqmon not mounted: LISTEN_ADDR is not loopback and MONITORING_USER is unset")
	}
	rcv, err := app.NewReceiver(ctx, cfg.Receiver, rdb, log, reg, monitoring)
	if err != nil {
		return err
	}
	defer rcv.Close()
	ln, err := app.Listen(cfg.Receiver.ListenAddr, "http", log)
	if err != nil {
		return err
	}
	handler := rcv.Handler
	if cfg.Receiver.APIToken == config.DevAPIToken {
		// The dev token is well known: keep the device API to loopback
		// Host names, so that a page re-pointed at 127.0.0.1 by its DNS
		// (DNS rebinding) cannot use it.
		handler = app.RefuseForeignHosts(handler, "/v1/")
	}
	printWalkthrough(stdout, cfg, "http://"+ln.Addr().String())
	err = app.Serve(ctx, webhook.Listener(ln), "http", handler, cfg.Receiver.ShutdownTimeout, log)
	log.Info("standalone stopping")
	return err
}

// advanceClock moves miniredis's clock with the wall clock, so TTLs expire.
func advanceClock(ctx context.Context, m *miniredis.Miniredis) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.FastForward(now.Sub(last))
			last = now
		}
	}
}

func printWalkthrough(w io.Writer, cfg config.Standalone, base string) {
	rc := cfg.Receiver
	token := "$API_TOKEN"
	if cfg.GeneratedAPIToken {
		token = rc.APIToken
	}
	backend := "the log (no FCM settings)"
	if cfg.Worker.FCMConfigured() {
		backend = "FCM"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nfollowpush standalone is up on %s\n", base)
	fmt.Fprintf(&b, "  Redis:   %s\n", map[bool]string{true: "embedded, in memory", false: cfg.Receiver.Redis.Mode()}[cfg.EmbeddedRedis])
	fmt.Fprintf(&b, "  pushes:  to %s\n", backend)
	if cfg.GeneratedAPIToken {
		fmt.Fprintf(&b, "  API_TOKEN (dev; set API_TOKEN to choose one): %s\n", rc.APIToken)
	}
	if rc.CallbackToken == "" {
		fmt.Fprintf(&b, "  webhook signatures: NOT checked (TENCENT_CALLBACK_TOKEN unset)\n")
	} else {
		fmt.Fprintf(&b, "  webhook signatures: checked (export TENCENT_CALLBACK_TOKEN in your shell for the commands below)\n")
	}
	fmt.Fprintf(&b, "\n1. Register a device for user UserID_002:\n\n")
	fmt.Fprintf(&b, "  curl -sS -X PUT -H \"Authorization: Bearer %s\" -d '{\"platform\":\"android\"}' \\\n    %s/v1/users/UserID_002/devices/demo-token-0123456789\n", token, base)
	fmt.Fprintf(&b, "\n2. Post a follow webhook (UserID_001 follows UserID_002), with a current EventTime:\n\n")
	query := "SdkAppid=" + rc.AppIDs[0] + "&CallbackCommand=Follow.CallbackAfterFollowAdd&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI"
	if rc.CallbackToken == "" {
		fmt.Fprintf(&b, "  curl -sS -X POST '%s/webhook?%s' \\\n", base, query)
	} else {
		fmt.Fprintf(&b, "  RT=$(date +%%s); SIGN=$(printf '%%s%%s' \"$TENCENT_CALLBACK_TOKEN\" \"$RT\" | sha256sum | cut -d' ' -f1)\n")
		fmt.Fprintf(&b, "  curl -sS -X POST \"%s/webhook?%s&RequestTime=$RT&Sign=$SIGN\" \\\n", base, query)
	}
	fmt.Fprintf(&b, "    -d '{\"CallbackCommand\":\"Follow.CallbackAfterFollowAdd\",\"From_Account\":\"UserID_001\",\"FollowList\":[{\"To_Account\":\"UserID_002\"}],\"EventTime\":'$(date +%%s%%3N)'}'\n")
	fmt.Fprintf(&b, "\n3. Watch this log for a line with \"msg\":\"push sent\" naming UserID_001 and UserID_002.\n")
	fmt.Fprintf(&b, "\nQueues (asynqmon): %s/monitoring/\n\n", base)
	fmt.Fprint(w, b.String())
}
