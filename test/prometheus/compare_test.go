package prometheus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// tolerance is how far Prometheus's value of a signal may be from the
// operator's at one instant: abs plus rel times the smaller of the two.
type tolerance struct {
	abs, rel float64
}

// toleranceOf is the tolerance of a query's kind; docs/signals.md states
// the same. Both sides read the same kube-apiservers each second, but not
// at the same instants: Prometheus's value at a round's instant rests on
// its last scrape before it, taken between the operator's round before and
// this one. So Prometheus's value agrees when it is within the tolerance of
// the operator's value at either round, or between the two (see agrees).
//
//   - Gauges (inflightRequests, inqueueRequests) are read at different
//     instants: 1 request and 10%.
//   - seatUtilization is a ratio of gauges read at different instants:
//     0.1 and 10%.
//   - Rates: Prometheus's rate() extrapolates the increase between the
//     first and last samples in the window to the window's edges; the
//     operator divides that increase by the time between its first and
//     last rounds in the window (internal/signals/query.go): the same rate
//     for a steady counter. The windows end up to an interval apart, so
//     each counts events at its edges the other does not: 10%, and one
//     event over the window.
//   - Quantiles: both interpolate within the bucket of the rank, from
//     the buckets' increases over windows that end up to an interval apart:
//     a few requests at the edges move the rank within its bucket, and
//     Prometheus's per-series extrapolation moves the counts a little:
//     15%, and 1ms.
//   - scrapeLatency is not the same measurement on both sides: Prometheus
//     times its own scrape (scrape_duration_seconds: the text format, every
//     family, stored), the operator its own (protobuf, only the families it
//     reads, folded while parsed), the slowest of the round. They agree in
//     magnitude only: a factor of 2, and 0.25s.
func toleranceOf(q signals.Query) tolerance {
	switch q.Kind {
	case signals.Gauge:
		return tolerance{abs: 1, rel: 0.1}
	case signals.SeatUtilization:
		return tolerance{abs: 0.1, rel: 0.1}
	case signals.Rate:
		return tolerance{abs: 1 / q.Window.Seconds(), rel: 0.1}
	case signals.Quantile:
		return tolerance{abs: 0.001, rel: 0.15}
	default:
		return tolerance{abs: 0.25, rel: 1}
	}
}

func (tol tolerance) allows(a, b float64) bool {
	return math.Abs(a-b) <= tol.abs+tol.rel*math.Min(math.Abs(a), math.Abs(b))
}

// maxOff is the share of instants that may disagree, or lack a value on a
// side: a handful of slow requests that is in one side's window and not yet
// (or no longer) in the other's moves a p99 across buckets for about an
// interval at each edge of the window, and a scrape that fails on a busy
// machine leaves an instant without a value.
const maxOff = 0.1

// comparison is one signal's values on both sides at each instant.
type comparison struct {
	tol      tolerance
	instants []instant
}

type instant struct {
	at time.Time
	// op is the operator's point at the round, before the one before.
	op, before trigger.Point
	prom       float64
	err        error
}

// compare queries Prometheus at the instant of each round from from on,
// and computes the operator's value there.
func compare(ctx context.Context, t *testing.T, querier *promsource.Querier, q signals.Query,
	rounds []*signals.Round, from time.Time) comparison {
	t.Helper()
	points, _ := q.Points(rounds)
	c := comparison{tol: toleranceOf(q)}
	for i, r := range rounds {
		if r.T.Before(from) {
			continue
		}
		v, _, err := querier.Query(ctx, q.PromQL(), r.T)
		if err != nil && !errors.Is(err, promsource.ErrNoData) {
			t.Fatalf("querying Prometheus: %v", err)
		}
		in := instant{at: r.T, op: points[i], prom: v, err: err}
		if i > 0 {
			in.before = points[i-1]
		}
		c.instants = append(c.instants, in)
	}
	return c
}

// check fails when more than maxOff of the instants disagree or lack a
// value, when there are too few instants, or when the operator's value is
// zero at most of them (the comparison would prove nothing).
func (c comparison) check() error {
	if len(c.instants) < int(compareFor.Seconds()/2) {
		return fmt.Errorf("only %d instants compared in %v", len(c.instants), compareFor)
	}
	off, zero := 0, 0
	for _, in := range c.instants {
		if !in.agrees(c.tol) {
			off++
		}
		if in.op.OK && in.op.V == 0 {
			zero++
		}
	}
	if zero > len(c.instants)/2 {
		return fmt.Errorf("the operator's value is 0 at %d of %d instants: the load does not make the signal move",
			zero, len(c.instants))
	}
	if float64(off) > maxOff*float64(len(c.instants)) {
		return fmt.Errorf("%d of %d instants disagree beyond ±(%g + %g%%) or lack a value (at most %g%% may)",
			off, len(c.instants), c.tol.abs, c.tol.rel*100, maxOff*100)
	}
	return nil
}

// agrees says whether Prometheus's value is within the tolerance of the
// operator's at the round or at the one before, or between the two.
func (in instant) agrees(tol tolerance) bool {
	if !in.op.OK || in.err != nil {
		return false
	}
	if tol.allows(in.op.V, in.prom) {
		return true
	}
	if !in.before.OK {
		return false
	}
	lo, hi := min(in.op.V, in.before.V), max(in.op.V, in.before.V)
	return tol.allows(in.before.V, in.prom) || (lo <= in.prom && in.prom <= hi)
}

// summary gives the medians of both sides and the largest difference.
func (c comparison) summary() string {
	var ops, proms []float64
	worst, off := 0.0, 0
	for _, in := range c.instants {
		if !in.agrees(c.tol) {
			off++
		}
		if in.op.OK && in.err == nil {
			ops, proms = append(ops, in.op.V), append(proms, in.prom)
			worst = max(worst, math.Abs(in.op.V-in.prom))
		}
	}
	return fmt.Sprintf("%d instants, %d off: median operator %.4g, Prometheus %.4g; largest difference %.3g",
		len(c.instants), off, median(ops), median(proms), worst)
}

// table lists every instant.
func (c comparison) table() string {
	var b strings.Builder
	for _, in := range c.instants {
		mark := ""
		if !in.agrees(c.tol) {
			mark = "  <- off"
		}
		prom := fmt.Sprintf("%.4g", in.prom)
		if in.err != nil {
			prom = "no data"
		}
		op := fmt.Sprintf("%.4g", in.op.V)
		if !in.op.OK {
			op = "missing"
		}
		before := fmt.Sprintf("%.4g", in.before.V)
		if !in.before.OK {
			before = "missing"
		}
		fmt.Fprintf(&b, "  %s  operator %-10s (before %-10s) Prometheus %-10s%s\n",
			in.at.Format("15:04:05.000"), op, before, prom, mark)
	}
	return b.String()
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(vs))
	return s[len(s)/2]
}
