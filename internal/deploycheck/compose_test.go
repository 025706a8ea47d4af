package deploycheck

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
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
// Values holding ${...} are interpolated from .env at run time: not literal.
func environment(v any) map[string]envVar {
	env := map[string]envVar{}
	add := func(k string, val *string) {
		switch {
		case val == nil:
			env[k] = envVar{from: "the shell (pass-through)"}
		case strings.Contains(*val, "${"):
			env[k] = envVar{value: *val, from: "interpolation " + *val}
		default:
			env[k] = envVar{value: *val, literal: true, from: "environment"}
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

// checkCompose checks deploy/compose.yaml.
func checkCompose(b []byte, df dockerfile) []error {
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		return []error{fmt.Errorf("compose.yaml: %v", err)}
	}
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
				fail("redis: --%s is %q, want %s (README: Operations)", want[0], flags[want[0]], want[1])
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
		w := workload{where: where, name: name, program: prog, env: environment(svc.Environment)}
		errs = append(errs, checkWorkload(w)...)

		port, err := w.listenPort()
		if err == nil {
			var declared []int
			for _, p := range append(append([]any{}, svc.Ports...), svc.Expose...) {
				if n, ok := containerPort(p); ok {
					declared = append(declared, n)
				}
			}
			if !slices.Contains(declared, port) {
				sfail("publishes/exposes %v, not %d where the %s listens (%s)", declared, port, prog, listenSetting(prog))
			}
			for _, n := range declared {
				if n != port {
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
			sfail("read_only is not true (the programs write nothing)")
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

	// asynqmon watches the same Redis.
	if mon, ok := cf.Services["asynqmon"]; ok {
		var addr string
		for _, a := range words(mon.Command) {
			if v, ok := strings.CutPrefix(a, "--redis-addr="); ok {
				addr = v
			}
		}
		for _, name := range slices.Sorted(maps.Keys(cf.Services)) {
			svc := cf.Services[name]
			if v, ok := environment(svc.Environment)["REDIS_URL"]; ok && v.literal && isOurImage(svc.Image) {
				if want, _, err := redisAddr(v.value); err == nil && addr != want {
					fail("asynqmon --redis-addr=%s, but %s uses %s", addr, name, want)
				}
			}
		}
	}
	return errs
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
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(used)) {
		if !documented[k] {
			errs = append(errs, fmt.Errorf(".env.example lacks %s, which compose.yaml uses", k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if !used[k] {
			errs = append(errs, fmt.Errorf(".env.example sets %s, which compose.yaml never uses", k))
		}
	}
	return errs
}

func TestCompose(t *testing.T) {
	t.Parallel()
	files := readDeployFiles(t)
	report(t, checkCompose(files["compose.yaml"], loadDockerfile(t)))
	report(t, checkEnvExample(files["compose.yaml"], files[".env.example"]))
}
