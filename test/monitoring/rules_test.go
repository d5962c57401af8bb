// Package monitoring tests config/prometheus: the alert rules pass
// `promtool check rules` and their unit tests (`promtool test rules`),
// every alert is tested firing and not firing, and every alert's runbook is
// a section of docs/runbooks.md.
package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	ruleFile   = "../../config/prometheus/prometheusrule.yaml"
	testsDir   = "../../config/prometheus/tests"
	runbooks   = "../../docs/runbooks.md"
	runbookURL = "https://github.com/loadshed/loadshed/blob/main/docs/runbooks.md#"
)

// promtool returns the path of the pinned promtool, from LOADSHED_PROMTOOL.
func promtool(t *testing.T) string {
	t.Helper()
	p := os.Getenv("LOADSHED_PROMTOOL")
	if p == "" {
		t.Fatal("LOADSHED_PROMTOOL is not set: run `make test`, or `make promtool` and " +
			"export LOADSHED_PROMTOOL=$PWD/bin/promtool-<version>")
	}
	return p
}

// rule is an alert rule, as much as the tests read of it.
type rule struct {
	Alert       string            `json:"alert"`
	Annotations map[string]string `json:"annotations"`
}

// prometheusRule is the PrometheusRule object.
type prometheusRule struct {
	Kind string `json:"kind"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// specFile writes the PrometheusRule's spec, a Prometheus rule file, to
// dir/rules.yaml, and returns the object's alerts.
func specFile(t *testing.T, dir string) []rule {
	t.Helper()
	b, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(obj["spec"])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PrometheusRule" {
		t.Fatalf("%s holds a %q, want a PrometheusRule", ruleFile, pr.Kind)
	}
	var alerts []rule
	for _, g := range pr.Spec.Groups {
		alerts = append(alerts, g.Rules...)
	}
	return alerts
}

func TestAlertRulesPassPromtool(t *testing.T) {
	bin := promtool(t)
	dir := t.TempDir()
	specFile(t, dir)
	tests, err := filepath.Glob(filepath.Join(testsDir, "*.yaml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule tests in %s (%v)", testsDir, err)
	}
	args := append(make([]string, 0, 2+len(tests)), "test", "rules")
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, filepath.Base(f))
	}
	for _, cmd := range [][]string{{"check", "rules", "rules.yaml"}, args} {
		c := exec.Command(bin, cmd...)
		c.Dir = dir
		out, err := c.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
}

// ruleTests is a promtool test file, as much as the tests read of it.
type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestEveryAlertIsTestedFiringAndNotFiring(t *testing.T) {
	firing, silent := map[string]bool{}, map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(testsDir, "*.yaml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rt ruleTests
		if err := yaml.Unmarshal(b, &rt); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range rt.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
		}
	}
	for _, a := range specFile(t, t.TempDir()) {
		if !firing[a.Alert] || !silent[a.Alert] {
			t.Errorf("alert %s is tested firing: %v, not firing: %v; want both", a.Alert, firing[a.Alert], silent[a.Alert])
		}
	}
}

// heading is a section of docs/runbooks.md: "## AlertName".
var heading = regexp.MustCompile(`(?m)^## (\w+)\s*$`)

func TestEveryAlertHasARunbook(t *testing.T) {
	b, err := os.ReadFile(runbooks)
	if err != nil {
		t.Fatal(err)
	}
	matches := heading.FindAllStringSubmatch(string(b), -1)
	sections := make([]string, 0, len(matches))
	for _, m := range matches {
		sections = append(sections, m[1])
	}
	alerts := specFile(t, t.TempDir())
	for _, a := range alerts {
		if want := runbookURL + strings.ToLower(a.Alert); a.Annotations["runbook_url"] != want {
			t.Errorf("alert %s: runbook_url %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		if !slices.Contains(sections, a.Alert) {
			t.Errorf("alert %s has no section \"## %s\" in docs/runbooks.md", a.Alert, a.Alert)
		}
		for _, k := range []string{"summary", "description"} {
			if a.Annotations[k] == "" {
				t.Errorf("alert %s has no %s", a.Alert, k)
			}
		}
	}
	for _, s := range sections {
		if !slices.ContainsFunc(alerts, func(a rule) bool { return a.Alert == s }) {
			t.Errorf("docs/runbooks.md has a section for %s, which is no alert", s)
		}
	}
}
