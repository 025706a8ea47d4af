// Command standalone is followpush in one process for a first try: the
// receiver and a worker sharing one Redis. With no REDIS_URL it runs an
// embedded in-memory Redis (miniredis); with no FCM settings its pushes go
// to the log. It listens on 127.0.0.1:8080 and prints, on stdout, a
// walkthrough that can be pasted into a shell as a whole (the log goes to
// stderr). `standalone -h` lists its settings.
//
// The first `go run ./cmd/standalone` downloads the Go toolchain go.mod
// names (when the installed Go is older) and the modules, then compiles:
// about 5 minutes on 2 cores; later runs start in seconds.
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
	"github.com/followpush/followpush/internal/httpserve"
	"github.com/followpush/followpush/internal/monitoring"
)

func main() { app.Main(run) }

var program = app.Program[config.Standalone]{
	Name:     config.ProgramStandalone,
	Summary:  "standalone: receiver and worker in one process, for a first try (embedded Redis, pushes to the log).",
	Load:     config.LoadStandalone,
	LogLevel: func(c config.Standalone) string { return c.Receiver.LogLevel },
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, log, flushLogs, err := program.Start(args, getenv, stdout, stderr)
	if err != nil {
		return err
	}
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

	var ui http.Handler
	switch rc := cfg.Receiver; {
	case rc.MonitoringUser != "":
		ui = monitoring.Handler(rdb, rc.MonitoringUser, rc.MonitoringPassword, log)
	case config.LoopbackOnly(rc.ListenAddr):
		ui = monitoring.Handler(rdb, "", "", log) // loopback only: no auth, loopback Host names only
	default:
		log.Warn("asynqmon not mounted: LISTEN_ADDR is not loopback and MONITORING_USER is unset")
	}
	rcv, err := app.NewReceiver(ctx, cfg.Receiver, rdb, log, reg, ui)
	if err != nil {
		return err
	}
	defer rcv.Close()
	ln, err := httpserve.Listen(cfg.Receiver.ListenAddr, "http", log)
	if err != nil {
		return err
	}
	handler := rcv.Handler
	if cfg.Receiver.APIToken == config.DevAPIToken {
		// The dev token is well known: keep the device API to loopback
		// Host names, so that a page re-pointed at 127.0.0.1 by its DNS
		// (DNS rebinding) cannot use it.
		handler = monitoring.RefuseForeignHosts(handler, "/v1/")
	}
	printWalkthrough(stdout, cfg, "http://"+ln.Addr().String(), ui != nil)
	err = httpserve.Serve(ctx, app.Listener(ln), "http", handler, cfg.Receiver.ShutdownTimeout, log)
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

// printWalkthrough writes the state standalone runs in and a walkthrough
// that works when pasted into a shell as a whole: everything but the
// commands is a "#" comment. curl prints each answer's HTTP status.
// monitoring says whether asynqmon is mounted at /monitoring/.
func printWalkthrough(w io.Writer, cfg config.Standalone, base string, monitoring bool) {
	rc := cfg.Receiver
	token := "$API_TOKEN"
	if cfg.GeneratedAPIToken {
		token = rc.APIToken
	}
	backend := "the log (no FCM settings)"
	if cfg.Worker.FCMConfigured() {
		backend = "FCM"
	}
	app := rc.AppIDs[0]
	var b strings.Builder
	fmt.Fprintf(&b, "\n# followpush standalone is up on %s\n", base)
	fmt.Fprintf(&b, "#   Redis:   %s\n", map[bool]string{true: "embedded, in memory (nothing survives a restart)", false: cfg.Receiver.Redis.Mode()}[cfg.EmbeddedRedis])
	fmt.Fprintf(&b, "#   pushes:  to %s\n", backend)
	if cfg.GeneratedAPIToken {
		fmt.Fprintf(&b, "#   API_TOKEN (dev; set API_TOKEN to choose one): %s\n", rc.APIToken)
	} else {
		fmt.Fprintf(&b, "#   API_TOKEN: yours (export API_TOKEN in the shell you paste into)\n")
	}
	_, oneToken := rc.CallbackTokens[""]
	switch {
	case len(rc.CallbackTokens) == 0:
		fmt.Fprintf(&b, "#   webhook signatures: NOT checked (TENCENT_CALLBACK_TOKEN unset)\n")
	default:
		fmt.Fprintf(&b, "#   webhook signatures: checked (export TENCENT_CALLBACK_TOKEN in the shell you paste into)\n")
	}
	if monitoring {
		fmt.Fprintf(&b, "#   queues (asynqmon): %s/monitoring/\n", base)
	} else {
		fmt.Fprintf(&b, "#   queues (asynqmon): not mounted (LISTEN_ADDR is not loopback and MONITORING_USER is unset)\n")
	}
	fmt.Fprintf(&b, "#\n# Walkthrough: paste all of this into another shell; everything but the commands is a # comment\n")
	fmt.Fprintf(&b, "# (zsh, macOS's default shell, takes comments after: setopt interactivecomments).\n")
	fmt.Fprintf(&b, "#\n# 1. Register a device for user UserID_002 (answer: HTTP 204)\n")
	fmt.Fprintf(&b, "curl -sS -w 'HTTP %%{http_code}\\n' -X PUT -H \"Authorization: Bearer %s\" -d '{\"platform\":\"android\"}' \\\n  %s/v1/users/UserID_002/devices/demo-token-0123456789\n", token, base)
	fmt.Fprintf(&b, "# 2. UserID_001 follows UserID_002: the webhook Tencent would send, with a current EventTime\n")
	fmt.Fprintf(&b, "#    (answer: {\"ActionStatus\":\"OK\",\"ErrorCode\":0,\"ErrorInfo\":\"\"} HTTP 200)\n")
	query := "SdkAppid=" + app + "&CallbackCommand=Follow.CallbackAfterFollowAdd&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI"
	if len(rc.CallbackTokens) == 0 {
		fmt.Fprintf(&b, "curl -sS -w 'HTTP %%{http_code}\\n' -X POST '%s/webhook?%s' \\\n", base, query)
	} else {
		fmt.Fprintf(&b, "#    Signed as Tencent signs: Sign = SHA-256 of the token followed by RequestTime, computed now.\n")
		if oneToken {
			fmt.Fprintf(&b, "TOKEN=\"$TENCENT_CALLBACK_TOKEN\"\n")
		} else {
			fmt.Fprintf(&b, "TOKEN=$(printf '%%s' \"$TENCENT_CALLBACK_TOKEN\" | tr ',' '\\n' | sed -n 's/^ *%s *= *\\([^ ]*\\).*/\\1/p')  # SDKAppID %s's token\n", app, app)
		}
		fmt.Fprintf(&b, "RT=$(date +%%s); SIGN=$(printf '%%s%%s' \"$TOKEN\" \"$RT\" | sha256sum | cut -d' ' -f1)\n")
		fmt.Fprintf(&b, "curl -sS -w 'HTTP %%{http_code}\\n' -X POST \"%s/webhook?%s&RequestTime=$RT&Sign=$SIGN\" \\\n", base, query)
	}
	fmt.Fprintf(&b, "  -d '{\"CallbackCommand\":\"Follow.CallbackAfterFollowAdd\",\"From_Account\":\"UserID_001\",\"FollowList\":[{\"To_Account\":\"UserID_002\"}],\"EventTime\":'$(($(date +%%s) * 1000))'}'\n")
	fmt.Fprintf(&b, "# 3. This standalone's log shows a line with \"msg\":\"push sent\" naming UserID_001 and UserID_002.\n\n")
	fmt.Fprint(w, b.String())
}
