package monitoring

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	serviceMonitorFile = "../../config/prometheus/servicemonitor.yaml"
	metricsServiceFile = "../../config/default/metrics_service.yaml"
	// job is the job label the alerts and the dashboard select.
	job = "loadshed"
)

// serviceMonitor is as much of a ServiceMonitor as the test reads.
type serviceMonitor struct {
	Spec struct {
		JobLabel  string `json:"jobLabel"`
		Endpoints []struct {
			Port   string `json:"port"`
			Scheme string `json:"scheme"`
			Path   string `json:"path"`
		} `json:"endpoints"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
	} `json:"spec"`
}

// service is as much of a Service as the test reads.
type service struct {
	Metadata struct {
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Ports []struct {
			Name string `json:"name"`
		} `json:"ports"`
	} `json:"spec"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestServiceMonitorScrapesTheMetricsServiceAsJobLoadshed checks that the
// ServiceMonitor selects the metrics Service of config/default, scrapes its
// HTTPS port, and names the job as the alerts and dashboard expect.
func TestServiceMonitorScrapesTheMetricsServiceAsJobLoadshed(t *testing.T) {
	var sm serviceMonitor
	var svc service
	readYAML(t, serviceMonitorFile, &sm)
	readYAML(t, metricsServiceFile, &svc)
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service does not carry", k, v)
		}
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 {
		t.Error("the ServiceMonitor selects every Service")
	}
	if got := svc.Metadata.Labels[sm.Spec.JobLabel]; got != job {
		t.Errorf("the job label is the Service's label %q, %q; the alerts and the dashboard select job=%q",
			sm.Spec.JobLabel, got, job)
	}
	if ns := sm.Spec.NamespaceSelector.MatchNames; len(ns) != 1 || ns[0] != svc.Metadata.Namespace {
		t.Errorf("the ServiceMonitor looks in %v, the Service is in %s", ns, svc.Metadata.Namespace)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || p.Name == ep.Port
	}
	if !found || ep.Scheme != "https" || ep.Path != "/metrics" {
		t.Errorf("the ServiceMonitor scrapes port %q (on the Service: %v) over %q at %q; "+
			"want the Service's https port, https, /metrics", ep.Port, found, ep.Scheme, ep.Path)
	}
}
