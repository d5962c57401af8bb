package replay

import (
	"fmt"
	"slices"
	"strings"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// The flood's scenarios.
const (
	// ScenarioBaseline is the flood with the API server's defaults only.
	ScenarioBaseline = "baseline"
	// ScenarioLoadshed is the flood with loadshed running the policy.
	ScenarioLoadshed = "loadshed"
	// ScenarioObserve is the flood with loadshed running the policy in
	// dryRun: the operator watches, attributes and reports, but changes
	// nothing. It measures what the operator's presence costs.
	ScenarioObserve = "observe"
)

// ScenarioNames lists every scenario: the flood's, then the benign bursts'.
func ScenarioNames() []string {
	return append([]string{ScenarioBaseline, ScenarioLoadshed, ScenarioObserve}, BurstNames()...)
}

// ForScenario returns base set up for the named scenario: baseline runs no
// operator; loadshed runs policy with its timeline made timeScale times
// faster (Faster); observe the same in dryRun; and each benign burst
// (BurstNames) the same policy as loadshed, with the burst in place of the
// flood.
func ForScenario(base Config, name string, policy *v1alpha1.LoadShedPolicy, timeScale float64) (Config, error) {
	cfg := base
	cfg.Name = name
	cfg.Policy, cfg.Burst = nil, nil
	switch name {
	case ScenarioBaseline:
	case ScenarioLoadshed:
		cfg.Policy = Faster(policy, timeScale)
	case ScenarioObserve:
		cfg.Policy = Faster(policy, timeScale)
		cfg.Policy.Spec.DryRun = true
	default:
		if !slices.Contains(BurstNames(), name) {
			return Config{}, fmt.Errorf("unknown scenario %q: want one of %s", name, strings.Join(ScenarioNames(), ", "))
		}
		b, err := NewBurst(name)
		if err != nil {
			return Config{}, err
		}
		cfg.Policy, cfg.Burst = Faster(policy, timeScale), b
	}
	return cfg, nil
}
