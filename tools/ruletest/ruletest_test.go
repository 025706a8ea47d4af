package ruletest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const (
	rulesFile = "../../deploy/prometheus/alerts.yaml"
	testsFile = "../../deploy/prometheus/alerts_test.yaml"
)

// The unit tests of followpush's alert rules pass, and every alert of
// alerts.yaml fires in at least one of them.
func TestDeployAlertRules(t *testing.T) {
	t.Parallel()
	res, err := Run(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Failures {
		t.Error(f)
	}
	rgs, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), promslog.NewNopLogger())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	n := 0
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if res.Fired[r.Alert] == 0 {
				t.Errorf("alert %s fires in no test of %s", r.Alert, testsFile)
			}
		}
	}
	if n < 10 {
		t.Fatalf("found only %d alerts in %s", n, rulesFile)
	}
}

// The runner fails a test whose expectation is wrong: a missing or extra
// alert, other labels, other annotations, a counter born at 1 (whose first
// event increase() cannot see), and a changed rule. Where promtool is
// installed, it fails each of them too.
func TestRunnerCatchesWrongExpectations(t *testing.T) {
	t.Parallel()
	orig, err := os.ReadFile(testsFile)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, old, new, want string
	}{
		{"alert expected quiet", "tests", "      - eval_time: 5m\n        alertname: FollowpushStaleFollowsDropped\n        exp_alerts: []\n", "      - eval_time: 11m\n        alertname: FollowpushStaleFollowsDropped\n        exp_alerts: []\n", "FollowpushStaleFollowsDropped at 11m"},
		{"wrong label", "tests", "exp_labels: {severity: critical}\n            exp_annotations:\n              summary: \"FCM rejected", "exp_labels: {severity: warning}\n            exp_annotations:\n              summary: \"FCM rejected", "FollowpushInvalidMessage at 4m"},
		{"wrong annotation", "tests", "About 1 follow tasks", "About 2 follow tasks", "FollowpushStaleFollowsDropped at 11m"},
		{"counter born at 1", "tests", "values: '0x5 1x20'", "values: '_x5 1x20'", "FollowpushStaleFollowsDropped at 11m"},
		{"rule changed", "rules", `sum(increase(followpush_tasks_total{result="stale"}[15m])) > 0`, `sum(increase(followpush_tasks_total{result="stale"}[15m])) > 1`, "FollowpushStaleFollowsDropped at 11m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			testsText, rulesText := string(orig), string(rules)
			target := &testsText
			if tt.file == "rules" {
				target = &rulesText
			}
			if !strings.Contains(*target, tt.old) {
				t.Fatalf("%s no longer contains %q: update this case", tt.file, tt.old)
			}
			*target = strings.Replace(*target, tt.old, tt.new, 1)
			for name, text := range map[string]string{"alerts.yaml": rulesText, "alerts_test.yaml": testsText} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			res, err := Run(filepath.Join(dir, "alerts_test.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(res.Failures, func(f string) bool { return strings.Contains(f, tt.want) }) {
				t.Errorf("failures %q, want one about %q", res.Failures, tt.want)
			}
			// Where promtool is installed, it fails the same file.
			if bin, err := exec.LookPath("promtool"); err == nil {
				if out, err := exec.Command(bin, "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput(); err == nil {
					t.Errorf("promtool test rules passes the mistake:\n%s", out)
				}
			}
		})
	}
}

// Where promtool is installed, it agrees: `promtool test rules` passes on
// the same file. (CI has no promtool: building it takes many minutes.)
func TestPromtoolAgrees(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not on PATH")
	}
	out, err := exec.Command(bin, "test", "rules", testsFile).CombinedOutput()
	if err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}
