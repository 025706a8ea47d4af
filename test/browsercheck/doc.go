// Package browsercheck holds only tests: they open the asynq web UI
// (asynqmon) that the standalone program mounts at /monitoring/ in a real
// headless Chromium and check that an operator sees followpush's queue and
// its tasks there.
//
// The test builds cmd/standalone, starts it on a free loopback port with an
// FCM server (internal/testrig/fcmtest) that answers every send with FCM's 503
// UNAVAILABLE and a Retry-After of 30 minutes, so the follow tasks it is
// given stay in the retry state of queue "follow" for the whole test. It then
// checks, in the browser, the queues table on the dashboard and the retry tab
// of the queue's page (task type and readable payload).
//
// Every run takes a full-page screenshot of that queue page and writes it
// to $FOLLOWPUSH_SCREENSHOT_DIR/asynqmon.png (CI can keep it as an
// artifact), or to the test's temporary directory when that is unset; the
// test logs the path. The committed testdata/asynqmon.png, which shows a
// reviewer what the UI looks like, is rewritten only on request:
//
//	go test ./test/browsercheck -run TestMonitoringShowsQueues -update
//
// A second test replays a cross-site request forgery in the browser: a page
// of another site (localhost, while standalone is on 127.0.0.1) submits a
// form that would pause queue "follow"; /monitoring must refuse it (403) and
// the queue keep running, while asynqmon's own page still pauses and
// resumes it.
//
// The tests need Chromium (Debian/Ubuntu:
// apt-get install -y --no-install-recommends chromium fonts-liberation), found
// as /usr/bin/chromium or as chromium or chromium-browser on PATH. Without
// it they are skipped, unless CI=true: then a missing Chromium is a failure.
//
// Run them with `go test ./test/browsercheck`.
package browsercheck
