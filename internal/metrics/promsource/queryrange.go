package promsource

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// MaxSteps is how many steps one range request asks for at the most:
// Prometheus refuses a query of more than 11,000 points per series, so a
// longer range is asked for in parts.
const MaxSteps = 10000

// Sample is an expression's value at one step of a range query.
type Sample struct {
	T time.Time
	V float64
}

// QueryRange evaluates the PromQL expression expr at every step from start
// to end, both included, as Prometheus's range queries do, and returns its
// value at each step where it has one, oldest first, and the warnings
// Prometheus sent. It holds the expression to Query's rule step by step:
// at each step, at most one series may have a value (the series may change
// from step to step, as when an instance restarts); a step where several do
// is an error naming them. A step where none does is left out: missing
// data, never zero. When no step has a value, the error wraps ErrNoData.
//
// A range of more than MaxSteps steps is asked for in parts, each bounded
// by Config.Timeout; errors are as Query's.
func (q *Querier) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Sample, []string, error) {
	switch {
	case step <= 0:
		return nil, nil, fmt.Errorf("range query step %s: must be positive", step)
	case end.Before(start):
		return nil, nil, fmt.Errorf("range query ends (%s) before it starts (%s)", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	var out []Sample
	var warnings []string
	for from := start; !from.After(end); {
		to := from.Add(step * (MaxSteps - 1))
		if to.After(end) {
			to = end
		}
		part, w, err := q.queryRangePart(ctx, expr, promv1.Range{Start: from, End: to, Step: step})
		warnings = append(warnings, w...)
		if err != nil {
			return nil, warnings, err
		}
		out = append(out, part...)
		from = to.Add(step)
	}
	if len(out) == 0 {
		return nil, warnings, fmt.Errorf("no value at any step from %s to %s: %w", start.UTC().Format(time.RFC3339),
			end.UTC().Format(time.RFC3339), ErrNoData)
	}
	return out, warnings, nil
}

// queryRangePart runs one range request.
func (q *Querier) queryRangePart(ctx context.Context, expr string, r promv1.Range) ([]Sample, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	value, warnings, _, err := q.api.QueryRange(ctx, expr, r, promv1.WithTimeout(serverTimeout(q.timeout)))
	if len(warnings) == 0 {
		warnings = nil
	}
	if err != nil {
		return nil, warnings, queryError(err)
	}
	samples, err := perStep(value)
	return samples, warnings, err
}

// perStep returns the one value of each step of a range query's result.
func perStep(value model.Value) ([]Sample, error) {
	m, ok := value.(model.Matrix)
	if !ok {
		if value == nil {
			return nil, errors.New("prometheus answered without a result")
		}
		return nil, fmt.Errorf("a range query returned a %s, not a range vector", value.Type())
	}
	at := map[model.Time]int{}
	var out []Sample
	for i, s := range m {
		if len(s.Histograms) > 0 {
			return nil, fmt.Errorf("the expression returned native histogram samples %s, not numbers", s.Metric)
		}
		for _, p := range s.Values {
			if j, seen := at[p.Timestamp]; seen {
				return nil, fmt.Errorf("the expression returned several samples at %s (%s, %s); it must aggregate them to "+
					"exactly one, e.g. with max()", p.Timestamp.Time().UTC().Format(time.RFC3339), m[j].Metric, s.Metric)
			}
			at[p.Timestamp] = i
			out = append(out, Sample{T: p.Timestamp.Time(), V: float64(p.Value)})
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return a.T.Compare(b.T) })
	return out, nil
}
