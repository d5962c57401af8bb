package controllers_test

import (
	"runtime"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/internal/version"
)

func TestTheBuildInfoIsOnTheOperatorsRegistry(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"version": version.Version, "revision": version.Revision, "goversion": runtime.Version()}
	for _, f := range families {
		if f.GetName() != "loadshed_build_info" {
			continue
		}
		if f.GetType() != dto.MetricType_GAUGE || len(f.GetMetric()) != 1 {
			t.Fatalf("loadshed_build_info: want one gauge series, got %v", f)
		}
		m := f.GetMetric()[0]
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) || got["version"] != want["version"] || got["revision"] != want["revision"] ||
			got["goversion"] != want["goversion"] || m.GetGauge().GetValue() != 1 {
			t.Errorf("loadshed_build_info = %v %v, want %v 1", got, m.GetGauge().GetValue(), want)
		}
		return
	}
	t.Error("loadshed_build_info is not on controller-runtime's registry, which the manager serves on /metrics")
}
