package backtest

import (
	"fmt"
	"math"
	"time"

	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// feed is the data the operator would have read, round by round: its
// sampler's rounds of scrapes, or its instant queries of Prometheus.
type feed interface {
	// len counts the rounds.
	len() int
	// notified is when the operator would have been told of round i: when
	// the round was done.
	notified(i int) time.Time
	// history is what the sampler would hold after round i: the rounds, or
	// each trigger's points, trimmed as the sampler trims them. It is
	// called with i never decreasing.
	history(i int) ([]*signals.Round, map[string][]trigger.Point)
	// explain says why a trigger's newest point is missing, if it is.
	explain(i int, trig string) string
}

// roundFeed is a recording's rounds, those the operator would have taken.
type roundFeed struct {
	rounds []*signals.Round
	keep   time.Duration
	start  int
}

// newRoundFeed keeps, of rounds taken every step, those the operator's
// sampler would have taken for a policy evaluated every interval: as it
// tells a policy of every n-th round of a shorter step (sampler.notify),
// every n-th round.
func newRoundFeed(rounds []*signals.Round, step, interval, keep time.Duration) *roundFeed {
	if step <= 0 {
		step = interval
	}
	n := max(math.Round(float64(interval)/float64(step)), 1)
	due := time.Duration(n*float64(step)) - step/2
	f := &roundFeed{keep: keep}
	for _, r := range rounds {
		if len(f.rounds) == 0 || r.T.Sub(f.rounds[len(f.rounds)-1].T) >= due {
			f.rounds = append(f.rounds, r)
		}
	}
	return f
}

func (f *roundFeed) len() int { return len(f.rounds) }

func (f *roundFeed) notified(i int) time.Time {
	r := f.rounds[i]
	return r.T.Add(time.Duration(r.ScrapeSeconds * float64(time.Second)))
}

func (f *roundFeed) history(i int) ([]*signals.Round, map[string][]trigger.Point) {
	window := f.rounds[f.start : i+1]
	kept := sampler.Trim(window, func(r *signals.Round) time.Time { return r.T }, f.keep)
	f.start += len(window) - len(kept)
	return kept, nil
}

func (f *roundFeed) explain(int, string) string { return "" }

// promFeed is each trigger's values from Prometheus, at every step.
type promFeed struct {
	series *PrometheusSeries
	times  []time.Time
	keep   time.Duration
	start  map[string]int
}

// newPromFeed reads the steps of the series; every trigger has a point at
// every step.
func newPromFeed(series *PrometheusSeries, keep time.Duration) (*promFeed, error) {
	f := &promFeed{series: series, keep: keep, start: map[string]int{}}
	for name, points := range series.Points {
		if f.times == nil {
			for _, p := range points {
				f.times = append(f.times, p.T)
			}
		}
		if len(points) != len(f.times) {
			return nil, fmt.Errorf("trigger %s has %d points, another %d: each needs one at every step", name, len(points), len(f.times))
		}
	}
	return f, nil
}

func (f *promFeed) len() int { return len(f.times) }

func (f *promFeed) notified(i int) time.Time { return f.times[i] }

func (f *promFeed) history(i int) ([]*signals.Round, map[string][]trigger.Point) {
	out := make(map[string][]trigger.Point, len(f.series.Points))
	for name, points := range f.series.Points {
		window := points[f.start[name] : i+1]
		kept := sampler.Trim(window, sampler.PointTime, f.keep)
		f.start[name] += len(window) - len(kept)
		out[name] = kept
	}
	return nil, out
}

func (f *promFeed) explain(i int, trig string) string {
	if f.series.Points[trig][i].OK {
		return ""
	}
	return fmt.Sprintf("no data: %q matched no series at this step", f.series.Queries[trig])
}
