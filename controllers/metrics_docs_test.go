package controllers

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/test/testutil"
)

// updateNames rewrites metricNamesFile from the registry.
var updateNames = flag.Bool("update-metric-names", false, "rewrite "+metricNamesFile+" from the registry")

const (
	// metricsDoc documents every metric the operator exports.
	metricsDoc = "../docs/metrics.md"
	// metricNamesFile lists the metrics a dashboard or an alert may name:
	// the operator's and the kube-apiserver's. The dashboard's test, in the
	// hack/prometheus module (which has the PromQL parser, kept out of this
	// module's dependencies), reads it.
	metricNamesFile = "../hack/prometheus/testdata/metric-names.txt"
	// apiserverFixture is a kube-apiserver's /metrics, recorded.
	apiserverFixture = "../internal/metrics/testdata/apiserver.txt.gz"
)

// conditionalMetrics are registered but have no series until something
// happens that the test suite does not do.
var conditionalMetrics = []string{
	"leader_election_master_status",             // only while leader election runs (off in the tests)
	"controller_runtime_reconcile_time_seconds", // once a reconcile ran
	"workqueue_depth",                           // once an item was queued
}

// TestEveryMetricIsDocumented fails when a metric of the operator's
// registry is missing from docs/metrics.md, or the doc names one the
// registry does not have.
func TestEveryMetricIsDocumented(t *testing.T) {
	exported := operatorMetrics(t)
	documented := documentedMetrics(t)
	for _, name := range exported {
		if !documented.has(name) {
			t.Errorf("%s is exported but not documented in docs/metrics.md", name)
		}
	}
	for _, name := range documented.names {
		if !slices.Contains(exported, name) {
			t.Errorf("docs/metrics.md documents %s, which the operator does not export", name)
		}
	}
}

// TestMetricNamesFileIsCurrent keeps hack/prometheus/testdata/metric-names.txt
// equal to the operator's registry and the kube-apiserver metrics it knows.
func TestMetricNamesFileIsCurrent(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Metric names a dashboard or alert may use: `operator` from the operator's registry,\n" +
		"# `apiserver` from a recorded kube-apiserver /metrics and the families loadshed reads.\n" +
		"# (go_* left out: they change with Go's version.)\n" +
		"# Generated: go test ./controllers -run TestMetricNamesFileIsCurrent -update-metric-names\n")
	for _, name := range operatorMetrics(t) {
		if strings.HasPrefix(name, "go_") {
			continue // the Go runtime's; they change with Go's version
		}
		fmt.Fprintf(&b, "operator %s\n", name)
	}
	for _, name := range apiserverMetrics(t) {
		fmt.Fprintf(&b, "apiserver %s\n", name)
	}
	if *updateNames {
		if err := os.WriteFile(metricNamesFile, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(metricNamesFile)
	if err != nil {
		t.Fatalf("%v (run: go test ./controllers -run TestMetricNamesFileIsCurrent -update-metric-names)", err)
	}
	if string(got) != b.String() {
		t.Errorf("%s is stale; run: go test ./controllers -run TestMetricNamesFileIsCurrent -update-metric-names", metricNamesFile)
	}
}

// operatorMetrics returns, sorted, the names of the metric families the
// operator registers: those with series once the manager runs, the
// controller's own vectors (series or not), and conditionalMetrics.
func operatorMetrics(t *testing.T) []string {
	t.Helper()
	var names []string
	testutil.Eventually(t, 30*time.Second, func() error {
		families, err := metrics.Registry.Gather()
		if err != nil {
			return err
		}
		names = names[:0]
		for _, f := range families {
			names = append(names, f.GetName())
		}
		if !slices.Contains(names, "controller_runtime_reconcile_total") {
			return fmt.Errorf("the manager has not started its controllers yet")
		}
		return nil
	})
	collectors := make([]prometheus.Collector, 0, len(policyGauges)+len(policyCounters)+1)
	for _, g := range policyGauges {
		collectors = append(collectors, g)
	}
	for _, c := range policyCounters {
		collectors = append(collectors, c)
	}
	for _, c := range append(collectors, evaluationDuration) {
		names = append(names, describedNames(c)...)
	}
	names = append(names, conditionalMetrics...)
	slices.Sort(names)
	return slices.Compact(names)
}

// fqName reads a metric's name from its description.
var fqName = regexp.MustCompile(`fqName: "([a-zA-Z_:][a-zA-Z0-9_:]*)"`)

// describedNames returns the names of the metrics a collector describes.
func describedNames(c prometheus.Collector) []string {
	descs := make(chan *prometheus.Desc, 16)
	c.Describe(descs)
	close(descs)
	var out []string
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// apiserverMetrics returns, sorted, the metric families of the recorded
// kube-apiserver /metrics, and those loadshed reads from kube-apiservers
// (some, like rejected requests, have series only under load).
func apiserverMetrics(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(apiserverFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{signals.FamilyInflight, signals.FamilyInqueue, signals.FamilyRejected, signals.FamilyDispatched,
		signals.FamilyExecutingSeats, signals.FamilyNominalSeats, signals.FamilyRequestSLI, signals.FamilyRequestDur,
		signals.FamilyRequestWait, signals.FamilyRequests, signals.FamilyEtcdDuration, signals.FamilyTerminations}
	s := bufio.NewScanner(z)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 4 && fields[1] == "TYPE" {
			names = append(names, fields[2])
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// docMetrics are the metrics docs/metrics.md documents: the first cell of
// each table row, in backquotes; a name ending in * covers a prefix.
type docMetrics struct {
	names, prefixes []string
}

func (d docMetrics) has(name string) bool {
	return slices.Contains(d.names, name) || slices.ContainsFunc(d.prefixes, func(p string) bool {
		return strings.HasPrefix(name, p)
	})
}

// docRow matches a table row whose first cell is a metric name.
var docRow = regexp.MustCompile("^\\| `([a-zA-Z_:][a-zA-Z0-9_:]*\\*?)` \\|")

func documentedMetrics(t *testing.T) docMetrics {
	t.Helper()
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var out docMetrics
	for _, line := range strings.Split(string(b), "\n") {
		m := docRow.FindStringSubmatch(line)
		switch {
		case m == nil:
		case strings.HasSuffix(m[1], "*"):
			out.prefixes = append(out.prefixes, strings.TrimSuffix(m[1], "*"))
		default:
			out.names = append(out.names, m[1])
		}
	}
	return out
}
