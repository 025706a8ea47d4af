// Package deploycheck checks the deployment files under deploy/. Most of it
// is tests, run statically because this environment has no Docker engine or
// Kubernetes cluster to run the files in; the query checks they share with
// test/e2e (which runs them against a live scrape) are exported.
//
// The tests parse every YAML file under deploy/ (Compose, Kubernetes,
// Prometheus rules), the Grafana dashboard and the Dockerfile, and
// cross-check them against the programs: every environment variable a
// container gets is a setting its program reads ([config.Settings]) and the
// program's own config loader accepts the values; probes and Services hit
// the ports the programs listen on; the KEDA trigger watches the list
// where asynq really keeps pending tasks of [tasks.QueueFollow], in the
// worker's Redis (single, cluster or sentinel); the dashboard and alerts
// use only metrics, labels and label values the programs export, and
// docs/operations.md's metric list and runbook match them (every alert's
// runbook_url links to its own section there). They also build the binaries
// with the Dockerfile's own go build command and check that they are
// static.
//
// [ParseQuery] and [CheckQuery] check a PromQL query against a [Schema] of
// metrics (from [SourceMetrics], [SchemaFromFamilies] or a scrape);
// [DeployQueries] returns every query of the alert rules and the dashboard.
//
// Run the checks with `go test ./test/deploycheck`.
package deploycheck
