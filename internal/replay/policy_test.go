package replay

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func TestFasterCompressesTheSamplePolicysTimeline(t *testing.T) {
	sample, err := SamplePolicy(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	if same := Faster(sample, 1); !equality.Semantic.DeepEqual(same, sample) {
		t.Error("Faster(p, 1) changed the policy")
	}
	fast := Faster(sample, 6)
	s := fast.Spec
	got := map[string]time.Duration{
		// 5s / 6 is under the 5s scrape timeout: the interval stays at 5s.
		"interval": s.Interval.Duration,
		"for":      s.Triggers[0].For.Duration,
		// 30s / 6 is under two intervals: a quantile needs two readings.
		"window":      s.Triggers[0].Window.Duration,
		"list window": s.Triggers[4].Window.Duration,
		"after":       s.Actions.Pause.After.Duration,
		"stableFor":   s.Restore.StableFor.Duration,
		"probation":   s.Restore.Probation.Duration,
		"initial":     s.Restore.Backoff.Initial.Duration,
		"max":         s.Restore.Backoff.Max.Duration,
	}
	want := map[string]time.Duration{
		"interval": 5 * time.Second, "for": 1700 * time.Millisecond, "window": 10 * time.Second, "list window": 10 * time.Second,
		"after": 7500 * time.Millisecond, "stableFor": 20 * time.Second, "probation": 30 * time.Second,
		"initial": 10 * time.Second, "max": 5 * time.Minute,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	for i := range s.Triggers {
		if !s.Triggers[i].Threshold.Equal(sample.Spec.Triggers[i].Threshold) {
			t.Errorf("trigger %s: threshold changed", s.Triggers[i].Name)
		}
	}
	if sample.Spec.Interval.Duration != 5*time.Second {
		t.Error("Faster changed the policy it was given")
	}
}

// TestThePrometheusSampleIsTheSamplePolicyReadFromPrometheus: the two
// samples differ in their name, source and dryRun only, also once Faster
// compressed them.
func TestThePrometheusSampleIsTheSamplePolicyReadFromPrometheus(t *testing.T) {
	sample, err := SamplePolicy(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	prom, err := PrometheusSamplePolicy(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	if prom.Name != sample.Name+"-prometheus" || prom.Spec.Source.Type != v1alpha1.SourcePrometheus ||
		prom.Spec.Source.Prometheus == nil || prom.Spec.Source.Prometheus.CASecretRef == nil || !prom.Spec.DryRun {
		t.Errorf("the Prometheus sample is %s with source %+v, dryRun %v; want %s-prometheus, a Prometheus source "+
			"with a CA, in dryRun", prom.Name, prom.Spec.Source, prom.Spec.DryRun, sample.Name)
	}
	for _, factor := range []float64{1, 6} {
		a, b := Faster(sample, factor).Spec, Faster(prom, factor).Spec
		b.Source.Type, b.Source.Prometheus, b.DryRun = a.Source.Type, a.Source.Prometheus, a.DryRun
		if !equality.Semantic.DeepEqual(a, b) {
			t.Errorf("%v times faster, the samples' specs differ beyond their source and dryRun:\n%+v\n%+v", factor, a, b)
		}
	}
}
