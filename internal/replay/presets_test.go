package replay

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
)

func TestForScenario(t *testing.T) {
	sample, err := SamplePolicy(repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	pristine := sample.DeepCopy()
	base := Config{Nodes: 10, Quiet: 10 * time.Second}
	for _, tc := range []struct {
		name                  string
		wantPolicy, wantDryRn bool
		wantBurst             string
	}{
		{ScenarioBaseline, false, false, ""},
		{ScenarioLoadshed, true, false, ""},
		{ScenarioObserve, true, true, ""},
		{BurstDrain, true, false, BurstDrain},
		{BurstRollout, true, false, BurstRollout},
		{BurstListLoop, true, false, BurstListLoop},
		{BurstRelist, true, false, BurstRelist},
		{BurstAPIServerRestart, true, false, BurstAPIServerRestart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ForScenario(base, tc.name, sample, 6)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Name != tc.name || cfg.Nodes != base.Nodes || cfg.Quiet != base.Quiet {
				t.Errorf("got %s with %d nodes and %v quiet; want the base's, named %s", cfg.Name, cfg.Nodes, cfg.Quiet, tc.name)
			}
			if (cfg.Policy != nil) != tc.wantPolicy {
				t.Fatalf("policy %v, want one: %v", cfg.Policy, tc.wantPolicy)
			}
			if cfg.Policy != nil {
				if cfg.Policy.Spec.DryRun != tc.wantDryRn {
					t.Errorf("dryRun %v, want %v", cfg.Policy.Spec.DryRun, tc.wantDryRn)
				}
				// The same policy as loadshed's, but for dryRun.
				want := Faster(sample, 6)
				got := cfg.Policy.DeepCopy()
				got.Spec.DryRun = false
				if !equality.Semantic.DeepEqual(got, want) {
					t.Errorf("the policy is not the sample made 6 times faster")
				}
			}
			burst := ""
			if cfg.Burst != nil {
				burst = cfg.Burst.Name()
			}
			if burst != tc.wantBurst {
				t.Errorf("burst %q, want %q", burst, tc.wantBurst)
			}
		})
	}
	if !equality.Semantic.DeepEqual(sample, pristine) {
		t.Error("ForScenario changed the policy it was given")
	}
	if _, err := ForScenario(base, "flood", sample, 6); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}
