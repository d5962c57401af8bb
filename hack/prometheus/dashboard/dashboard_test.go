// Package dashboard tests config/grafana/loadshed.json: every query parses
// with Prometheus's PromQL parser once Grafana's variables are substituted,
// and every metric it names is one the operator exports or a kube-apiserver
// serves. It lives in the hack/prometheus module, which has the parser,
// so that Prometheus's dependencies stay out of the operator's module; the
// operator's test TestMetricNamesFileIsCurrent keeps ../testdata/metric-names.txt,
// the names it checks against, equal to the operator's registry.
package dashboard

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

const (
	dashboardFile = "../../../config/grafana/loadshed.json"
	namesFile     = "../testdata/metric-names.txt"
	// policySentinel stands for $policy: a matcher on policy must carry it.
	policySentinel = "__policy__"
)

// prometheusOwn are series Prometheus makes itself for every target.
var prometheusOwn = map[string]bool{"up": true}

// dashboard is as much of a Grafana dashboard as the tests read.
type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title      string      `json:"title"`
	Type       string      `json:"type"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// readNames reads the metric names the operator exports and the
// kube-apiserver serves.
func readNames(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(namesFile)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			names[f[1]] = f[0]
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s names no metric", namesFile)
	}
	return names
}

// grafanaVariable matches $name, ${name} and ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// substitute replaces Grafana's variables with values PromQL accepts: a
// range for the interval ones, a sentinel for $policy, "x" for others.
func substitute(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVariable.FindStringSubmatch(v)
		name := m[1] + m[2]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "policy":
			return policySentinel
		}
		return "x"
	})
}

// queries returns every PromQL query of the dashboard, by where it is.
func queries(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				out[p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		out["variable "+v.Name] = m[1]
	}
	return out
}

func TestEveryQueryParsesAndNamesKnownMetrics(t *testing.T) {
	names := readNames(t)
	qs := queries(t, readDashboard(t))
	if len(qs) < 10 {
		t.Fatalf("%d queries in the dashboard; it should have many more", len(qs))
	}
	for where, q := range qs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(q))
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, q, err)
			continue
		}
		for _, vs := range selectors(expr) {
			checkSelector(t, where, vs, names)
		}
	}
}

// selectors returns the vector selectors of an expression.
func selectors(expr parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// checkSelector checks that a selector names a known metric and that a
// policy's metric is filtered by the policy variable.
func checkSelector(t *testing.T, where string, vs *parser.VectorSelector, names map[string]string) {
	t.Helper()
	name := vs.Name
	family := name
	if _, ok := names[name]; !ok {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(name, suffix); cut && names[base] != "" {
				family = base
			}
		}
	}
	if names[family] == "" && !prometheusOwn[name] {
		t.Errorf("%s: metric %q is neither the operator's nor a kube-apiserver's (%s)", where, name, namesFile)
		return
	}
	if !strings.HasPrefix(name, "loadshed_") || strings.HasPrefix(name, "loadshed_sampler_") {
		return
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == "policy" && m.Value == policySentinel {
			return
		}
	}
	if !strings.HasPrefix(where, "variable ") {
		t.Errorf("%s: %s is not filtered by the policy variable (policy=~\"$policy\")", where, name)
	}
}

func TestVariablesAndDatasources(t *testing.T) {
	d := readDashboard(t)
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || !strings.Contains(string(v.Query), "prometheus") {
		t.Errorf("no Prometheus datasource variable named datasource: %+v", v)
	}
	if v, ok := vars["policy"]; !ok || v.Type != "query" {
		t.Errorf("no query variable named policy: %+v", v)
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}") {
				t.Errorf("panel %q does not use the datasource variable: %+v", p.Title, p.Datasource)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}
