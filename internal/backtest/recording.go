package backtest

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
)

// Recording is a recording of the API servers' metrics (kubectl loadshed
// record), folded for a policy: the rounds its sampler would have taken,
// and what the recording saw of the cluster.
type Recording struct {
	World World
	// Rounds yields the rounds, oldest first, once; Err, when set, says
	// after them why they stopped short, if they did.
	Rounds iter.Seq[*signals.Round]
	Err    func() error
	// Step is how often the recording scraped.
	Step time.Duration
	// Families are the metric families the recording holds.
	Families []string
}

// Accumulators are what a policy reads from a recording, as the operator's
// sampler folds it: its triggers' signals and attribution
// (sampler.InterestOf). A promQL trigger is an error: a recording holds the
// API servers' metrics, which only a Prometheus turns into PromQL.
func Accumulators(cfg *policy.Config) ([]signals.Accumulator, error) {
	for i := range cfg.Triggers {
		if t := &cfg.Triggers[i]; t.PromQL != "" {
			return nil, fmt.Errorf("trigger %s reads a promQL expression: a recording holds the API servers' own metrics, "+
				"which only Prometheus evaluates PromQL on; back-test this policy with --prometheus", t.Name)
		}
	}
	in, _, err := sampler.InterestOf(cfg, nil)
	if err != nil {
		return nil, err
	}
	return in.Accumulators, nil
}

// CheckFamilies says which metric families a policy reads (accums) that a
// recording does not hold (families): the back-test would take them for
// missing at every round.
func CheckFamilies(accums []signals.Accumulator, families []string) error {
	var missing []string
	for _, a := range accums {
		if !slices.Contains(families, a.Family) && !slices.Contains(missing, a.Family) {
			missing = append(missing, a.Family)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("the recording does not hold %s, which the policy reads: record again with --family %s",
		strings.Join(missing, ", "), strings.Join(missing, " --family "))
}
