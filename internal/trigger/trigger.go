// Package trigger decides, from a trigger's recent values, whether it fires.
// It is pure: values and the clock come in, a state comes out.
//
// A trigger fires when its value has stayed above threshold for the
// duration "for", and clears when its value has stayed at or below
// clearThreshold for "for" (hysteresis: a value between the two changes
// nothing). Missing or stale data never counts as healthy: a firing trigger
// without fresh data stays firing, and one that was not firing becomes
// Unknown, which blocks restores just as firing does. Nor does it count
// toward a healthy streak seen only afterwards: an OK state is never older
// than the unbroken run of fresh points it rests on. A value read from only
// some of the API servers, when it can only be lower than the whole's, is
// a lower bound: past the threshold it counts, as the whole would be too;
// otherwise it is missing.
package trigger

import (
	"slices"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Point is one value of a signal, or a gap where it could not be read.
type Point struct {
	// T is when the value was read.
	T time.Time
	// V is the value; meaningful only when OK.
	V float64
	// OK is false when the value is missing (a failed scrape or query).
	OK bool
	// LowerBound says that V was read from only some of the API servers,
	// and the value of all of them can only be higher (a sum or a maximum
	// over them): it tells that a threshold is past, never that it is not.
	LowerBound bool
}

// Known reports whether the point counts against threshold: a value, and,
// for a lower bound, one past the threshold.
func (p Point) Known(threshold float64) bool {
	return p.OK && (!p.LowerBound || p.V > threshold)
}

// bounded returns the points with each lower bound that is not past the
// threshold counted as missing.
func bounded(points []Point, threshold float64) []Point {
	var out []Point
	for i, p := range points {
		if p.OK && !p.Known(threshold) {
			if out == nil {
				out = slices.Clone(points)
			}
			out[i].OK = false
		}
	}
	if out == nil {
		return points
	}
	return out
}

// Spec is what a trigger compares its values with.
type Spec struct {
	Threshold      float64
	ClearThreshold float64
	For            time.Duration
	// MaxGap is the longest time between two points that still counts as
	// continuous, and how old the newest point may be. Typically twice the
	// policy's interval plus the scrape timeout.
	MaxGap time.Duration
}

// Status is a trigger's state and when it entered it.
type Status struct {
	State v1alpha1.TriggerState
	Since time.Time
}

// Latched reports whether the trigger counts as firing: Firing, or Clearing
// (firing, with the value on its way back).
func (s Status) Latched() bool {
	return s.State == v1alpha1.TriggerFiring || s.State == v1alpha1.TriggerClearing
}

// Healthy reports whether the trigger counts towards an all-clear: only OK does.
func (s Status) Healthy() bool {
	return s.State == v1alpha1.TriggerOK
}

// Evaluate returns the trigger's state at now, given its previous state and
// its points in time order. Points older than needed are ignored.
func Evaluate(spec Spec, prev Status, points []Point, now time.Time) Status {
	points = bounded(points, spec.Threshold)
	latched := prev.Latched()
	last := len(points) - 1
	if last < 0 || !points[last].OK || now.Sub(points[last].T) > spec.MaxGap {
		if latched {
			// Held: no fresh value is no reason to stop shedding.
			return keep(prev, v1alpha1.TriggerFiring, now, now)
		}
		return keep(prev, v1alpha1.TriggerUnknown, now, now)
	}

	if !latched {
		start, ok := runStart(points, spec.MaxGap, func(v float64) bool { return v > spec.Threshold })
		if !ok {
			return okSince(prev, points, spec.MaxGap, now)
		}
		if now.Sub(start) >= spec.For {
			return Status{State: v1alpha1.TriggerFiring, Since: now}
		}
		return keep(prev, v1alpha1.TriggerPending, start, now)
	}

	start, ok := runStart(points, spec.MaxGap, func(v float64) bool { return v <= spec.ClearThreshold })
	if !ok {
		// Still past clearThreshold.
		return keep(prev, v1alpha1.TriggerFiring, now, now)
	}
	if now.Sub(start) >= spec.For {
		return Status{State: v1alpha1.TriggerOK, Since: now}
	}
	return keep(prev, v1alpha1.TriggerClearing, start, now)
}

// okSince returns the OK state. It keeps prev's Since while the points
// since then are unbroken, and otherwise starts it where the newest unbroken
// run of points began: a gap in the data (an API server down, a scrape
// that failed) that no loop saw as Unknown, because none ran or none could
// write its status, still ends the healthy streak.
func okSince(prev Status, points []Point, maxGap time.Duration, now time.Time) Status {
	st := keep(prev, v1alpha1.TriggerOK, now, now)
	start, broken := unbrokenSince(points, maxGap)
	if broken && start.After(st.Since) {
		st.Since = start
	}
	return st
}

// unbrokenSince returns when the newest run of fresh points without a
// missing point or a gap longer than maxGap began, and whether something
// broke it. Missing points with no value before them are the edge of the
// history kept (the oldest round has no earlier one to take a rate from),
// not a gap in the data: a run that reaches them is unbroken.
func unbrokenSince(points []Point, maxGap time.Duration) (time.Time, bool) {
	i := len(points) - 1
	if i < 0 {
		return time.Time{}, false
	}
	for i > 0 {
		if points[i].T.Sub(points[i-1].T) > maxGap {
			return points[i].T, true
		}
		if !points[i-1].OK {
			return points[i].T, slices.ContainsFunc(points[:i-1], func(p Point) bool { return p.OK })
		}
		i--
	}
	return points[0].T, false
}

// keep returns state s, keeping prev's Since when the state does not change
// (so that "since" means since the state began), or since when it does.
func keep(prev Status, s v1alpha1.TriggerState, since, now time.Time) Status {
	if prev.State == s && !prev.Since.IsZero() {
		return prev
	}
	if since.IsZero() || since.After(now) {
		since = now
	}
	return Status{State: s, Since: since}
}

// runStart returns when the newest unbroken run of points satisfying cond
// began: the run ends at the newest point, has no missing points, and no gap
// longer than maxGap. ok is false when the newest point does not satisfy cond.
func runStart(points []Point, maxGap time.Duration, cond func(float64) bool) (time.Time, bool) {
	i := len(points) - 1
	if i < 0 || !points[i].OK || !cond(points[i].V) {
		return time.Time{}, false
	}
	for i > 0 {
		p := points[i-1]
		if !p.OK || !cond(p.V) || points[i].T.Sub(p.T) > maxGap {
			break
		}
		i--
	}
	return points[i].T, true
}
