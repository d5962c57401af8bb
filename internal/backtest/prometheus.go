package backtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/trigger"
)

// QueryPrometheus reads each trigger's values from Prometheus with range
// queries of the PromQL the operator would run as instant queries (its
// own, or its signal's equivalent: sampler.InterestOf), at every interval
// of the policy from from, less the history its triggers need
// (detection.Retention), to to. A step where Prometheus has no value is a
// point that is not OK, as a failed instant query is to the operator; a
// query Prometheus refuses is an error.
func QueryPrometheus(ctx context.Context, pc promsource.Config, cfg *policy.Config, from, to time.Time) (*PrometheusSeries, error) {
	interest, _, err := sampler.InterestOf(cfg, &pc)
	if err != nil {
		return nil, err
	}
	q, err := promsource.New(pc)
	if err != nil {
		return nil, err
	}
	start := from.Add(-detection.Retention(cfg)).Truncate(time.Second)
	var steps []time.Time
	for t := start; !t.After(to); t = t.Add(cfg.Interval) {
		steps = append(steps, t)
	}
	out := &PrometheusSeries{URL: pc.URL, Step: cfg.Interval, Points: map[string][]trigger.Point{},
		Queries: interest.Prometheus.Queries}
	for _, t := range cfg.Triggers {
		expr := interest.Prometheus.Queries[t.Name]
		samples, _, err := q.QueryRange(ctx, expr, start, to, cfg.Interval)
		if err != nil && !errors.Is(err, promsource.ErrNoData) {
			return nil, fmt.Errorf("trigger %s: %w", t.Name, err)
		}
		out.Points[t.Name] = onSteps(steps, samples)
	}
	return out, nil
}

// onSteps puts samples on the steps: a point at every step, not OK where
// no sample is.
func onSteps(steps []time.Time, samples []promsource.Sample) []trigger.Point {
	byTime := make(map[int64]float64, len(samples))
	for _, s := range samples {
		byTime[s.T.UnixMilli()] = s.V
	}
	out := make([]trigger.Point, len(steps))
	for i, t := range steps {
		v, ok := byTime[t.UnixMilli()]
		out[i] = trigger.Point{T: t, V: v, OK: ok}
	}
	return out
}
