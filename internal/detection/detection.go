// Package detection decides, from the rounds the sampler took, what each of
// a policy's triggers says and who carries the load. It is pure: rounds,
// the previous trigger states and the clock come in; signal states and
// offenders come out. The controller gathers the input and writes status.
package detection

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// Reading is one trigger's latest reading: its signal's value and the
// trigger's state.
type Reading struct {
	Name   string
	Signal string
	// Value is the newest value; meaningful only when OK.
	Value          float64
	OK             bool
	Threshold      float64
	ClearThreshold float64
	Status         trigger.Status
	// Message says why a value is missing, or what is odd about it.
	Message string
}

// Firing reports whether the trigger counts as firing.
func (s Reading) Firing() bool { return s.Status.Latched() }

// Input is everything a policy's evaluation reads.
type Input struct {
	Config *policy.Config
	// Queries are the triggers' queries, by trigger name (none for promQL triggers).
	Queries map[string]signals.Query
	// Points are, for promQL triggers, their values read from Prometheus.
	Points map[string][]trigger.Point
	// Rounds are the sampler's rounds, oldest first.
	Rounds []*signals.Round
	// Previous are the trigger states the policy's status holds, and
	// PreviousAt when they were evaluated (its lastEvaluationTime; zero if
	// never).
	Previous   map[string]trigger.Status
	PreviousAt time.Time
	Now        time.Time
}

// Evaluate returns each trigger's value and state, in spec order.
func Evaluate(in Input) []Reading {
	out := make([]Reading, 0, len(in.Config.Triggers))
	for i := range in.Config.Triggers {
		t := &in.Config.Triggers[i]
		var points []trigger.Point
		var msg string
		if q, ok := in.Queries[t.Name]; ok {
			points, msg = q.Points(in.Rounds)
		} else {
			points = in.Points[t.Name]
		}
		spec := trigger.Spec{
			Threshold:      t.Threshold,
			ClearThreshold: t.ClearThreshold,
			For:            t.For,
			MaxGap:         MaxGap(in.Config),
		}
		s := Reading{
			Name:           t.Name,
			Signal:         t.SignalName(),
			Threshold:      t.Threshold,
			ClearThreshold: t.ClearThreshold,
			Status:         trigger.Evaluate(spec, carried(in.Previous[t.Name], in.PreviousAt, in.Now, spec.MaxGap), points, in.Now),
			Message:        msg,
		}
		n := len(points)
		switch {
		case n > 0 && points[n-1].Known(t.Threshold) && in.Now.Sub(points[n-1].T) <= spec.MaxGap:
			s.Value, s.OK = points[n-1].V, true
		case n > 0 && points[n-1].OK && in.Now.Sub(points[n-1].T) <= spec.MaxGap:
			// Read from only some of the API servers, and under the
			// threshold: the others may be past it.
			s.Message = fmt.Sprintf("only a lower bound, %s, from the API servers scraped: %s",
				FormatValue(points[n-1].V), s.Message)
		case s.Message == "":
			s.Message = "no fresh value"
		}
		out = append(out, s)
	}
	return out
}

// carried returns the previous state a trigger goes on from. A healthy
// streak is not carried across a time in which no evaluation ran (the
// operator was down, or a new leader took over, or none could write its
// status): the points of the sampler's history begin after it, without a
// gap, and would otherwise vouch for the time before them. It goes on
// from Unknown, since the last evaluation, instead. A firing trigger stays
// firing across it, as it does across any gap. Status keeps times to the
// second, hence the extra second.
func carried(prev trigger.Status, at, now time.Time, maxGap time.Duration) trigger.Status {
	if prev.Healthy() && !at.IsZero() && now.Sub(at) > maxGap+time.Second {
		return trigger.Status{State: v1alpha1.TriggerUnknown, Since: at}
	}
	return prev
}

// MaxGap is how old a value may be, and how far apart two values may be,
// and still count: two intervals and a scrape timeout.
func MaxGap(cfg *policy.Config) time.Duration {
	return 2*cfg.Interval + cfg.Source.ScrapeTimeout
}

// Retention is how much history a policy's triggers need.
func Retention(cfg *policy.Config) time.Duration {
	var longest time.Duration
	for _, t := range cfg.Triggers {
		longest = max(longest, t.For+t.Window)
	}
	return longest + 2*MaxGap(cfg)
}

// AttributionWindow is the window over which offenders' loads are measured
// (see Offenders): the longest trigger window, and at least ten intervals,
// so that the shares rest on ten samples of what the API servers hold, not
// on an instant or two.
func AttributionWindow(cfg *policy.Config) time.Duration {
	w := cfg.Interval * 10
	for _, t := range cfg.Triggers {
		w = max(w, t.Window)
	}
	return w
}

// Firing reports whether any trigger fires.
func Firing(sigs []Reading) bool {
	for _, s := range sigs {
		if s.Firing() {
			return true
		}
	}
	return false
}

// AllClear reports whether every trigger is OK: none firing, none unknown.
func AllClear(sigs []Reading) bool {
	for _, s := range sigs {
		if !s.Status.Healthy() {
			return false
		}
	}
	return true
}

// Worst returns the signal furthest past, or closest to, its threshold,
// preferring firing ones, and a short description for kubectl.
func Worst(sigs []Reading) (Reading, string, bool) {
	best, bestScore, found := Reading{}, math.Inf(-1), false
	for _, s := range sigs {
		score := math.Inf(-1)
		if s.OK && s.Threshold > 0 {
			score = s.Value / s.Threshold
		}
		if s.Firing() {
			score += 1e6
		}
		if !found || score > bestScore {
			best, bestScore, found = s, score, true
		}
	}
	if !found {
		return Reading{}, "", false
	}
	value := "?"
	if best.OK {
		value = FormatValue(best.Value)
	}
	return best, fmt.Sprintf("%s %s/%s", best.Name, value, FormatValue(best.Threshold)), true
}

// FormatValue formats a value for status: up to four significant digits.
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Transitions returns the triggers that started or stopped firing between
// two evaluations, by name, for events.
func Transitions(prev map[string]trigger.Status, sigs []Reading) (started, stopped []Reading) {
	for _, s := range sigs {
		was := prev[s.Name].Latched()
		switch {
		case s.Firing() && !was:
			started = append(started, s)
		case !s.Firing() && was:
			stopped = append(stopped, s)
		}
	}
	sort.Slice(started, func(i, j int) bool { return started[i].Name < started[j].Name })
	sort.Slice(stopped, func(i, j int) bool { return stopped[i].Name < stopped[j].Name })
	return started, stopped
}

// Shown is the reading's value as status and events write it, or
// "missing".
func (s Reading) Shown() string {
	if !s.OK {
		return "missing"
	}
	return FormatValue(s.Value)
}

// FiredNote says that a trigger started firing, for its event.
func FiredNote(s Reading) string {
	return fmt.Sprintf("Trigger %s fired: %s is %s, above %s", s.Name, s.Signal, s.Shown(), FormatValue(s.Threshold))
}

// ClearedNote says that a trigger stopped firing, for its event.
func ClearedNote(s Reading) string {
	return fmt.Sprintf("Trigger %s cleared: %s is %s, at or below %s", s.Name, s.Signal, s.Shown(), FormatValue(s.ClearThreshold))
}

// FiringSince is when the trigger firing longest started firing; zero if
// none is (a clearing trigger has started clearing).
func FiringSince(readings []Reading) time.Time {
	var since time.Time
	for _, s := range readings {
		if s.Status.State == v1alpha1.TriggerFiring && (since.IsZero() || s.Status.Since.Before(since)) {
			since = s.Status.Since
		}
	}
	return since
}

// ClearSince is when every trigger became OK; zero unless all are OK.
func ClearSince(readings []Reading) time.Time {
	var since time.Time
	if !AllClear(readings) {
		return since
	}
	for _, s := range readings {
		if s.Status.Since.After(since) {
			since = s.Status.Since
		}
	}
	return since
}

// StatusOf reads a trigger's state back from status.
func StatusOf(s v1alpha1.SignalStatus) trigger.Status {
	st := trigger.Status{State: s.State}
	if s.Since != nil {
		st.Since = s.Since.Time
	}
	return st
}
