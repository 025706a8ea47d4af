// Package deploycheck holds only tests: they check the deployment files under
// deploy/ statically, because this environment has no Docker engine or
// Kubernetes cluster to run them in.
//
// The tests parse every YAML file under deploy/ (Compose, Kubernetes,
// Prometheus rules), the Grafana dashboard and the Dockerfile, and
// cross-check them against the programs: every environment variable a
// container gets is a setting its program reads ([config.Settings]), probes
// and Services hit the ports the programs listen on, the KEDA trigger watches
// asynq's real pending list of [tasks.QueueFollow], the dashboard and alerts
// use only metrics the programs export. They also build the binaries with the
// Dockerfile's own go build command and check that they are static.
//
// Run them with `go test ./internal/deploycheck`.
package deploycheck
