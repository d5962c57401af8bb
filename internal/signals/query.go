package signals

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/trigger"
)

// Round is one scrape of every API server instance.
type Round struct {
	// T is when the round started.
	T time.Time
	// Instances maps each instance scraped successfully to its results,
	// keyed by accumulator key.
	Instances map[string]map[string]Result
	// Failed maps each instance that could not be scraped to why.
	Failed map[string]string
	// ScrapeSeconds is the duration of the slowest scrape of the round,
	// failed ones included (a scrape that times out took the timeout).
	ScrapeSeconds float64
	// TimedOut says that a scrape of the round ran into its timeout: the
	// round's scrape latency is then known (at least the timeout) even when
	// no instance could be read.
	TimedOut bool
	// Clients maps each instance whose APF dump was read to whose requests
	// it held (see package apfdump); ClientsFailed maps each instance whose
	// dump could not be read to why.
	Clients       map[string]apfdump.Summary
	ClientsFailed map[string]string
}

// Kind is how a query derives a value.
type Kind uint8

// The query kinds.
const (
	// Gauge: the latest value, aggregated within and across instances.
	Gauge Kind = iota
	// Rate: the per-second increase of counters over the window.
	Rate
	// Quantile: a quantile of a histogram's increase over the window.
	Quantile
	// SeatUtilization: executing seats over nominal seats, per priority level.
	SeatUtilization
	// ScrapeLatency: the slowest scrape of the round.
	ScrapeLatency
)

// Query derives one signal's value from rounds.
type Query struct {
	Kind Kind
	// Accum is the accumulator the value is read from; for
	// SeatUtilization, the executing seats.
	Accum Accumulator
	// Nominal is, for SeatUtilization, the nominal seats.
	Nominal Accumulator
	// Within combines the series of one instance (Gauge only; counters and
	// histograms are summed).
	Within v1alpha1.Aggregation
	// Across combines instances.
	Across   v1alpha1.Aggregation
	Quantile float64
	Window   time.Duration
}

// Accumulators returns what the sampler must fold for the query.
func (q Query) Accumulators() []Accumulator {
	switch q.Kind {
	case ScrapeLatency:
		return nil
	case SeatUtilization:
		return []Accumulator{q.Accum, q.Nominal}
	default:
		return []Accumulator{q.Accum}
	}
}

// Points returns the query's value at each round. A round where it cannot
// be computed gives a point that is not OK; the message of the newest round
// says why, or notes that no series matched. A round in which some
// instances could not be scraped, or (for a rate or a quantile) were scraped
// only once within the window, gives a lower bound when the query sums or
// takes the worst over instances (the whole can only be higher), and no
// value when it takes the least or the average.
func (q Query) Points(rounds []*Round) (points []trigger.Point, message string) {
	points = make([]trigger.Point, len(rounds))
	for i := range rounds {
		points[i], message = q.pointAt(rounds, i)
	}
	return points, message
}

// pointAt computes the point at rounds[i].
func (q Query) pointAt(rounds []*Round, i int) (trigger.Point, string) {
	r := rounds[i]
	p := trigger.Point{T: r.T}
	if q.Kind == ScrapeLatency && (len(r.Instances) > 0 || r.TimedOut) {
		// A stalled API server answers no scrape: its timing out is the
		// reading, exactly when no other signal can be read.
		p.V, p.OK, p.LowerBound = r.ScrapeSeconds, true, len(r.Failed) > 0
		if p.LowerBound {
			return p, describeFailure(r)
		}
		return p, ""
	}
	if len(r.Instances) == 0 {
		return p, describeFailure(r)
	}
	values, pending, matched := q.instanceValues(rounds, i)
	if len(values) == 0 {
		if q.Kind == Rate || q.Kind == Quantile {
			return p, fmt.Sprintf("waiting for a second scrape within the %v window", q.Window)
		}
		return p, "no instance was scraped for this signal yet"
	}
	msg := ""
	if !matched {
		msg = fmt.Sprintf("no series of %s matched in the last scrape (counted as 0)", q.Accum.Family)
	}
	if len(r.Failed) > 0 || len(pending) > 0 {
		if len(r.Failed) > 0 {
			msg += "; " + describeFailure(r)
		}
		if len(pending) > 0 {
			sort.Strings(pending)
			msg += fmt.Sprintf("; waiting for a second scrape of %s within the %v window", strings.Join(pending, ", "), q.Window)
		}
		msg = strings.TrimPrefix(msg, "; ")
		if !q.boundedBelow() {
			return p, msg
		}
		p.LowerBound = true
	}
	p.V, p.OK = across(values, q.Across), true
	return p, msg
}

// instanceValues computes the query's value on each instance scraped in
// rounds[i]; pending are the instances scraped only once within the window
// (new, or restarted), which have no rate or quantile yet; matched tells
// whether any series matched.
func (q Query) instanceValues(rounds []*Round, i int) (values []float64, pending []string, matched bool) {
	for inst, results := range rounds[i].Instances {
		res, ok := results[q.Accum.Key()]
		if !ok {
			continue
		}
		matched = matched || res.Series > 0
		switch q.Kind {
		case Gauge:
			values = append(values, within(res, q.Within))
		case SeatUtilization:
			values = append(values, seatUtilization(res, results[q.Nominal.Key()]))
		case Rate:
			if v, ok := q.rate(rounds, i, inst); ok {
				values = append(values, v)
			} else {
				pending = append(pending, inst)
			}
		case Quantile:
			if v, ok := q.quantile(rounds, i, inst); ok {
				values = append(values, v)
			} else {
				pending = append(pending, inst)
			}
		}
	}
	return values, pending, matched
}

// boundedBelow reports whether the query's value over some instances is a
// lower bound of its value over all of them: a sum (of values that are not
// negative) or a maximum, and for a quantile only a maximum (the quantile
// of merged histograms is not bounded by a part's).
func (q Query) boundedBelow() bool {
	switch q.Across {
	case v1alpha1.AggregationMax:
		return true
	case v1alpha1.AggregationSum:
		return q.Kind != Quantile
	}
	return false
}

// windowed returns, oldest first, the results of inst for one accumulator in
// the rounds within the window ending at rounds[i], with their times.
func (q Query) windowed(rounds []*Round, i int, inst string) ([]time.Time, []Result) {
	var ts []time.Time
	var rs []Result
	from := rounds[i].T.Add(-q.Window)
	for j := i; j >= 0 && !rounds[j].T.Before(from); j-- {
		if res, ok := rounds[j].Instances[inst][q.Accum.Key()]; ok {
			ts = append(ts, rounds[j].T)
			rs = append(rs, res)
		}
	}
	for a, b := 0, len(ts)-1; a < b; a, b = a+1, b-1 {
		ts[a], ts[b] = ts[b], ts[a]
		rs[a], rs[b] = rs[b], rs[a]
	}
	return ts, rs
}

// rate is the per-second increase of the instance's summed counters over
// the window. A decrease is a counter reset (the instance restarted): the
// value after it counts as the increase, as Prometheus's rate() does.
func (q Query) rate(rounds []*Round, i int, inst string) (float64, bool) {
	ts, rs := q.windowed(rounds, i, inst)
	if len(rs) < 2 {
		return 0, false
	}
	inc := 0.0
	for k := 1; k < len(rs); k++ {
		inc += increase(rs[k-1].Sum, rs[k].Sum)
	}
	return inc / ts[len(ts)-1].Sub(ts[0]).Seconds(), true
}

// quantile is the q-quantile of the instance's histogram increase over the
// window. A histogram grouped by a label gives the worst group's quantile.
func (q Query) quantile(rounds []*Round, i int, inst string) (float64, bool) {
	_, rs := q.windowed(rounds, i, inst)
	if len(rs) < 2 {
		return 0, false
	}
	if q.Accum.Kind == GroupedHistogram {
		worst := 0.0
		for group := range rs[len(rs)-1].GroupBuckets {
			inc := map[float64]float64{}
			for k := 1; k < len(rs); k++ {
				addIncrease(inc, rs[k-1].GroupBuckets[group], rs[k].GroupBuckets[group])
			}
			worst = math.Max(worst, histogramQuantile(q.Quantile, inc))
		}
		return worst, true
	}
	inc := map[float64]float64{}
	for k := 1; k < len(rs); k++ {
		addIncrease(inc, rs[k-1].Buckets, rs[k].Buckets)
	}
	return histogramQuantile(q.Quantile, inc), true
}

// addIncrease adds each bucket's increase from prev to cur into inc.
func addIncrease(inc, prev, cur map[float64]float64) {
	for le, v := range cur {
		inc[le] += increase(prev[le], v)
	}
}

func increase(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// histogramQuantile estimates a quantile from cumulative bucket counts by
// linear interpolation within the bucket, as Prometheus's
// histogram_quantile does. No observations give 0: no requests were slow.
func histogramQuantile(q float64, buckets map[float64]float64) float64 {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return 0
	}
	total := buckets[les[len(les)-1]]
	if total <= 0 {
		return 0
	}
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for idx, le := range les {
		count := buckets[le]
		if count >= rank {
			if math.IsInf(le, 1) {
				// The quantile is past the largest finite bound: report that bound.
				if idx == 0 {
					return 0
				}
				return les[idx-1]
			}
			if idx == 0 && le <= 0 {
				return le
			}
			if count == prevCount {
				return le
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(count-prevCount)
		}
		prevLe, prevCount = le, count
	}
	return les[len(les)-1]
}

func seatUtilization(executing, nominal Result) float64 {
	worst := 0.0
	for level, seats := range executing.Groups {
		if n := nominal.Groups[level]; n > 0 {
			worst = math.Max(worst, seats/n)
		}
	}
	return worst
}

func within(r Result, agg v1alpha1.Aggregation) float64 {
	if r.Series == 0 {
		return 0
	}
	switch agg {
	case v1alpha1.AggregationMax:
		return r.Max
	case v1alpha1.AggregationMin:
		return r.Min
	case v1alpha1.AggregationAvg:
		return r.Sum / float64(r.Series)
	default:
		return r.Sum
	}
}

func across(values []float64, agg v1alpha1.Aggregation) float64 {
	sum, lo, hi := 0.0, math.Inf(1), math.Inf(-1)
	for _, v := range values {
		sum += v
		lo = math.Min(lo, v)
		hi = math.Max(hi, v)
	}
	switch agg {
	case v1alpha1.AggregationMax:
		return hi
	case v1alpha1.AggregationMin:
		return lo
	case v1alpha1.AggregationAvg:
		return sum / float64(len(values))
	default:
		return sum
	}
}

func describeFailure(r *Round) string {
	if len(r.Failed) == 0 {
		return "no API server instance was scraped"
	}
	names := make([]string, 0, len(r.Failed))
	for inst := range r.Failed {
		names = append(names, inst)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, inst := range names {
		parts = append(parts, inst+": "+r.Failed[inst])
	}
	return fmt.Sprintf("%d of %d instances not scraped (%s)", len(r.Failed), len(r.Failed)+len(r.Instances), strings.Join(parts, "; "))
}
