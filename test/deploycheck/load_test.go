package deploycheck

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/followpush/followpush/config"
)

// fileSettings are settings holding the path of a file the config loader
// reads at start: in a manifest the file must come from a mounted
// ConfigMap, whose content the loader check then reads.
var fileSettings = []string{"PUSH_TEMPLATES_FILE"}

// loadCheck runs the program's real config loader (config.LoadReceiver,
// LoadWorker, LoadStandalone) on the environment the manifest gives the
// container: literal values, Compose interpolations resolved with
// .env.example, a Secret's value from secret.example.yaml, and files from
// mounted ConfigMaps. Every problem the loader reports is an error: the
// program would exit 2 at start.
func loadCheck(w workload) []error {
	var errs []error
	env := map[string]string{}
	for name, v := range w.env {
		if v.sampleErr != nil {
			errs = append(errs, fmt.Errorf("%s: env %s (from %s): %v", w.where, name, v.from, v.sampleErr))
			continue
		}
		env[name] = v.sample
	}
	for _, name := range fileSettings {
		p := strings.TrimSpace(env[name])
		if p == "" {
			continue
		}
		content, ok := w.files[p]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s=%s is not a file of a ConfigMap mounted in the container (mounted: %v)", w.where, name, p, slices.Sorted(maps.Keys(w.files))))
			continue
		}
		f, err := os.CreateTemp("", "deploycheck-*")
		if err == nil {
			_, err = f.WriteString(content)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			defer os.Remove(f.Name())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: copy %s for the loader: %v", w.where, p, err))
			continue
		}
		env[name] = f.Name()
	}
	if len(errs) > 0 {
		return errs
	}
	getenv := func(k string) string { return env[k] }
	var err error
	switch w.program {
	case config.ProgramReceiver:
		_, err = config.LoadReceiver(getenv)
	case config.ProgramWorker:
		_, err = config.LoadWorker(getenv)
	case config.ProgramStandalone:
		_, err = config.LoadStandalone(getenv)
	default:
		return []error{fmt.Errorf("%s: no loader for program %q", w.where, w.program)}
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, fmt.Errorf("%s: the %s would exit 2 at start: %s", w.where, w.program, line))
		}
	}
	return errs
}

// parseDotEnv reads a Compose .env file: NAME=VALUE lines, # comments,
// values optionally quoted.
func parseDotEnv(b []byte) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(k)] = v
	}
	return env
}

var composeVarRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate resolves Compose interpolation in s with the variables of
// dotenv: ${VAR}, $VAR, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
// ${VAR?error}, and $$ for a literal $.
func interpolate(s string, dotenv map[string]string) (string, error) {
	var errs []error
	out := composeVarRE.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := composeVarRE.FindStringSubmatch(m)
		name, op, arg := sub[1], sub[2], sub[3]
		if name == "" {
			name = sub[4]
		}
		v, set := dotenv[name]
		switch op {
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?":
			if v == "" {
				errs = append(errs, fmt.Errorf("${%s} is required (%s) but empty in .env.example", name, arg))
			}
		case "?":
			if !set {
				errs = append(errs, fmt.Errorf("${%s} is required (%s) but not in .env.example", name, arg))
			}
		}
		return v
	})
	return out, errors.Join(errs...)
}

func TestInterpolate(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "a", "EMPTY": ""}
	for in, want := range map[string]string{
		"${A}":          "a",
		"$A-x":          "a-x",
		"${EMPTY:-d}":   "d",
		"${EMPTY-d}":    "",
		"${UNSET-d}":    "d",
		"${A:?need A}":  "a",
		"$$A":           "$A",
		"x${UNSET}y":    "xy",
		"${A:-ignored}": "a",
	} {
		got, err := interpolate(in, env)
		if err != nil || got != want {
			t.Errorf("interpolate(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${EMPTY:?need it}", "${UNSET?need it}"} {
		if _, err := interpolate(in, env); err == nil {
			t.Errorf("interpolate(%q): want an error", in)
		}
	}
}
