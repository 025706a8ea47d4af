package deploycheck

import (
	"errors"
	"strings"
	"testing"
)

// runChecks runs the checker that owns deploy/ file name over files.
func runChecks(t *testing.T, files map[string][]byte, name string) []error {
	t.Helper()
	df, err := parseDockerfile(string(files["Dockerfile"]))
	if err != nil {
		return []error{err}
	}
	switch {
	case name == "Dockerfile":
		goVersion, err := goModVersion()
		if err != nil {
			t.Fatal(err)
		}
		return checkDockerfile(df, goVersion)
	case name == ".env.example":
		return checkEnvExample(files["compose.yaml"], files[".env.example"])
	case name == "grafana/followpush.json":
		return checkDashboard(files[name], definedMetrics(t))
	}
	switch yamlOwner(name) {
	case "TestCompose":
		return checkCompose(files[name], df)
	case "TestKubernetes":
		return checkKubernetes(files, df)
	case "TestAlertRules":
		return checkAlerts(files[name], definedMetrics(t))
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
		{"setting the worker does not read", "k8s/configmap.yaml", `  METRICS_ADDR: ":9091"`, "  METRICS_ADDR: \":9091\"\n  LISTEN_ADDR: \":8080\"", false, "env LISTEN_ADDR (from ConfigMap followpush-worker) is not read by the worker"},
		{"unknown setting", "k8s/configmap.yaml", "  LOG_LEVEL: info", "  LOG_LEVEL: info\n  WORKERS: \"3\"", false, "env WORKERS (from ConfigMap followpush-common) is not a followpush setting"},
		{"receiver without SDKAppID", "k8s/configmap.yaml", "  TENCENT_SDKAPPID: \"1400000000\"\n", "", false, "needs TENCENT_SDKAPPID"},
		{"metrics port moved", "k8s/configmap.yaml", `METRICS_ADDR: ":9091"`, `METRICS_ADDR: ":9092"`, false, "declares no containerPort 9092"},
		{"loopback listen address", "k8s/configmap.yaml", `LISTEN_ADDR: ":8080"`, `LISTEN_ADDR: "127.0.0.1:8080"`, false, "unreachable from outside the container"},
		{"password in REDIS_URL", "k8s/configmap.yaml", "REDIS_URL: redis://redis:6379/0", "REDIS_URL: redis://:pw@redis:6379/0", false, "carries a password"},
		{"secret in a ConfigMap", "k8s/configmap.yaml", "  LOG_LEVEL: info", "  LOG_LEVEL: info\n  MONITORING_PASSWORD: x", false, "ConfigMap holds the secret MONITORING_PASSWORD"},
		{"KEDA list name", "k8s/worker-scaledobject.yaml", `listName: "asynq:{follow}:pending"`, `listName: "asynq:follow:pending"`, false, "listName \"asynq:follow:pending\""},
		{"KEDA address", "k8s/worker-scaledobject.yaml", "address: redis:6379", "address: redis-master:6379", false, "redis trigger address \"redis-master:6379\""},
		{"KEDA database", "k8s/worker-scaledobject.yaml", `databaseIndex: "0"`, `databaseIndex: "1"`, false, "databaseIndex 1"},
		{"KEDA scales the receiver", "k8s/worker-scaledobject.yaml", "    name: followpush-worker\n  minReplicaCount", "    name: followpush-receiver\n  minReplicaCount", false, "not the worker"},
		{"Service targetPort", "k8s/receiver-service.yaml", "targetPort: http", "targetPort: 9091", false, "targetPort 9091 is not a port of container receiver"},
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
		{"scrape port", "k8s/receiver-deployment.yaml", `prometheus.io/port: "8080"`, `prometheus.io/port: "9091"`, false, "prometheus.io/port is \"9091\""},
		{"HPA target", "k8s/receiver-hpa.yaml", "    name: followpush-receiver\n  minReplicas", "    name: followpush-recv\n  minReplicas", false, "is not a Deployment defined here"},
		{"kustomization misses a file", "k8s/kustomization.yaml", "  - pdb.yaml\n", "", false, "does not list pdb.yaml"},
		{"kustomization applies the example secret", "k8s/kustomization.yaml", "  - pdb.yaml\n", "  - pdb.yaml\n  - secret.example.yaml\n", false, "overwrite real secrets"},

		// Compose.
		{"redis without AOF", "compose.yaml", "- --appendonly\n      - \"yes\"", "- --appendonly\n      - \"no\"", false, "--appendonly is \"no\""},
		{"redis evicts", "compose.yaml", "- noeviction", "- allkeys-lru", false, "--maxmemory-policy is \"allkeys-lru\""},
		{"redis fsync", "compose.yaml", "- everysec", "- \"no\"", false, "--appendfsync is \"no\""},
		{"receiver port", "compose.yaml", `- "8080:8080"`, `- "8080:8081"`, false, "publishes/exposes [8081], not 8080"},
		{"compose setting the worker does not read", "compose.yaml", `      METRICS_ADDR: ":9091"`, `      LISTEN_ADDR: ":9091"`, false, "env LISTEN_ADDR (from environment) is not read by the worker"},
		{"compose receiver without SDKAppID", "compose.yaml", "      TENCENT_SDKAPPID: ${TENCENT_SDKAPPID:?set TENCENT_SDKAPPID in deploy/.env}\n", "", false, "needs TENCENT_SDKAPPID"},
		{"compose grace", "compose.yaml", "stop_grace_period: 40s", "stop_grace_period: 20s", false, "stop_grace_period 20s is not above SHUTDOWN_TIMEOUT 25s"},
		{"compose credentials path", "compose.yaml", "GOOGLE_APPLICATION_CREDENTIALS: /run/secrets/fcm.json", "GOOGLE_APPLICATION_CREDENTIALS: /run/secrets/firebase.json", false, "none of its secrets' paths"},
		{"compose starts before Redis is healthy", "compose.yaml", "condition: service_healthy", "condition: service_started", false, "depends_on redis is not condition: service_healthy"},
		{"compose worker runs the default program", "compose.yaml", "    entrypoint: [\"/worker\"]\n", "", false, "\"worker\" runs the receiver program"},
		{"asynqmon elsewhere", "compose.yaml", "--redis-addr=redis:6379", "--redis-addr=localhost:6379", false, "asynqmon --redis-addr=localhost:6379"},
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
		{"Go version", "Dockerfile", "FROM golang:1.26.8-bookworm AS build", "FROM golang:1.25-bookworm AS build", false, "want Go 1.26"},
		{"single stage", "Dockerfile", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM golang:1.26.8-bookworm", false, "the final stage is the build stage"},

		// Alerts.
		{"unknown metric in an alert", "prometheus/alerts.yaml", "followpush_tokens_kept_total", "followpush_tokens_kept", false, "followpush_tokens_kept is not a followpush metric"},
		{"bare histogram", "prometheus/alerts.yaml", "followpush_webhook_duration_seconds_bucket", "followpush_webhook_duration_seconds", false, "is a histogram"},
		{"counter with _count", "prometheus/alerts.yaml", `followpush_tasks_total{result="stale"}`, `followpush_tasks_total_count{result="stale"}`, false, "it has no _count series"},
		{"alert without for", "prometheus/alerts.yaml", "        for: 5m\n", "", false, "no for"},
		{"bad severity", "prometheus/alerts.yaml", "severity: critical", "severity: page", false, "labels.severity \"page\""},
		{"no summary", "prometheus/alerts.yaml", "summary: FCM quota exceeded", "summry: FCM quota exceeded", false, "no annotations.summary"},
		{"misspelt key", "prometheus/alerts.yaml", "    rules:", "    rulez:", false, "rulez"},
		{"unbalanced expr", "prometheus/alerts.yaml", "sum(increase(followpush_tokens_kept_total[10m])) > 0", "sum(increase(followpush_tokens_kept_total[10m]) > 0", false, "unclosed quote or bracket"},

		// Dashboard.
		{"unknown metric on the dashboard", "grafana/followpush.json", "followpush_pushes_total[", "followpush_push_total[", false, "followpush_push_total is not a followpush metric"},
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
			errs := runChecks(t, files, tt.file)
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
	for _, name := range []string{"Dockerfile", ".env.example", "grafana/followpush.json", "compose.yaml", "k8s/kustomization.yaml", "prometheus/alerts.yaml"} {
		report(t, runChecks(t, files, name))
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
