package deploycheck

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/followpush/followpush/config"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

type composeService struct {
	Image       string `yaml:"image"`
	Build       any    `yaml:"build"`
	Entrypoint  any    `yaml:"entrypoint"` // string or list
	Command     any    `yaml:"command"`    // string or list
	Environment any    `yaml:"environment"`
	Ports       []any  `yaml:"ports"`
	Expose      []any  `yaml:"expose"`
	DependsOn   any    `yaml:"depends_on"`
	Deploy      struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Secrets         []any  `yaml:"secrets"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	ReadOnly        bool   `yaml:"read_only"`
	Healthcheck     *struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
	Volumes []any `yaml:"volumes"`
}

// words returns a Compose command/entrypoint as a list.
func words(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, w := range v {
			out = append(out, fmt.Sprint(w))
		}
		return out
	}
	return nil
}

// environment returns a service's environment (map or list syntax).
// Values holding ${...} are interpolated from .env at run time: not
// literal; their sample is the value .env.example (dotenv) gives them.
func environment(v any, dotenv map[string]string) map[string]envVar {
	env := map[string]envVar{}
	add := func(k string, val *string) {
		switch {
		case val == nil:
			env[k] = envVar{from: "the shell (pass-through)", sampleErr: errors.New("passed through from the shell: no value to check")}
		case strings.Contains(*val, "$"):
			sample, err := interpolate(*val, dotenv)
			env[k] = envVar{value: *val, from: "interpolation " + *val, sample: sample, sampleErr: err}
		default:
			env[k] = literalVar(*val, "environment")
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for k, val := range v {
			if val == nil {
				add(k, nil)
				continue
			}
			s := fmt.Sprint(val)
			add(k, &s)
		}
	case []any:
		for _, item := range v {
			k, val, ok := strings.Cut(fmt.Sprint(item), "=")
			if !ok {
				add(k, nil)
				continue
			}
			add(k, &val)
		}
	}
	return env
}

// containerPort returns the container side of a Compose port mapping
// ("8080", "8080:8080", "127.0.0.1:8081:8080", "8080/tcp", long syntax).
func containerPort(v any) (int, bool) {
	if m, ok := v.(map[string]any); ok {
		return portNumber(m["target"])
	}
	s := fmt.Sprint(v)
	s, _, _ = strings.Cut(s, "/")
	return portNumber(s[strings.LastIndex(s, ":")+1:])
}

// composeWorkers is how many worker replicas compose.yaml runs (issue 5:
// "workers scaled to 3"; deploy/README.md says three).
const composeWorkers = 3

// composeMount is one volume mount of a Compose service.
type composeMount struct {
	source, target string
	readOnly       bool
}

// mounts returns a service's volume mounts (short "src:target[:ro]" or
// long syntax).
func (svc composeService) mounts() []composeMount {
	var out []composeMount
	for _, v := range svc.Volumes {
		if m, ok := v.(map[string]any); ok {
			ro, _ := m["read_only"].(bool)
			out = append(out, composeMount{source: fmt.Sprint(m["source"]), target: fmt.Sprint(m["target"]), readOnly: ro})
			continue
		}
		parts := strings.Split(fmt.Sprint(v), ":")
		switch len(parts) {
		case 1:
			out = append(out, composeMount{target: parts[0]})
		case 2:
			out = append(out, composeMount{source: parts[0], target: parts[1]})
		default:
			out = append(out, composeMount{source: parts[0], target: parts[1], readOnly: strings.Contains(parts[2], "ro")})
		}
	}
	return out
}

// composeRedis is where a Compose service's Redis is: host:port and
// database for a single Redis, or the cluster nodes.
type composeRedis struct {
	addr    string
	db      int
	cluster string // sorted, comma-separated
}

func (r composeRedis) String() string {
	if r.cluster != "" {
		return "cluster " + r.cluster
	}
	return fmt.Sprintf("%s db %d", r.addr, r.db)
}

// programRedis returns the Redis a followpush workload uses, from its
// sample environment.
func programRedis(w workload) (composeRedis, bool) {
	if v, ok := w.env["REDIS_CLUSTER_ADDRS"]; ok && v.sampleErr == nil && v.sample != "" {
		return composeRedis{cluster: normalizeAddrs(v.sample)}, true
	}
	v, ok := w.env["REDIS_URL"]
	if !ok || v.sampleErr != nil {
		return composeRedis{}, false
	}
	addr, db, err := redisAddr(v.sample)
	return composeRedis{addr: addr, db: db}, err == nil
}

// checkAsynqmonImage checks that image is hibiken/asynqmon at the version
// of github.com/hibiken/asynqmon in go.mod (Docker tags drop the "v").
func checkAsynqmonImage(image string) error {
	gomod, err := readGoMod()
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/hibiken/asynqmon\s+v(\S+)`).FindSubmatch(gomod)
	if m == nil {
		return errors.New("go.mod does not require github.com/hibiken/asynqmon")
	}
	if want := "hibiken/asynqmon:" + string(m[1]); image != want {
		return fmt.Errorf("image %q, want %q: pinned to the asynqmon of go.mod", image, want)
	}
	return nil
}

// asynqmonRedis returns the Redis the asynqmon service's flags point at
// (--redis-addr and --redis-db, --redis-url, or --redis-cluster-nodes;
// asynqmon's defaults 127.0.0.1:6379 and 0).
func asynqmonRedis(args []string) (composeRedis, error) {
	r := composeRedis{addr: "127.0.0.1:6379"}
	for _, a := range args {
		name, v, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "redis-addr":
			r.addr = v
		case "redis-db":
			n, err := strconv.Atoi(v)
			if err != nil {
				return r, fmt.Errorf("--redis-db=%q: %v", v, err)
			}
			r.db = n
		case "redis-url":
			addr, db, err := redisAddr(v)
			if err != nil {
				return r, fmt.Errorf("--redis-url=%q: %v", v, err)
			}
			r.addr, r.db = addr, db
		case "redis-cluster-nodes":
			r.cluster = normalizeAddrs(v)
		}
	}
	return r, nil
}

// normalizeAddrs returns a comma-separated address list sorted, without
// blanks.
func normalizeAddrs(list string) string {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// checkCompose checks deploy/compose.yaml, with .env.example standing in
// for the operator's .env.
func checkCompose(b, envExample []byte, df dockerfile) []error {
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		return []error{fmt.Errorf("compose.yaml: %v", err)}
	}
	dotenv := parseDotEnv(envExample)
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf("compose.yaml: "+format, args...)) }

	// Redis: durable, never evicting, health-checked.
	redis, ok := cf.Services["redis"]
	if !ok {
		fail("no redis service")
	} else {
		args := words(redis.Command)
		flags := map[string]string{}
		for i := 0; i < len(args); i++ {
			if name, ok := strings.CutPrefix(args[i], "--"); ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				flags[name] = args[i+1]
				i++
			}
		}
		for _, want := range [][2]string{{"appendonly", "yes"}, {"appendfsync", "everysec"}, {"maxmemory-policy", "noeviction"}} {
			if flags[want[0]] != want[1] {
				fail("redis: --%s is %q, want %s (docs/operations.md: Running it)", want[0], flags[want[0]], want[1])
			}
		}
		if redis.Healthcheck == nil || !slices.Contains(words(redis.Healthcheck.Test), "ping") {
			fail("redis: no healthcheck running redis-cli ping")
		}
		if !slices.ContainsFunc(redis.Volumes, func(v any) bool { return strings.HasSuffix(fmt.Sprint(v), ":/data") }) {
			fail("redis: no volume on /data: the append-only file would not survive the container")
		}
	}

	seen := map[config.Program]bool{}
	redises := map[string]composeRedis{} // by service
	workers := 0
	for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
		svc := cf.Services[name]
		if !isOurImage(svc.Image) {
			continue
		}
		where := "compose.yaml service " + name
		sfail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: "+format, append([]any{where}, args...)...))
		}
		cmd := words(svc.Entrypoint)
		prog, err := programOf(cmd, df)
		if err != nil {
			sfail("%v", err)
			continue
		}
		seen[prog] = true
		w := workload{where: where, name: name, program: prog, env: environment(svc.Environment, dotenv)}
		errs = append(errs, checkWorkload(w)...)
		if r, ok := programRedis(w); ok {
			redises[name] = r
		}
		if prog == config.ProgramWorker {
			workers += 1
			if svc.Deploy.Replicas == nil || *svc.Deploy.Replicas != composeWorkers {
				got := "unset (1)"
				if svc.Deploy.Replicas != nil {
					got = strconv.Itoa(*svc.Deploy.Replicas)
				}
				sfail("deploy.replicas is %s, want %d workers (deploy/README.md)", got, composeWorkers)
			}
		}
		if v, ok := w.env["SPOOL_DIR"]; ok {
			errs = append(errs, checkComposeSpool(where, v, svc, cf, df)...)
		}

		port, err := w.listenPort()
		mport, mname, merr := w.metricsPort()
		if err == nil && merr == nil {
			var declared, published []int
			for i, p := range append(append([]any{}, svc.Ports...), svc.Expose...) {
				if n, ok := containerPort(p); ok {
					declared = append(declared, n)
					if i < len(svc.Ports) {
						published = append(published, n)
					}
				}
			}
			if !slices.Contains(declared, port) {
				sfail("publishes/exposes %v, not %d where the %s listens (%s)", declared, port, prog, listenSetting(prog))
			}
			if !slices.Contains(declared, mport) {
				sfail("publishes/exposes %v, not %d where the %s serves /metrics (%s)", declared, mport, prog, mname)
			}
			if mport != port && slices.Contains(published, mport) {
				sfail("publishes %d, its /metrics (%s), on the host: expose it to the Compose network only", mport, mname)
			}
			for _, n := range declared {
				if n != port && n != mport {
					sfail("publishes/exposes %d, but the %s listens on %d", n, prog, port)
				}
			}
		}

		if dep, ok := svc.DependsOn.(map[string]any); !ok {
			sfail("depends_on redis with condition service_healthy is missing (our images have no healthcheck of their own)")
		} else if r, ok := dep["redis"].(map[string]any); !ok || r["condition"] != "service_healthy" {
			sfail("depends_on redis is not condition: service_healthy")
		}
		if v, ok := w.env["REDIS_URL"]; !ok {
			sfail("no REDIS_URL: the default 127.0.0.1 is the container itself")
		} else if v.literal {
			if addr, _, err := redisAddr(v.value); err == nil {
				host, _, _ := strings.Cut(addr, ":")
				if _, ok := cf.Services[host]; !ok {
					sfail("REDIS_URL host %q is not a compose service", host)
				}
			}
		}
		if !svc.ReadOnly {
			sfail("read_only is not true (the programs write only to volumes)")
		}

		st, err := w.shutdownTimeout()
		if err != nil {
			sfail("%v", err)
		} else {
			grace := 10 * time.Second // Docker's default
			if svc.StopGracePeriod != "" {
				if grace, err = time.ParseDuration(svc.StopGracePeriod); err != nil {
					sfail("stop_grace_period %q: %v", svc.StopGracePeriod, err)
				}
			}
			if grace <= st {
				sfail("stop_grace_period %s is not above SHUTDOWN_TIMEOUT %s: Docker would SIGKILL in-flight work", grace, st)
			}
		}

		if v, ok := w.env["GOOGLE_APPLICATION_CREDENTIALS"]; ok {
			var targets []string
			for _, s := range svc.Secrets {
				src, target := fmt.Sprint(s), fmt.Sprint(s)
				if m, ok := s.(map[string]any); ok {
					src, target = fmt.Sprint(m["source"]), fmt.Sprint(m["source"])
					if t, ok := m["target"]; ok {
						target = fmt.Sprint(t)
					}
				}
				if _, ok := cf.Secrets[src]; !ok {
					sfail("uses secret %q, which compose.yaml does not define", src)
				}
				if !path.IsAbs(target) {
					target = "/run/secrets/" + target
				}
				targets = append(targets, target)
			}
			if !slices.Contains(targets, v.value) {
				sfail("GOOGLE_APPLICATION_CREDENTIALS=%q is none of its secrets' paths %v", v.value, targets)
			}
		}
	}
	for _, p := range []config.Program{config.ProgramReceiver, config.ProgramWorker} {
		if !seen[p] {
			fail("no service runs the %s", p)
		}
	}

	if workers != 1 {
		fail("%d services run the worker, want one scaled to %d", workers, composeWorkers)
	}

	// asynqmon watches the same Redis and database as the programs.
	mon, ok := cf.Services["asynqmon"]
	if !ok {
		fail("no asynqmon service (issue 5: compose runs asynqmon next to the programs)")
		return errs
	}
	// Its image is pinned to the asynqmon the receiver mounts (go.mod), so
	// both UIs are the same release and a pull never brings another.
	if err := checkAsynqmonImage(mon.Image); err != nil {
		fail("asynqmon: %v", err)
	}
	monRedis, err := asynqmonRedis(words(mon.Command))
	if err != nil {
		fail("asynqmon: %v", err)
		return errs
	}
	if len(redises) == 0 {
		fail("asynqmon: no followpush service has a Redis to compare with")
	}
	for _, name := range slices.Sorted(maps.Keys(redises)) {
		if r := redises[name]; r != monRedis {
			fail("asynqmon watches %s, but %s uses %s", monRedis, name, r)
		}
	}
	return errs
}

// checkComposeSpool checks that SPOOL_DIR is on a writable named volume
// whose mount point the image creates owned by its (non-root) user: Docker
// gives a new named volume the ownership of the directory it is mounted
// over, and a root-owned spool would make the receiver fail at start.
func checkComposeSpool(where string, v envVar, svc composeService, cf composeFile, df dockerfile) []error {
	if v.sampleErr != nil || !path.IsAbs(v.sample) {
		return []error{fmt.Errorf("%s: SPOOL_DIR=%q must be an absolute path in the manifest", where, v.sample)}
	}
	dir := path.Clean(v.sample)
	for _, m := range svc.mounts() {
		if m.target != dir && !strings.HasPrefix(dir, path.Clean(m.target)+"/") {
			continue
		}
		var errs []error
		if m.readOnly {
			errs = append(errs, fmt.Errorf("%s: SPOOL_DIR %s is on a read-only mount", where, dir))
		}
		if _, named := cf.Volumes[m.source]; !named {
			errs = append(errs, fmt.Errorf("%s: SPOOL_DIR %s is on %q, not a named volume of compose.yaml", where, dir, m.source))
		} else if owner, ok := df.ownedDirs[path.Clean(m.target)]; !ok || owner != df.user {
			errs = append(errs, fmt.Errorf("%s: the image does not create %s owned by its user %s (a COPY --chown of a directory made in the build stage): the volume would be root-owned and unwritable", where, m.target, df.user))
		}
		return errs
	}
	return []error{fmt.Errorf("%s: SPOOL_DIR %s is on no volume: with read_only it cannot be written, and without a volume it would not survive the container", where, dir)}
}

var interpolationRE = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`)

// checkEnvExample checks that .env.example names every variable
// compose.yaml interpolates, and nothing else.
func checkEnvExample(compose, example []byte) []error {
	used := map[string]bool{}
	for _, m := range interpolationRE.FindAllSubmatch(compose, -1) {
		used[string(m[1])] = true
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(example), "\n") {
		line = strings.TrimSpace(line)
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			documented[k] = true
		}
	}
	return sameKeys(used, documented,
		".env.example lacks %s, which compose.yaml uses",
		".env.example sets %s, which compose.yaml never uses")
}

func TestCompose(t *testing.T) {
	t.Parallel()
	files := readDeployFiles(t)
	report(t, checkCompose(files["compose.yaml"], files[".env.example"], loadDockerfile(t)))
	report(t, checkEnvExample(files["compose.yaml"], files[".env.example"]))
}
