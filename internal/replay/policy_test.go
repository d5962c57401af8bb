package replay

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
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
