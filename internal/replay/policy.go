package replay

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

// SamplePolicyPath is the sample policy for the incident, relative to the
// repository's root.
var SamplePolicyPath = filepath.Join("config", "samples", "loadshed_v1alpha1_loadshedpolicy.yaml")

// SamplePolicy reads the sample policy for the incident from the checkout
// at root: the one the loadshed scenario runs.
func SamplePolicy(root string) (*v1alpha1.LoadShedPolicy, error) {
	return readPolicy(root, SamplePolicyPath)
}

// readPolicy reads a policy from a file of the checkout at root.
func readPolicy(root, path string) (*v1alpha1.LoadShedPolicy, error) {
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return nil, err
	}
	p := &v1alpha1.LoadShedPolicy{}
	if err := yaml.UnmarshalStrict(data, p); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return p, nil
}

// Faster returns a copy of p whose timeline runs factor times faster: the
// evaluation interval, every trigger's for and window, the pause delay,
// the restore's stable window, probation and backoff are divided by factor
// (defaults included), the interval never below the scrape timeout, and
// every window at least two intervals (a rate needs two readings in it).
// Thresholds, and the scrape timeout, which is about the API server rather
// than the timeline, are kept. A replay of minutes
// thus shows what the policy does over tens of minutes.
func Faster(p *v1alpha1.LoadShedPolicy, factor float64) *v1alpha1.LoadShedPolicy {
	out := p.DeepCopy()
	if factor <= 1 {
		return out
	}
	scale := func(d **metav1.Duration, def time.Duration) {
		v := def
		if *d != nil {
			v = (*d).Duration
		}
		*d = &metav1.Duration{Duration: (time.Duration(float64(v) / factor)).Round(100 * time.Millisecond)}
	}
	s := &out.Spec
	scale(&s.Interval, policy.DefaultInterval)
	// A scrape of an overloaded API server takes its time, and no scrape
	// outlasts the interval: keep the interval at least the scrape timeout.
	timeout := policy.DefaultScrapeTimeout
	if s.Source.ScrapeTimeout != nil {
		timeout = s.Source.ScrapeTimeout.Duration
	}
	s.Interval.Duration = max(s.Interval.Duration, timeout, time.Second)
	for i := range s.Triggers {
		scale(&s.Triggers[i].For, policy.DefaultFor)
		scale(&s.Triggers[i].Window, policy.DefaultWindow)
		// A rate or quantile needs two readings within its window.
		s.Triggers[i].Window.Duration = max(s.Triggers[i].Window.Duration, 2*s.Interval.Duration)
	}
	scale(&s.Actions.Pause.After, policy.DefaultPauseAfter)
	scale(&s.Restore.StableFor, policy.DefaultStableFor)
	scale(&s.Restore.Probation, policy.DefaultProbation)
	scale(&s.Restore.Backoff.Initial, policy.DefaultBackoffInitial)
	scale(&s.Restore.Backoff.Max, policy.DefaultBackoffMax)
	s.Restore.Backoff.Initial.Duration = max(s.Restore.Backoff.Initial.Duration, time.Second)
	return out
}
