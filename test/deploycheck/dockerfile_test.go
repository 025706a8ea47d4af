package deploycheck

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/followpush/followpush/config"
)

// dockerfile is what the checks need from deploy/Dockerfile.
type dockerfile struct {
	stages []stage

	// From the final stage.
	entrypoint    []string // exec-form ENTRYPOINT
	entrypointErr error    // why the ENTRYPOINT is unusable, if it is
	binaries      []string // programs the final stage copies from another stage to /
	user          string   // the last USER
	expose        []int
	hasCmd        bool
	// ownedDirs are directories of the final image made by a COPY --chown
	// of a directory that a build stage created (RUN mkdir -p), with the
	// --chown user.
	ownedDirs map[string]string
}

type stage struct {
	image, name string
	instrs      []instruction
}

type instruction struct {
	line  int
	cmd   string   // upper case: RUN, COPY, ...
	flags []string // --from=build, --mount=...
	args  string   // the rest, continuation lines joined
}

// ships reports whether the image has the program binary bin at /.
func (df dockerfile) ships(bin string) bool { return slices.Contains(df.binaries, bin) }

// parseDockerfile reads a Dockerfile: comments and parser directives are
// dropped, continuation lines joined, instructions grouped by stage.
func parseDockerfile(text string) (dockerfile, error) {
	var df dockerfile
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			line = strings.TrimSuffix(line, `\`) + " " + next
		}
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd)}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var flag string
			flag, rest, _ = strings.Cut(rest, " ")
			in.flags = append(in.flags, flag)
			rest = strings.TrimSpace(rest)
		}
		in.args = rest
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			if len(f) == 0 {
				return df, fmt.Errorf("line %d: FROM without an image", start)
			}
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd == "ARG" {
				continue
			}
			return df, fmt.Errorf("line %d: %s before the first FROM", start, in.cmd)
		}
		st := &df.stages[len(df.stages)-1]
		st.instrs = append(st.instrs, in)
	}
	if len(df.stages) == 0 {
		return df, errors.New("no FROM")
	}
	final := df.stages[len(df.stages)-1]
	df.entrypointErr = errors.New("the final stage has no ENTRYPOINT")
	for _, in := range final.instrs {
		switch in.cmd {
		case "ENTRYPOINT":
			df.entrypoint, df.entrypointErr = nil, nil
			if err := json.Unmarshal([]byte(in.args), &df.entrypoint); err != nil || len(df.entrypoint) == 0 {
				df.entrypoint = nil
				df.entrypointErr = fmt.Errorf("line %d: ENTRYPOINT %s is not exec form (a JSON array): with no shell in the image the shell form cannot run", in.line, in.args)
			}
		case "CMD":
			df.hasCmd = true
		case "USER":
			df.user = in.args
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				p, _, _ = strings.Cut(p, "/")
				if n, err := strconv.Atoi(p); err == nil {
					df.expose = append(df.expose, n)
				}
			}
		case "COPY":
			from := flagValue(in.flags, "--from")
			f := strings.Fields(in.args)
			if from == "" || len(f) < 2 {
				continue
			}
			srcs, dest := f[:len(f)-1], f[len(f)-1]
			if path.Clean(dest) == "/" {
				for _, src := range srcs {
					df.binaries = append(df.binaries, path.Base(src))
				}
				continue
			}
			owner := flagValue(in.flags, "--chown")
			if owner == "" {
				continue
			}
			made := df.madeDirs(from)
			for _, src := range srcs {
				src = path.Clean(src)
				for _, d := range made {
					if rel, ok := strings.CutPrefix(d, src+"/"); ok {
						if df.ownedDirs == nil {
							df.ownedDirs = map[string]string{}
						}
						df.ownedDirs[path.Join(dest, rel)] = owner
					}
				}
			}
		}
	}
	return df, nil
}

// flagValue returns the value of an instruction flag (--from=build).
func flagValue(flags []string, name string) string {
	for _, f := range flags {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

// madeDirs returns the directories the named stage creates with mkdir -p
// (and their parents).
func (df dockerfile) madeDirs(stageName string) []string {
	var dirs []string
	for _, st := range df.stages {
		if st.name != stageName {
			continue
		}
		for _, in := range st.instrs {
			if in.cmd != "RUN" {
				continue
			}
			words, err := shellWords(in.args)
			if err != nil {
				continue
			}
			for i := 0; i < len(words); i++ {
				if words[i] != "mkdir" {
					continue
				}
				for _, a := range words[i+1:] {
					if a == "&&" || a == ";" {
						break
					}
					if strings.HasPrefix(a, "-") {
						continue
					}
					for d := path.Clean(a); d != "/" && d != "."; d = path.Dir(d) {
						dirs = append(dirs, d)
					}
				}
			}
		}
	}
	return dirs
}

// goBuild is the go build command of the Dockerfile's build stage.
type goBuild struct {
	stage    stage
	env      map[string]string // NAME=VALUE words before "go build", and the stage's ENV
	args     []string          // the words after "go build"
	outDir   string            // -o
	packages []string          // ./cmd/...
}

// goBuild finds the one RUN that runs go build.
func (df dockerfile) goBuild() (goBuild, error) {
	var found []goBuild
	for _, st := range df.stages {
		env := map[string]string{}
		for _, in := range st.instrs {
			switch in.cmd {
			case "ENV":
				words, err := shellWords(in.args)
				if err != nil {
					return goBuild{}, fmt.Errorf("line %d: %w", in.line, err)
				}
				if len(words) == 2 && !strings.Contains(words[0], "=") {
					env[words[0]] = words[1]
					continue
				}
				for _, w := range words {
					if k, v, ok := strings.Cut(w, "="); ok {
						env[k] = v
					}
				}
			case "RUN":
				words, err := shellWords(in.args)
				if err != nil {
					return goBuild{}, fmt.Errorf("line %d: %w", in.line, err)
				}
				for i := 0; i+1 < len(words); i++ {
					if words[i] != "go" || words[i+1] != "build" {
						continue
					}
					gb := goBuild{stage: st, env: map[string]string{}}
					for k, v := range env {
						gb.env[k] = v
					}
					for j := i - 1; j >= 0 && isAssignment(words[j]); j-- {
						k, v, _ := strings.Cut(words[j], "=")
						gb.env[k] = v
					}
					for _, w := range words[i+2:] {
						if w == "&&" || w == ";" || w == "||" || w == "|" {
							break
						}
						gb.args = append(gb.args, w)
					}
					for j, a := range gb.args {
						switch {
						case a == "-o" && j+1 < len(gb.args):
							gb.outDir = gb.args[j+1]
						case strings.HasPrefix(a, "-o="):
							gb.outDir = strings.TrimPrefix(a, "-o=")
						case strings.HasPrefix(a, "./"):
							gb.packages = append(gb.packages, a)
						}
					}
					found = append(found, gb)
				}
			}
		}
	}
	if len(found) != 1 {
		return goBuild{}, fmt.Errorf("want exactly one RUN ... go build, found %d", len(found))
	}
	return found[0], nil
}

var assignmentRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

func isAssignment(w string) bool { return assignmentRE.MatchString(w) }

// shellWords splits a shell command line into words, honouring single and
// double quotes and backslashes (enough for a Dockerfile RUN).
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// goModVersions returns go.mod's go directive and its toolchain directive
// (without the "go" prefix; "" when go.mod has none).
func goModVersions(gomod []byte) (goVersion, toolchain string, err error) {
	m := regexp.MustCompile(`(?m)^go\s+(\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(gomod)
	if m == nil {
		return "", "", errors.New("go.mod has no go directive")
	}
	goVersion = string(m[1])
	if m := regexp.MustCompile(`(?m)^toolchain\s+go(\S+)\s*$`).FindSubmatch(gomod); m != nil {
		toolchain = string(m[1])
	}
	return goVersion, toolchain, nil
}

// readGoMod returns the module's go.mod.
func readGoMod() ([]byte, error) { return os.ReadFile(filepath.Join(repoRoot, "go.mod")) }

// goVersionParts splits "1.26.10" into numbers; missing parts are 0.
func goVersionParts(v string) ([3]int, bool) {
	var out [3]int
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

// checkGoImage checks the Go version of the build stage's golang image tag
// (golang:1.26.10-bookworm) against go.mod: exactly the toolchain directive
// when go.mod has one (the version the module is built and tested with, a
// security-fix release), else at least the go directive.
func checkGoImage(image string, gomod []byte) error {
	goVersion, toolchain, err := goModVersions(gomod)
	if err != nil {
		return err
	}
	_, tag, _ := strings.Cut(image, ":")
	v, _, _ := strings.Cut(tag, "-")
	got, ok := goVersionParts(v)
	if !ok || strings.Count(v, ".") != 2 {
		return fmt.Errorf("the build stage is FROM %s: pin a full Go version (golang:X.Y.Z-...), so builds are reproducible", image)
	}
	if toolchain != "" {
		if v != toolchain {
			return fmt.Errorf("the build stage is FROM %s, want Go %s (go.mod's toolchain directive)", image, toolchain)
		}
		return nil
	}
	min, _ := goVersionParts(goVersion)
	if got[0] != min[0] || got[1] != min[1] || got[2] < min[2] {
		return fmt.Errorf("the build stage is FROM %s, want Go %d.%d.x, at least %s (go.mod's go directive)", image, min[0], min[1], goVersion)
	}
	return nil
}

// imagePrograms are the programs the image ships (tools/loadtest and other
// tools are not deployed).
var imagePrograms = []config.Program{config.ProgramReceiver, config.ProgramWorker, config.ProgramStandalone}

// checkDockerfile checks deploy/Dockerfile: a Go build stage that builds
// every program with CGO_ENABLED=0, a final stage that runs as non-root,
// ships the binaries, exposes the default ports and has an exec-form
// ENTRYPOINT.
func checkDockerfile(df dockerfile, gomod []byte) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf("Dockerfile: "+format, args...)) }
	if len(df.stages) < 2 {
		fail("want a multi-stage build (a Go build stage and a small final stage), found %d stage(s)", len(df.stages))
	}
	gb, err := df.goBuild()
	if err != nil {
		fail("%v", err)
		return errs
	}
	image, _, _ := strings.Cut(gb.stage.image, ":")
	if path.Base(image) != "golang" {
		fail("the build stage is FROM %s, want an official golang image", gb.stage.image)
	}
	if err := checkGoImage(gb.stage.image, gomod); err != nil {
		fail("%v", err)
	}
	if gb.env["CGO_ENABLED"] != "0" {
		fail("go build runs without CGO_ENABLED=0: the binaries would need libc, which distroless/static lacks")
	}
	if !slices.Contains(gb.args, "-trimpath") {
		fail("go build without -trimpath")
	}
	for _, p := range imagePrograms {
		if !slices.Contains(gb.packages, "./cmd/"+string(p)) {
			fail("go build does not build ./cmd/%s (it builds %v)", p, gb.packages)
		}
	}
	if gb.outDir == "" {
		fail("go build has no -o directory")
	}
	final := df.stages[len(df.stages)-1]
	finalImage, _, _ := strings.Cut(final.image, ":")
	if final.image == gb.stage.image || (gb.stage.name != "" && final.image == gb.stage.name) || path.Base(finalImage) == "golang" {
		fail("the final stage is the build stage or a Go image (%s): the image would carry the Go toolchain", final.image)
	}
	copied := false
	for _, in := range final.instrs {
		f := strings.Fields(in.args)
		if in.cmd == "COPY" && slices.Contains(in.flags, "--from="+gb.stage.name) && len(f) > 1 && path.Clean(f[len(f)-1]) == "/" {
			copied = true
			for _, src := range f[:len(f)-1] {
				if !strings.HasPrefix(src, strings.TrimSuffix(gb.outDir, "/")+"/") {
					fail("line %d: copies %s, which is not under go build's -o %s", in.line, src, gb.outDir)
				}
			}
		}
	}
	if !copied {
		fail("the final stage copies nothing --from=%s", gb.stage.name)
	}
	for _, p := range imagePrograms {
		if !df.ships(string(p)) {
			fail("the final stage does not ship /%s (it copies %v)", p, df.binaries)
		}
	}
	if !nonRootUser(df.user) {
		fail("the final stage runs as %q: want an explicit non-root USER (distroless nonroot is 65532)", df.user)
	}
	if df.entrypointErr != nil {
		fail("%v", df.entrypointErr)
	} else if !df.ships(path.Base(df.entrypoint[0])) || path.Dir(df.entrypoint[0]) != "/" {
		fail("ENTRYPOINT %v does not run a shipped program (%v)", df.entrypoint, df.binaries)
	}
	if df.hasCmd {
		fail("the final stage has a CMD: Compose command / Kubernetes args would silently replace it; pick the program with the entrypoint / command only")
	}
	for _, pr := range []config.Program{config.ProgramReceiver, config.ProgramWorker} {
		w := workload{where: "Dockerfile", program: pr}
		port, err := w.listenPort()
		if err != nil {
			fail("%v", err)
			continue
		}
		if !slices.Contains(df.expose, port) {
			fail("EXPOSE %v lacks %d, the %s's default %s", df.expose, port, pr, listenSetting(pr))
		}
	}
	return errs
}

// nonRootUser reports whether a Dockerfile USER value names a non-root
// user: a non-zero uid, or a name other than root.
func nonRootUser(user string) bool {
	u, _, _ := strings.Cut(strings.TrimSpace(user), ":")
	if u == "" || u == "root" {
		return false
	}
	if n, err := strconv.Atoi(u); err == nil {
		return n != 0
	}
	return true
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatalf("deploy/Dockerfile: %v", err)
	}
	return df
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	df := loadDockerfile(t)
	gomod, err := readGoMod()
	if err != nil {
		t.Fatal(err)
	}
	report(t, checkDockerfile(df, gomod))
}

// TestGoImageVersion: the build image follows go.mod's toolchain directive
// exactly when there is one, else is at least its go directive.
func TestGoImageVersion(t *testing.T) {
	t.Parallel()
	withToolchain := []byte("module x\n\ngo 1.26.8\n\ntoolchain go1.26.10\n")
	withoutToolchain := []byte("module x\n\ngo 1.26.8\n")
	for _, tt := range []struct {
		image string
		gomod []byte
		ok    bool
	}{
		{"golang:1.26.10-bookworm", withToolchain, true},
		{"golang:1.26.8-bookworm", withToolchain, false},
		{"golang:1.26.11-bookworm", withToolchain, false},
		{"golang:1.26-bookworm", withToolchain, false},
		{"golang:1.26.10-bookworm", withoutToolchain, true},
		{"golang:1.26.8-bookworm", withoutToolchain, true},
		{"golang:1.26.7-bookworm", withoutToolchain, false},
		{"golang:1.25.9-bookworm", withoutToolchain, false},
		{"golang:1.27.0-bookworm", withoutToolchain, false},
	} {
		if err := checkGoImage(tt.image, tt.gomod); (err == nil) != tt.ok {
			t.Errorf("checkGoImage(%s, %q) = %v, want ok=%v", tt.image, tt.gomod, err, tt.ok)
		}
	}
}

// TestREADMEBuildImage: deploy/README.md names the builder image the
// Dockerfile really uses.
func TestREADMEBuildImage(t *testing.T) {
	t.Parallel()
	gb, err := loadDockerfile(t).goBuild()
	if err != nil {
		t.Fatal(err)
	}
	readme := readDeployFiles(t)["README.md"]
	if !strings.Contains(string(readme), "`"+gb.stage.image+"`") {
		t.Errorf("deploy/README.md does not name the build stage's image `%s`", gb.stage.image)
	}
	for _, m := range regexp.MustCompile("`golang:[^`]+`").FindAllString(string(readme), -1) {
		if m != "`"+gb.stage.image+"`" {
			t.Errorf("deploy/README.md names %s, but the Dockerfile builds FROM %s", m, gb.stage.image)
		}
	}
}

// TestDockerignore checks that deploy/Dockerfile.dockerignore (BuildKit
// reads it for `docker build -f deploy/Dockerfile .`) keeps out .git but
// none of the files go build needs.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile.dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns := ignorePatterns(string(b))
	if !ignored(patterns, ".git") {
		t.Error("Dockerfile.dockerignore does not exclude .git")
	}
	var needed []string
	err = filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == "deploy" || strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == "go.mod" || rel == "go.sum" || strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			needed = append(needed, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(needed) < 3 {
		t.Fatalf("found only %v to build", needed)
	}
	for _, p := range needed {
		if ignored(patterns, p) {
			t.Errorf("Dockerfile.dockerignore excludes %s, which go build needs", p)
		}
	}
}

// ignorePatterns returns the patterns of a .dockerignore file.
func ignorePatterns(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// ignored reports whether .dockerignore patterns exclude the
// slash-separated path p: the last matching pattern wins, "!" re-includes,
// a pattern matching a parent directory excludes what is under it, and
// "**/" matches any number of directories.
func ignored(patterns []string, p string) bool {
	out := false
	for _, pat := range patterns {
		neg := strings.HasPrefix(pat, "!")
		pat = strings.Trim(strings.TrimPrefix(pat, "!"), "/")
		if ignoreMatch(pat, p) {
			out = !neg
		}
	}
	return out
}

func ignoreMatch(pat, p string) bool {
	parts := strings.Split(p, "/")
	for n := 1; n <= len(parts); n++ { // p and each of its parents
		cand := strings.Join(parts[:n], "/")
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			segs := strings.Split(cand, "/")
			for i := range segs {
				if m, _ := path.Match(rest, strings.Join(segs[i:], "/")); m {
					return true
				}
			}
			continue
		}
		if m, _ := path.Match(pat, cand); m {
			return true
		}
	}
	return false
}

// TestStaticBuild runs the Dockerfile's own go build command (its
// environment, CGO_ENABLED=0 included, and flags) on ./cmd/... with -o
// pointed at a temporary directory and GOOS=linux, and checks that the
// programs the image ships are static Linux binaries: what the
// distroless/static image runs.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every program; skipped with -short")
	}
	t.Parallel()
	gb, err := loadDockerfile(t).goBuild()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	args := []string{"build", "-buildvcs=false"}
	for i := 0; i < len(gb.args); i++ {
		switch a := gb.args[i]; {
		case a == "-o":
			args = append(args, "-o", out+string(filepath.Separator))
			i++
		case strings.HasPrefix(a, "-o="):
			args = append(args, "-o="+out+string(filepath.Separator))
		case strings.HasPrefix(a, "./"): // the packages: ./cmd/... instead
		default:
			args = append(args, a)
		}
	}
	args = append(args, "./cmd/...")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	cmd := exec.Command(goTool, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOOS=linux")
	for _, k := range slices.Sorted(maps.Keys(gb.env)) {
		cmd.Env = append(cmd.Env, k+"="+gb.env[k])
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cmd.Path, strings.Join(args, " "), err, b)
	}
	for _, pkg := range gb.packages {
		if err := staticELF(filepath.Join(out, path.Base(pkg))); err != nil {
			t.Errorf("%s: %v", pkg, err)
		}
	}
}

// staticELF returns an error unless the file is a statically linked ELF
// executable: no interpreter, no shared libraries.
func staticELF(name string) error {
	f, err := elf.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (has an ELF interpreter): it cannot run on distroless/static")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}

// TestStaticELFCatchesDynamicBinaries checks staticELF against a
// dynamically linked system binary.
func TestStaticELFCatchesDynamicBinaries(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"/bin/sh", "/usr/bin/env", "/bin/ls"} {
		if f, err := elf.Open(name); err == nil {
			dynamic := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
			f.Close()
			if !dynamic {
				continue
			}
			if staticELF(name) == nil {
				t.Errorf("staticELF(%s) = nil for a dynamically linked binary", name)
			}
			return
		}
	}
	t.Skip("no dynamically linked ELF binary on this system to test against")
}
