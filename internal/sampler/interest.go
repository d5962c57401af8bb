package sampler

import (
	"fmt"

	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"
)

// InterestOf is what a policy asks of the sampler: the accumulators of
// attribution and of its triggers' signals on scraped rounds or, with a
// Prometheus source (prom not nil), the PromQL of each trigger: its own, or
// its signal's equivalent. It also returns the triggers' queries on scraped
// rounds, by trigger name (none with Prometheus). A promQL trigger without
// Prometheus is an error: only Prometheus evaluates it. The operator and
// kubectl loadshed's back-test both read a policy's signals with these.
func InterestOf(cfg *policy.Config, prom *promsource.Config) (Interest, map[string]signals.Query, error) {
	in := Interest{
		Interval:  cfg.Interval,
		Timeout:   cfg.Source.ScrapeTimeout,
		Retention: detection.Retention(cfg),
		Accumulators: []signals.Accumulator{
			signals.DispatchedByFlowSchema, signals.RejectedByFlowSchema, signals.SeatsByFlowSchema,
		},
	}
	if prom != nil {
		in.Prometheus = &PrometheusInterest{Config: *prom, Queries: map[string]string{}}
	}
	queries := map[string]signals.Query{}
	for i := range cfg.Triggers {
		t := &cfg.Triggers[i]
		if t.PromQL != "" {
			if prom == nil {
				return in, nil, fmt.Errorf("trigger %q reads a PromQL expression, which only a Prometheus source evaluates", t.Name)
			}
			in.Prometheus.Queries[t.Name] = t.PromQL
			continue
		}
		q, err := signals.ForTrigger(t)
		if err != nil {
			return in, nil, err
		}
		if prom != nil {
			in.Prometheus.Queries[t.Name] = q.PromQL()
			continue
		}
		queries[t.Name] = q
		in.Accumulators = append(in.Accumulators, q.Accumulators()...)
	}
	return in, queries, nil
}
