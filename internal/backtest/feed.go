package backtest

import (
	"fmt"
	"iter"
	"math"
	"time"

	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// history is what the operator's sampler holds at a time: a recording's
// rounds, or each trigger's points from Prometheus, trimmed as the sampler
// trims them. The back-test goes through the data once, a round at a time,
// so that a month of them need never be in memory.
type history struct {
	keep   time.Duration
	rounds []*signals.Round
	points map[string][]trigger.Point
	// queries are the triggers' PromQL, to say why a point is missing.
	queries map[string]string
}

// addRound takes a round into the history.
func (h *history) addRound(r *signals.Round) {
	h.rounds = sampler.Trim(append(h.rounds, r), func(r *signals.Round) time.Time { return r.T }, h.keep)
}

// addStep takes every trigger's point at step i of the series.
func (h *history) addStep(series *PrometheusSeries, i int) {
	for name, points := range series.Points {
		h.points[name] = sampler.Trim(append(h.points[name], points[i]), sampler.PointTime, h.keep)
	}
}

// explain says why a trigger's newest point from Prometheus is missing, if
// it is.
func (h *history) explain(trig string) string {
	points := h.points[trig]
	if len(points) == 0 || points[len(points)-1].OK {
		return ""
	}
	return fmt.Sprintf("no data: %q matched no series at this step", h.queries[trig])
}

// taken yields, of rounds taken every step, those the operator's sampler
// would have taken for a policy evaluated every interval: as it tells a
// policy of every n-th round of a shorter step (sampler.notify), every n-th
// round. Of rounds taken at an unknown step, it keeps those at least three
// quarters of an interval apart.
func taken(rounds iter.Seq[*signals.Round], step, interval time.Duration) iter.Seq[*signals.Round] {
	due := interval * 3 / 4
	if step > 0 {
		n := max(math.Round(float64(interval)/float64(step)), 1)
		due = time.Duration(n*float64(step)) - step/2
	}
	return func(yield func(*signals.Round) bool) {
		var last *signals.Round
		for r := range rounds {
			if last != nil && r.T.Sub(last.T) < due {
				continue
			}
			last = r
			if !yield(r) {
				return
			}
		}
	}
}

// done is when the operator would have been told of a round: when its
// scrapes were done.
func done(r *signals.Round) time.Time {
	return r.T.Add(time.Duration(r.ScrapeSeconds * float64(time.Second)))
}

// steps returns the times of the series' steps; every trigger must have a
// point at each.
func steps(series *PrometheusSeries) ([]time.Time, error) {
	var times []time.Time
	for name, points := range series.Points {
		if times == nil {
			for _, p := range points {
				times = append(times, p.T)
			}
		}
		if len(points) != len(times) {
			return nil, fmt.Errorf("trigger %s has %d points, another %d: each needs one at every step", name, len(points), len(times))
		}
	}
	return times, nil
}
