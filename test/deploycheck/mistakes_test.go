package deploycheck

import (
	"errors"
	"strings"
	"testing"
)

// runChecks runs the checkers that read deploy/ file name over files
// (schema: the metrics queries may use).
func runChecks(t *testing.T, files map[string][]byte, name string, schema Schema) []error {
	t.Helper()
	df, err := parseDockerfile(string(files["Dockerfile"]))
	if err != nil {
		return []error{err}
	}
	switch name {
	case "Dockerfile":
		gomod, err := readGoMod()
		if err != nil {
			t.Fatal(err)
		}
		// The image also serves Compose: its spool directory.
		return append(checkDockerfile(df, gomod), checkCompose(files["compose.yaml"], files[".env.example"], df)...)
	case ".env.example":
		return append(checkEnvExample(files["compose.yaml"], files[".env.example"]), checkCompose(files["compose.yaml"], files[".env.example"], df)...)
	case DashboardFile:
		return append(checkDashboard(files[name], schema), checkScrapeJobs(files["README.md"], files[AlertsFile], files[name])...)
	case "README.md":
		return checkScrapeJobs(files[name], files[AlertsFile], files[DashboardFile])
	case AlertTestsFile:
		return checkAlertTests(files[name], files[AlertsFile])
	}
	switch yamlOwner(name) {
	case "TestCompose":
		return checkCompose(files[name], files[".env.example"], df)
	case "TestKubernetes":
		return checkKubernetes(files, df)
	case "TestAlertRules":
		return append(checkAlerts(files[name], schema), checkScrapeJobs(files["README.md"], files[name], files[DashboardFile])...)
	}
	t.Fatalf("no checker for %s", name)
	return nil
}

// TestCheckersCatchMistakes feeds each checker the real deploy/ files with
// one deliberate mistake and expects the mistake to be reported: the
// checks can fail.
func TestCheckersCatchMistakes(t *testing.T) {
	t.Parallel()
	real := readDeployFiles(t)
	schema := deploySchema(t)
	apiTokenFromSecret := `            - name: API_TOKEN
              valueFrom:
                secretKeyRef:
                  name: followpush-secrets
                  key: API_TOKEN`
	tests := []struct {
		name, file, old, new string
		all                  bool // replace every occurrence
		want                 string
	}{
		// Kubernetes.
		{"readiness path", "k8s/receiver-deployment.yaml", "path: /readyz", "path: /ready", false, "readinessProbe path \"/ready\""},
		{"liveness path", "k8s/worker-deployment.yaml", "path: /healthz", "path: /health", false, "livenessProbe path \"/health\""},
		{"probe on the wrong port", "k8s/worker-deployment.yaml", "port: metrics\n            periodSeconds: 5", "port: 8080\n            periodSeconds: 5", false, "readinessProbe port 8080"},
		{"setting the worker does not read", "k8s/configmap.yaml", "  METRICS_ADDR: \":9091\"\n  WORKER_CONCURRENCY", "  METRICS_ADDR: \":9091\"\n  LISTEN_ADDR: \":8080\"\n  WORKER_CONCURRENCY", false, "env LISTEN_ADDR (from ConfigMap followpush-worker) is not read by the worker"},
		{"unknown setting", "k8s/configmap.yaml", "  LOG_LEVEL: info", "  LOG_LEVEL: info\n  WORKERS: \"3\"", false, "env WORKERS (from ConfigMap followpush-common) is not a followpush setting"},
		{"receiver without SDKAppID", "k8s/configmap.yaml", "  TENCENT_SDKAPPID: \"1400000000\"\n", "", false, "needs TENCENT_SDKAPPID"},
		{"metrics port moved", "k8s/configmap.yaml", "METRICS_ADDR: \":9091\"\n  WORKER_CONCURRENCY", "METRICS_ADDR: \":9092\"\n  WORKER_CONCURRENCY", false, "declares no containerPort 9092"},
		{"receiver metrics port moved", "k8s/configmap.yaml", "METRICS_ADDR: \":9091\"\n  REQUEST_TIME_WINDOW", "METRICS_ADDR: \":9092\"\n  REQUEST_TIME_WINDOW", false, "declares no containerPort 9092 (METRICS_ADDR, /metrics)"},
		{"loopback listen address", "k8s/configmap.yaml", `LISTEN_ADDR: ":8080"`, `LISTEN_ADDR: "127.0.0.1:8080"`, false, "unreachable from outside the container"},
		{"password in REDIS_URL", "k8s/configmap.yaml", "REDIS_URL: redis://redis:6379/0", "REDIS_URL: redis://:pw@redis:6379/0", false, "carries a password"},
		{"secret in a ConfigMap", "k8s/configmap.yaml", "  LOG_LEVEL: info", "  LOG_LEVEL: info\n  MONITORING_PASSWORD: x", false, "ConfigMap holds the secret MONITORING_PASSWORD"},
		{"KEDA list name", "k8s/worker-scaledobject.yaml", `listName: "asynq:{follow}:pending"`, `listName: "asynq:follow:pending"`, false, "listName \"asynq:follow:pending\""},
		{"KEDA misses shards", "k8s/configmap.yaml", `FOLLOW_QUEUE_SHARDS: "1"`, `FOLLOW_QUEUE_SHARDS: "3"`, false, "per follow queue (3, FOLLOW_QUEUE_SHARDS), found 1"},
		{"KEDA watches a queue of another shard count", "k8s/configmap.yaml", `FOLLOW_QUEUE_SHARDS: "1"`, `FOLLOW_QUEUE_SHARDS: "3"`, false, `listName "asynq:{follow}:pending", want asynq's pending list of a follow queue`},
		{"receiver and worker disagree on shards", "k8s/configmap.yaml", "  WORKER_CONCURRENCY: \"100\"", "  WORKER_CONCURRENCY: \"100\"\n  FOLLOW_QUEUE_SHARDS: \"6\"", false, "has FOLLOW_QUEUE_SHARDS 1, the worker 6"},
		{"KEDA address", "k8s/worker-scaledobject.yaml", "address: redis:6379", "address: redis-master:6379", false, "redis trigger address \"redis-master:6379\""},
		{"KEDA database", "k8s/worker-scaledobject.yaml", `databaseIndex: "0"`, `databaseIndex: "1"`, false, "databaseIndex 1"},
		{"KEDA scales the receiver", "k8s/worker-scaledobject.yaml", "    name: followpush-worker\n  minReplicaCount", "    name: followpush-receiver\n  minReplicaCount", false, "not the worker"},
		{"Service targetPort", "k8s/receiver-service.yaml", "targetPort: http", "targetPort: 9999", false, "targetPort 9999 is not a port of container receiver"},
		{"Service exposes the receiver's metrics", "k8s/receiver-service.yaml", "targetPort: http", "targetPort: metrics", false, "port 80 targets 9091, but the receiver listens on 8080"},
		{"Service selects the worker", "k8s/receiver-service.yaml", "component: receiver\n  ports:", "component: worker\n  ports:", false, "is not a port of container worker"},
		{"no memory limit", "k8s/receiver-deployment.yaml", "            limits:\n              memory: 128Mi\n", "", false, "no resources.limits.memory"},
		{"no cpu request under an HPA", "k8s/receiver-deployment.yaml", "              cpu: 100m\n", "", false, "requests no cpu"},
		{"GOMEMLIMIT above the limit", "k8s/receiver-deployment.yaml", "value: 110MiB", "value: 200MiB", false, "GOMEMLIMIT 200MiB is not below"},
		{"writable root filesystem", "k8s/worker-deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", false, "readOnlyRootFilesystem is not true"},
		{"privilege escalation", "k8s/receiver-deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", false, "allowPrivilegeEscalation is not false"},
		{"may run as root", "k8s/receiver-deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false", true, "runAsNonRoot is not true"},
		{"grace below SHUTDOWN_TIMEOUT", "k8s/worker-deployment.yaml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 25", false, "terminationGracePeriodSeconds 25 is not above"},
		{"grace below preStop + SHUTDOWN_TIMEOUT", "k8s/receiver-deployment.yaml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 28", false, "preStop sleep 5s + SHUTDOWN_TIMEOUT 25s"},
		{"literal API_TOKEN", "k8s/receiver-deployment.yaml", apiTokenFromSecret, "            - name: API_TOKEN\n              value: hunter2", false, "API_TOKEN comes from env"},
		{"missing secret key", "k8s/receiver-deployment.yaml", "key: API_TOKEN", "key: API_TOKN", false, "has no key API_TOKN"},
		{"worker runs the receiver", "k8s/worker-deployment.yaml", `command: ["/worker"]`, `command: ["/receiver"]`, false, "name and program disagree"},
		{"program not in the image", "k8s/worker-deployment.yaml", `command: ["/worker"]`, `command: ["/loadtest"]`, false, "the image has no loadtest"},
		{"namespace set", "k8s/pdb.yaml", "  name: followpush-worker\n", "  name: followpush-worker\n  namespace: prod\n", false, "namespace-agnostic"},
		{"credentials file not in the Secret", "k8s/worker-deployment.yaml", "/var/run/secrets/fcm/fcm.json", "/var/run/secrets/fcm/key.json", false, "has no key key.json"},
		{"credentials file not mounted", "k8s/worker-deployment.yaml", "mountPath: /var/run/secrets/fcm", "mountPath: /etc/fcm", false, "is not in any mounted volume"},
		{"MAX_EVENT_AGE not a duration", "k8s/configmap.yaml", "MAX_EVENT_AGE: 1h", "MAX_EVENT_AGE: 1hr", false, `would exit 2 at start: MAX_EVENT_AGE: "1hr" is not a duration`},
		{"negative WORKER_CONCURRENCY", "k8s/configmap.yaml", `WORKER_CONCURRENCY: "100"`, `WORKER_CONCURRENCY: "-5"`, false, `would exit 2 at start: WORKER_CONCURRENCY: "-5" is not a whole number`},
		{"worker without credentials", "k8s/worker-deployment.yaml", "            - name: GOOGLE_APPLICATION_CREDENTIALS\n              value: /var/run/secrets/fcm/fcm.json\n", "", false, "would exit 2 at start: FCM_PROJECT_ID: required when neither GOOGLE_APPLICATION_CREDENTIALS nor FCM_ENDPOINT is set"},
		{"aggregation window not below MAX_EVENT_AGE", "k8s/configmap.yaml", `AGGREGATION_WINDOW: "0"`, `AGGREGATION_WINDOW: 2h`, false, "would exit 2 at start: AGGREGATION_WINDOW: 2h0m0s is not shorter than MAX_EVENT_AGE"},
		{"bad push template", "k8s/configmap.yaml", `"title": "新粉絲"`, `"title": "{{.Nickname}}"`, false, "would exit 2 at start: PUSH_TEMPLATES_FILE"},
		{"push templates not valid JSON", "k8s/configmap.yaml", `"zh-TW": {`, `"zh-TW" {`, false, "would exit 2 at start: PUSH_TEMPLATES_FILE"},
		{"push templates not mounted", "k8s/worker-deployment.yaml", "mountPath: /etc/followpush/templates", "mountPath: /etc/followpush/texts", false, "PUSH_TEMPLATES_FILE=/etc/followpush/templates/push-templates.json is not a file of a ConfigMap mounted"},
		{"example secret too short for the loader", "k8s/secret.example.yaml", "API_TOKEN: CHANGE-ME-long-random-api-token", "API_TOKEN: short", false, "would exit 2 at start: API_TOKEN: must be at least 16 bytes"},
		{"UserSig in a ConfigMap", "k8s/configmap.yaml", "  LOG_LEVEL: info", "  LOG_LEVEL: info\n  TENCENT_ADMIN_USERSIG: x", false, "ConfigMap holds the secret TENCENT_ADMIN_USERSIG"},
		{"secret key in a ConfigMap", "k8s/configmap.yaml", "  LOG_LEVEL: info", "  LOG_LEVEL: info\n  TENCENT_SECRET_KEY: x", false, "ConfigMap holds the secret TENCENT_SECRET_KEY"},
		{"UserSig and secret key for every app", "k8s/secret.example.yaml", "  # TENCENT_ADMIN_USERSIG: CHANGE-ME-admin-usersig", "  TENCENT_ADMIN_USERSIG: CHANGE-ME-admin-usersig", false, "TENCENT_SECRET_KEY: TENCENT_ADMIN_USERSIG is set too"},
		{"spool emptyDir below SPOOL_MAX_BYTES", "k8s/receiver-deployment.yaml", "sizeLimit: 128Mi", "sizeLimit: 32Mi", false, "is not above SPOOL_MAX_BYTES 67108864"},
		{"spool on no volume", "k8s/receiver-deployment.yaml", "mountPath: /var/lib/followpush/spool", "mountPath: /var/lib/followpush/other", false, "SPOOL_DIR /var/lib/followpush/spool is on no volume"},
		{"spool on a read-only mount", "k8s/receiver-deployment.yaml", "mountPath: /var/lib/followpush/spool\n", "mountPath: /var/lib/followpush/spool\n              readOnly: true\n", false, "is on read-only volumeMount spool"},
		{"KEDA cluster trigger on a single Redis", "k8s/worker-scaledobject.yaml", "- type: redis\n", "- type: redis-cluster\n", false, "trigger type redis-cluster, but the worker's Redis is in url mode: want type redis"},
		{"scrape port", "k8s/receiver-deployment.yaml", `prometheus.io/port: "9091"`, `prometheus.io/port: "8080"`, false, "prometheus.io/port is \"8080\", but /metrics is on 9091 (METRICS_ADDR)"},
		{"receiver metrics port not declared", "k8s/receiver-deployment.yaml", "            # /metrics (METRICS_ADDR), not in the Service: scraped per pod.\n            - name: metrics\n              containerPort: 9091\n              protocol: TCP\n", "", false, "declares no containerPort 9091 (METRICS_ADDR, /metrics)"},
		{"receiver metrics on the webhook's port", "k8s/configmap.yaml", `METRICS_ADDR: ":9091"` + "\n  REQUEST_TIME_WINDOW", `METRICS_ADDR: ":8080"` + "\n  REQUEST_TIME_WINDOW", false, "METRICS_ADDR: \":8080\" is LISTEN_ADDR too"},
		{"HPA target", "k8s/receiver-hpa.yaml", "    name: followpush-receiver\n  minReplicas", "    name: followpush-recv\n  minReplicas", false, "is not a Deployment defined here"},
		{"kustomization misses a file", "k8s/kustomization.yaml", "  - pdb.yaml\n", "", false, "does not list pdb.yaml"},
		{"kustomization applies the example secret", "k8s/kustomization.yaml", "  - pdb.yaml\n", "  - pdb.yaml\n  - secret.example.yaml\n", false, "overwrite real secrets"},

		// Compose.
		{"redis without AOF", "compose.yaml", "- --appendonly\n      - \"yes\"", "- --appendonly\n      - \"no\"", false, "--appendonly is \"no\""},
		{"redis evicts", "compose.yaml", "- noeviction", "- allkeys-lru", false, "--maxmemory-policy is \"allkeys-lru\""},
		{"redis fsync", "compose.yaml", "- everysec", "- \"no\"", false, "--appendfsync is \"no\""},
		{"receiver port", "compose.yaml", `- "8080:8080"`, `- "8080:8081"`, false, "publishes/exposes [8081 9091], not 8080"},
		{"compose publishes the receiver's metrics", "compose.yaml", "      - \"8080:8080\"\n", "      - \"8080:8080\"\n      - \"9091:9091\"\n", false, "publishes 9091, its /metrics (METRICS_ADDR), on the host"},
		{"compose setting the worker does not read", "compose.yaml", "      METRICS_ADDR: \":9091\"\n      GOOGLE_APPLICATION_CREDENTIALS", "      LISTEN_ADDR: \":9091\"\n      GOOGLE_APPLICATION_CREDENTIALS", false, "env LISTEN_ADDR (from environment) is not read by the worker"},
		{"compose receiver without SDKAppID", "compose.yaml", "      TENCENT_SDKAPPID: ${TENCENT_SDKAPPID:?set TENCENT_SDKAPPID in deploy/.env}\n", "", false, "needs TENCENT_SDKAPPID"},
		{"compose grace", "compose.yaml", "stop_grace_period: 40s", "stop_grace_period: 20s", false, "stop_grace_period 20s is not above SHUTDOWN_TIMEOUT 25s"},
		{"compose credentials path", "compose.yaml", "GOOGLE_APPLICATION_CREDENTIALS: /run/secrets/fcm.json", "GOOGLE_APPLICATION_CREDENTIALS: /run/secrets/firebase.json", false, "none of its secrets' paths"},
		{"compose starts before Redis is healthy", "compose.yaml", "condition: service_healthy", "condition: service_started", false, "depends_on redis is not condition: service_healthy"},
		{"compose worker runs the default program", "compose.yaml", "    entrypoint: [\"/worker\"]\n", "", false, "\"worker\" runs the receiver program"},
		{"asynqmon elsewhere", "compose.yaml", "--redis-addr=redis:6379", "--redis-addr=localhost:6379", false, "asynqmon watches localhost:6379 db 0, but receiver uses redis:6379 db 0"},
		{"asynqmon on another database", "compose.yaml", "--redis-db=0", "--redis-db=1", false, "asynqmon watches redis:6379 db 1, but worker uses redis:6379 db 0"},
		{"no asynqmon", "compose.yaml", "  asynqmon:\n", "  queue-ui:\n", false, "no asynqmon service"},
		{"asynqmon not pinned", "compose.yaml", "hibiken/asynqmon:0.7.2", "hibiken/asynqmon:latest", false, `asynqmon: image "hibiken/asynqmon:latest", want "hibiken/asynqmon:0.7.2"`},
		{"asynqmon of another release", "compose.yaml", "hibiken/asynqmon:0.7.2", "hibiken/asynqmon:0.7.1", false, `want "hibiken/asynqmon:0.7.2": pinned to the asynqmon of go.mod`},
		{"two workers", "compose.yaml", "replicas: 3", "replicas: 2", false, "deploy.replicas is 2, want 3 workers"},
		{"compose worker without credentials", "compose.yaml", "      GOOGLE_APPLICATION_CREDENTIALS: /run/secrets/fcm.json\n", "", false, "would exit 2 at start: FCM_PROJECT_ID: required when neither GOOGLE_APPLICATION_CREDENTIALS nor FCM_ENDPOINT is set"},
		{".env.example aggregation window too long", ".env.example", "AGGREGATION_WINDOW=0", "AGGREGATION_WINDOW=2h", false, "would exit 2 at start: AGGREGATION_WINDOW: 2h0m0s is not shorter than MAX_EVENT_AGE"},
		{".env.example negative concurrency", ".env.example", "WORKER_CONCURRENCY=100", "WORKER_CONCURRENCY=-5", false, `would exit 2 at start: WORKER_CONCURRENCY: "-5" is not a whole number`},
		{".env.example short API token", ".env.example", "API_TOKEN=change-me-to-a-long-random-string", "API_TOKEN=short", false, "would exit 2 at start: API_TOKEN: must be at least 16 bytes"},
		{"compose spool on no volume", "compose.yaml", "      - receiver-spool:/var/lib/followpush/spool\n", "", false, "SPOOL_DIR /var/lib/followpush/spool is on no volume"},
		{"compose spool on a bind mount", "compose.yaml", "- receiver-spool:/var/lib/followpush/spool", "- ./spool:/var/lib/followpush/spool", false, "not a named volume"},
		{"image spool directory root-owned", "Dockerfile", "COPY --from=build --chown=65532:65532 /state /var/lib/followpush", "COPY --from=build /state /var/lib/followpush", false, "the image does not create /var/lib/followpush/spool owned by its user 65532:65532"},
		{"compose writable", "compose.yaml", "read_only: true", "read_only: false", false, "read_only is not true"},
		{".env.example incomplete", ".env.example", "API_TOKEN=change-me-to-a-long-random-string\n", "", false, ".env.example lacks API_TOKEN"},

		// Dockerfile.
		{"cgo", "Dockerfile", "CGO_ENABLED=0 go build", "go build", false, "without CGO_ENABLED=0"},
		{"root user", "Dockerfile", "USER 65532:65532", "USER root", false, "want an explicit non-root USER"},
		{"uid 0", "Dockerfile", "USER 65532:65532", "USER 0:0", false, "want an explicit non-root USER"},
		{"worker not built", "Dockerfile", " ./cmd/worker ", " ", false, "does not build ./cmd/worker"},
		{"worker not shipped", "Dockerfile", " /out/worker ", " ", false, "does not ship /worker"},
		{"shell-form entrypoint", "Dockerfile", `ENTRYPOINT ["/receiver"]`, "ENTRYPOINT /receiver", false, "not exec form"},
		{"CMD next to ENTRYPOINT", "Dockerfile", `ENTRYPOINT ["/receiver"]`, "ENTRYPOINT [\"/receiver\"]\nCMD [\"-h\"]", false, "has a CMD"},
		{"metrics port not exposed", "Dockerfile", "EXPOSE 8080 9091", "EXPOSE 8080", false, "lacks 9091"},
		{"Go version", "Dockerfile", "FROM golang:1.26.10-bookworm AS build", "FROM golang:1.25.9-bookworm AS build", false, "FROM golang:1.25.9-bookworm, want Go 1.26."},
		{"Go version not pinned", "Dockerfile", "FROM golang:1.26.10-bookworm AS build", "FROM golang:1.26-bookworm AS build", false, "pin a full Go version"},
		{"single stage", "Dockerfile", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM golang:1.26.10-bookworm", false, "the final stage is the build stage or a Go image"},
		{"final stage on another Go image", "Dockerfile", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM golang:1.26.8-bookworm", false, "the final stage is the build stage or a Go image"},

		// Alerts.
		{"unknown metric in an alert", "prometheus/alerts.yaml", "followpush_sender_id_mismatch_breaker_open", "followpush_sender_id_mismatch_breaker", false, "followpush_sender_id_mismatch_breaker is not an exported metric"},
		{"unknown asynq metric", "prometheus/alerts.yaml", "asynq_queue_latency_seconds{", "asynq_queue_latency{", false, "asynq_queue_latency is not an exported metric"},
		{"result value typo", "prometheus/alerts.yaml", `result="unavailable"`, `result="unavailabe"`, false, `"unavailabe" is not a value of result`},
		{"outcome value typo", "prometheus/alerts.yaml", `outcome="quota_exceeded"`, `outcome="quota_exeeded"`, false, `"quota_exeeded" is not a value of outcome`},
		{"outcome alternative typo", "prometheus/alerts.yaml", `unavailable|internal|unknown|transport`, `unavailable|internal|unknwn|transport`, false, `"unknwn" is not a value of outcome`},
		{"queue value typo", "prometheus/alerts.yaml", `asynq_queue_paused{queue=~"follow(-.+)?"}`, `asynq_queue_paused{queue="folow"}`, false, `"folow" is not a value of queue`},
		{"queue pattern typo", "prometheus/alerts.yaml", `asynq_queue_paused{queue=~"follow(-.+)?"}`, `asynq_queue_paused{queue=~"folow(-.+)?"}`, false, `matches no value of queue`},
		{"alert without a firing test", AlertTestsFile, "        alertname: FollowpushNoWorkers\n        exp_alerts:\n          - exp_labels: {severity: critical}", "        alertname: FollowpushNoWorkers\n        exp_alerts: []\n        x_alerts:\n          - exp_labels: {severity: critical}", false, "no test expects FollowpushNoWorkers to fire"},
		{"test of an unknown alert", AlertTestsFile, "alertname: FollowpushQueuePaused", "alertname: FollowpushQueuePausd", false, "tests FollowpushQueuePausd, which alerts.yaml does not define"},
		{"deprecated asynq name", "prometheus/alerts.yaml", `asynq_queue_paused{queue=~"follow(-.+)?"}`, `asynq_queue_paused_total{queue=~"follow(-.+)?"}`, false, "uses asynq_queue_paused_total, exported only for old rules"},
		{"deprecated asynq name on a panel", DashboardFile, `asynq_queue_tasks{queue=~\"follow(-.+)?\",state=~`, `asynq_tasks_enqueued_total{queue=~\"follow(-.+)?\",state=~`, false, "uses asynq_tasks_enqueued_total, exported only for old rules"},
		{"state value typo", "prometheus/alerts.yaml", `state="archived"`, `state="archive"`, false, `"archive" is not a value of state`},
		{"label that does not exist", "prometheus/alerts.yaml", `{queue=~"follow(-.+)?",state="archived"}`, `{queue=~"follow(-.+)?",stat="archived"}`, false, "asynq_queue_tasks has no label stat"},
		{"state on asynq_queue_size", "prometheus/alerts.yaml", `asynq_queue_latency_seconds{queue=~"follow(-.+)?"}`, `asynq_queue_size{queue=~"follow(-.+)?",state="pending"}`, false, "asynq_queue_size has no label state"},
		{"grouping label that does not exist", "prometheus/alerts.yaml", "max by (queue) (asynq_queue_latency_seconds", "max by (qeue) (asynq_queue_latency_seconds", false, "groups by qeue"},
		{"up without job", "prometheus/alerts.yaml", `up{job=~"followpush-(receiver|worker)"} == 0`, `up == 0`, false, "up without a job matcher"},
		{"up of an unknown job", "prometheus/alerts.yaml", `up{job="followpush-worker"}`, `up{job="followpush-workers"}`, false, `up{job="followpush-workers"} matches none of the scrape jobs`},
		{"bare histogram", "prometheus/alerts.yaml", "followpush_webhook_duration_seconds_bucket", "followpush_webhook_duration_seconds", false, "is a histogram"},
		{"counter with _count", "prometheus/alerts.yaml", `followpush_tasks_total{result="stale"}`, `followpush_tasks_total_count{result="stale"}`, false, "it has no _count series"},
		{"alert without for", "prometheus/alerts.yaml", "        for: 5m\n", "", false, "no for"},
		{"bad severity", "prometheus/alerts.yaml", "severity: critical", "severity: page", false, "labels.severity \"page\""},
		{"no summary", "prometheus/alerts.yaml", "summary: FCM quota exceeded", "summry: FCM quota exceeded", false, "no annotations.summary"},
		{"misspelt key", "prometheus/alerts.yaml", "    rules:", "    rulez:", false, "rulez"},
		{"unbalanced expr", "prometheus/alerts.yaml", "sum(increase(followpush_tasks_total{result=\"stale\"}[15m])) > 0", "sum(increase(followpush_tasks_total{result=\"stale\"}[15m]) > 0", false, `unclosed "("`},

		// Dashboard.
		{"unknown metric on the dashboard", "grafana/followpush.json", "followpush_pushes_total[", "followpush_push_total[", false, "followpush_push_total is not an exported metric"},
		{"dashboard grouping typo", "grafana/followpush.json", "sum by (command, result)", "sum by (command, reslt)", false, "groups by reslt"},
		{"queue latency missing from the dashboard", "grafana/followpush.json", "asynq_queue_latency_seconds{", "asynq_queue_size{", false, "no panel shows asynq_queue_latency_seconds"},
		{"spool depth missing from the dashboard", "grafana/followpush.json", "(followpush_spool_depth)", "(followpush_spool_bytes)", false, "no panel shows followpush_spool_depth"},
		{"rate limited missing from the dashboard", "grafana/followpush.json", "followpush_rate_limited_total[", "followpush_digests_total[", false, "no panel shows followpush_rate_limited_total"},
		{"scrape job renamed", "README.md", "- job_name: followpush-worker", "- job_name: followpush-workers", false, `up{job="followpush-worker"} matches none of the scrape jobs`},
		{"documented metric missing from the dashboard", "grafana/followpush.json", "followpush_pushes_total[", "followpush_tasks_total[", false, "no panel shows followpush_pushes_total"},
		{"panel without expr", "grafana/followpush.json", `"expr": "sum by (result) (rate(followpush_tasks_total`, `"exp": "sum by (result) (rate(followpush_tasks_total`, false, "empty expr"},
		{"dashboard does not parse", "grafana/followpush.json", `"panels": [`, `"panels": [[`, false, "followpush.json: invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := make(map[string][]byte, len(real))
			for k, v := range real {
				files[k] = v
			}
			text := string(files[tt.file])
			if !strings.Contains(text, tt.old) {
				t.Fatalf("deploy/%s no longer contains %q: update this case", tt.file, tt.old)
			}
			if tt.all {
				text = strings.ReplaceAll(text, tt.old, tt.new)
			} else {
				text = strings.Replace(text, tt.old, tt.new, 1)
			}
			files[tt.file] = []byte(text)
			errs := runChecks(t, files, tt.file, schema)
			for _, err := range errs {
				if strings.Contains(err.Error(), tt.want) {
					return
				}
			}
			t.Errorf("deploy/%s with %q replaced by %q: want an error containing %q, got:\n%v", tt.file, tt.old, tt.new, tt.want, errors.Join(errs...))
		})
	}
}

// TestRealFilesPassEveryChecker guards the cases above: each checker
// accepts the unmodified files, so the errors they expect come from the
// mistake alone.
func TestRealFilesPassEveryChecker(t *testing.T) {
	t.Parallel()
	files := readDeployFiles(t)
	schema := deploySchema(t)
	for _, name := range []string{"Dockerfile", ".env.example", DashboardFile, "README.md", "compose.yaml", "k8s/kustomization.yaml", AlertsFile, AlertTestsFile} {
		report(t, runChecks(t, files, name, schema))
	}
}

func TestShellWords(t *testing.T) {
	t.Parallel()
	got, err := shellWords(`CGO_ENABLED=0 go build -ldflags="-s -w" -o '/out dir/' a\ b "q\"x"`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CGO_ENABLED=0", "go", "build", "-ldflags=-s -w", "-o", "/out dir/", "a b", `q"x`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("shellWords = %q, want %q", got, want)
	}
	if _, err := shellWords(`echo "open`); err == nil {
		t.Error("shellWords accepted an unterminated quote")
	}
}

func TestIgnored(t *testing.T) {
	t.Parallel()
	patterns := []string{".git", "deploy", "**/*.test", "!keep.test"}
	for p, want := range map[string]bool{
		".git/config":        true,
		"deploy/Dockerfile":  true,
		"cmd/worker/main.go": false,
		"x/y/z.test":         true,
		"keep.test":          false,
		"go.mod":             false,
	} {
		if got := ignored(patterns, p); got != want {
			t.Errorf("ignored(%s) = %v, want %v", p, got, want)
		}
	}
}
