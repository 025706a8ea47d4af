// Package e2e holds only tests: they build the real followpush programs
// (receiver, worker, standalone), run them as separate processes
// (internal/testrig/proc) against real redis-server processes
// (internal/testrig/redistest: single, cluster and sentinel) and a local
// FCM-wire-compatible server (internal/testrig/fcmtest), and check what a
// user and an operator would see: pushes delivered exactly once, webhook
// and device API answers, metrics scraped live, graceful shutdown, the
// standalone walkthrough run through bash, and, under fault injection
// (a worker killed mid-stream, Redis restarted, FCM down or over quota, a
// sentinel failover, malformed webhooks), that the delivery contract of
// RELIABILITY.md holds.
//
// The fault-injection and multi-program tests are skipped with -short.
//
//	go test ./test/e2e
package e2e
