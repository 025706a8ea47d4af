package deploycheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/followpush/followpush/config"
)

// repoRoot is the module root, seen from this package's directory (go test
// runs tests in the package directory).
const repoRoot = "../.."

// deployDir is the directory the deployment files live in.
var deployDir = filepath.Join(repoRoot, "deploy")

// pendingKey returns the Redis key of asynq's list of pending tasks of queue
// qname. It copies asynq v0.26.0 internal/base/base.go:
//
//	func QueueKeyPrefix(qname string) string { return "asynq:{" + qname + "}:" }
//	func PendingKey(qname string) string     { return QueueKeyPrefix(qname) + "pending" }
//
// (base.go lines 106-123); asynq's internal packages cannot be imported.
func pendingKey(qname string) string { return "asynq:{" + qname + "}:pending" }

// runtimeEnv are environment variables read by the Go runtime rather than
// by config; containers may set them without config.Settings listing them.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true}

// secretSettings must reach a container from a Secret, never as a literal
// value in a manifest or ConfigMap.
var secretSettings = []string{"TENCENT_CALLBACK_TOKEN", "API_TOKEN", "REDIS_PASSWORD", "MONITORING_PASSWORD", "TENCENT_ADMIN_USERSIG", "TENCENT_SECRET_KEY"}

// setting returns the config.Settings entry called name.
func setting(name string) (config.Setting, bool) {
	for _, s := range config.Settings {
		if s.Name == name {
			return s, true
		}
	}
	return config.Setting{}, false
}

// readDeployFiles returns every regular file under deploy/, keyed by its
// slash-separated path relative to deploy/.
func readDeployFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(deployDir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatalf("read deploy/: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("deploy/ holds no files")
	}
	return files
}

// isYAML reports whether name is a YAML file.
func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// yamlDocs decodes every document of a (multi-document) YAML stream.
// Documents holding nothing (only comments, an empty "---") are left out.
func yamlDocs(b []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []*yaml.Node
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if n.Kind == 0 || (n.Kind == yaml.DocumentNode && len(n.Content) == 0) {
			continue
		}
		docs = append(docs, &n)
	}
}

// workload is one followpush container as a manifest (Compose service or
// Kubernetes container) runs it, reduced to what the shared checks need.
type workload struct {
	where   string         // for messages: file and object
	name    string         // Compose service or Kubernetes container name
	program config.Program // which binary it runs
	env     map[string]envVar
	files   map[string]string // path → content of files mounted from ConfigMaps
}

// envVar is one environment variable of a workload.
type envVar struct {
	value   string // the value, when literal
	literal bool   // value is known (not from a Secret, not interpolated)
	from    string // where it comes from, for messages
	// sample is a value the program gets at run time, for the loader check:
	// the literal, the interpolation resolved with .env.example, or the
	// example Secret's value; sampleErr says why there is none.
	sample    string
	sampleErr error
}

// literalVar is an environment variable with a value written in the
// manifest.
func literalVar(value, from string) envVar {
	return envVar{value: value, literal: true, from: from, sample: value}
}

// effective returns the value program w.program sees for setting name: the
// literal value set, or the setting's default. ok is false when the value
// comes from somewhere the test cannot read (a Secret, an interpolation).
func (w workload) effective(name string) (value string, ok bool) {
	if v, set := w.env[name]; set {
		return v.value, v.literal
	}
	s, _ := setting(name)
	return s.DefaultFor(w.program), true
}

// listenSetting names the setting holding the address the program serves
// /healthz, /readyz and /metrics on.
func listenSetting(p config.Program) string {
	if p == config.ProgramWorker {
		return "METRICS_ADDR"
	}
	return "LISTEN_ADDR"
}

// listenPort returns the port w's program listens on for its probes and
// metrics, from the workload's environment or the setting's default. The
// address must be reachable from outside the container (no loopback host).
func (w workload) listenPort() (int, error) {
	return w.portOf(listenSetting(w.program))
}

// metricsPort returns the port w's program serves /metrics on: the
// receiver's METRICS_ADDR when set (its own listener), else the port of
// listenPort.
func (w workload) metricsPort() (int, string, error) {
	if w.program == config.ProgramReceiver {
		if v, ok := w.effective("METRICS_ADDR"); !ok || v != "" {
			n, err := w.portOf("METRICS_ADDR")
			return n, "METRICS_ADDR", err
		}
	}
	n, err := w.listenPort()
	return n, listenSetting(w.program), err
}

// portOf returns the port of the listen address in setting name.
func (w workload) portOf(name string) (int, error) {
	addr, ok := w.effective(name)
	if !ok {
		return 0, fmt.Errorf("%s: %s comes from %s: the listen port cannot be checked", w.where, name, w.env[name].from)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%s: %s=%q is not host:port", w.where, name, addr)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return 0, fmt.Errorf("%s: %s=%q listens on %s only: unreachable from outside the container (use :%s)", w.where, name, addr, host, port)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("%s: %s=%q has no fixed port", w.where, name, addr)
	}
	return n, nil
}

// shutdownTimeout returns the program's SHUTDOWN_TIMEOUT.
func (w workload) shutdownTimeout() (time.Duration, error) {
	v, ok := w.effective("SHUTDOWN_TIMEOUT")
	if !ok {
		return 0, fmt.Errorf("%s: SHUTDOWN_TIMEOUT comes from %s: cannot check the grace period", w.where, w.env["SHUTDOWN_TIMEOUT"].from)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: SHUTDOWN_TIMEOUT=%q: %v", w.where, v, err)
	}
	return d, nil
}

// checkWorkload runs the checks every followpush container gets, wherever
// it is defined.
func checkWorkload(w workload) []error {
	var errs []error
	if !strings.Contains(w.name, string(w.program)) {
		errs = append(errs, fmt.Errorf("%s: %q runs the %s program: name and program disagree (copy-paste?)", w.where, w.name, w.program))
	}
	for _, name := range slices.Sorted(maps.Keys(w.env)) {
		if runtimeEnv[name] {
			continue
		}
		s, ok := setting(name)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: env %s (from %s) is not a followpush setting (config.Settings)", w.where, name, w.env[name].from))
		case !s.UsedBy(w.program):
			errs = append(errs, fmt.Errorf("%s: env %s (from %s) is not read by the %s program (it is read by %v)", w.where, name, w.env[name].from, w.program, s.Programs))
		}
	}
	if w.program == config.ProgramReceiver {
		if _, ok := w.env["TENCENT_SDKAPPID"]; !ok {
			errs = append(errs, fmt.Errorf("%s: the receiver needs TENCENT_SDKAPPID (required, no default)", w.where))
		}
	}
	if v, ok := w.env["REDIS_URL"]; ok && v.literal {
		if u, err := url.Parse(v.value); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: REDIS_URL=%q is not a redis:// URL", w.where, v.value))
		} else if _, has := u.User.Password(); has {
			errs = append(errs, fmt.Errorf("%s: REDIS_URL carries a password in a plain value (from %s): put it in a Secret", w.where, v.from))
		}
	}
	if _, err := w.listenPort(); err != nil {
		errs = append(errs, err)
	}
	if _, name, err := w.metricsPort(); err != nil && name != listenSetting(w.program) {
		errs = append(errs, err)
	}
	return append(errs, loadCheck(w)...)
}

// redisAddr returns host:port and the database index of a redis:// URL.
func redisAddr(raw string) (addr string, db int, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, err
	}
	addr = u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "6379")
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil {
			return "", 0, fmt.Errorf("database %q: %w", p, err)
		}
	}
	return addr, db, nil
}

// programOf returns the program a container runs: the base name of the
// first word of its command (Compose entrypoint, Kubernetes command), or
// the image's ENTRYPOINT when it sets none. The image must ship it.
func programOf(cmd []string, df dockerfile) (config.Program, error) {
	if len(cmd) == 0 {
		cmd = df.entrypoint
	}
	if len(cmd) == 0 {
		return "", errors.New("no command and no image ENTRYPOINT: which program runs?")
	}
	bin := path.Base(cmd[0])
	if !df.ships(bin) {
		return "", fmt.Errorf("command %q: the image has no %s (it ships %v)", cmd[0], bin, df.binaries)
	}
	switch p := config.Program(bin); p {
	case config.ProgramReceiver, config.ProgramWorker, config.ProgramStandalone:
		return p, nil
	}
	return "", fmt.Errorf("command %q is not a followpush program", cmd[0])
}

// isOurImage reports whether image is the followpush image (any registry,
// any tag).
func isOurImage(image string) bool {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return path.Base(image) == "followpush"
}

// portNumber returns the port number of a "9091" / 9091 style value.
func portNumber(v any) (int, bool) {
	switch v := v.(type) {
	case int:
		return v, true
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	return 0, false
}

// report fails t with every error.
func report(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

// TestEveryYAMLFileIsChecked parses every YAML file under deploy/ (all of
// its documents) and makes sure one of this package's checks owns it, so a
// new file cannot slip in unchecked.
func TestEveryYAMLFileIsChecked(t *testing.T) {
	t.Parallel()
	files := readDeployFiles(t)
	n := 0
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !isYAML(name) {
			continue
		}
		n++
		docs, err := yamlDocs(files[name])
		if err != nil {
			t.Errorf("deploy/%s: %v", name, err)
			continue
		}
		if len(docs) == 0 {
			t.Errorf("deploy/%s: no YAML documents", name)
		}
		if owner := yamlOwner(name); owner == "" {
			t.Errorf("deploy/%s: no check in test/deploycheck covers this file; add one (see yamlOwner)", name)
		}
	}
	if n < 3 {
		t.Errorf("found %d YAML files under deploy/, want compose, Kubernetes and Prometheus files", n)
	}
}

// yamlOwner names the test that checks the deploy/ YAML file name ("" for
// none).
func yamlOwner(name string) string {
	switch {
	case name == "compose.yaml":
		return "TestCompose"
	case path.Dir(name) == "k8s":
		return "TestKubernetes"
	case name == "prometheus/alerts.yaml":
		return "TestAlertRules"
	case name == AlertTestsFile:
		// Also run, with Prometheus's rule engine, by the module
		// tools/ruletest.
		return "TestAlertRuleTestsCoverEveryAlert"
	}
	return ""
}

// sameKeys compares two sets both ways, in sorted order: an error
// formatted with missing (%s: the key) for each key of want not in got, and
// with extra for each key of got not in want.
func sameKeys(want, got map[string]bool, missing, extra string) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !got[k] {
			errs = append(errs, fmt.Errorf(missing, k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if !want[k] {
			errs = append(errs, fmt.Errorf(extra, k))
		}
	}
	return errs
}
