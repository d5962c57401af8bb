// Package inspect is the read side of kubectl loadshed: it gathers a
// policy, the pause records on the DaemonSets and the events, and explains
// them as the operator would act on them. status and why print what it
// returns; the explaining (Status, Explain, Next) is pure, reading values
// only, and decides with the operator's own code (internal/policy,
// internal/detection, internal/plan), so that what the plugin says is what
// the operator does.
package inspect

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
)

// Outlook is what comes next for a paused DaemonSet, from the record on it
// and its policy: the restore step, the earliest time it may come, and
// what it waits for.
type Outlook struct {
	// Step is the next restore step, e.g. "restore wave 1 of 4 (10% of its
	// nodes)" or "complete the restore".
	Step string `json:"step"`
	// At is the earliest time the step may come; nil while it waits for
	// something that has no time yet (a trigger to clear).
	At *metav1.Time `json:"at,omitempty"`
	// Due is true when nothing holds the step back any more: it comes at
	// the policy's next evaluation.
	Due bool `json:"due"`
	// Waiting says what the step waits for, one sentence each; empty when due.
	Waiting []string `json:"waiting,omitempty"`
}

// Pending is the policy's side of an Outlook: its spec resolved, its
// triggers as its status has them, whether it is suspended, and the
// DaemonSet it is restoring now, if another one is (one at a time).
type Pending struct {
	Config    *policy.Config
	Signals   []v1alpha1.SignalStatus
	Suspended bool
	// Restoring is another DaemonSet of the policy in a restore wave; "" if none.
	Restoring string
}

// Next says what comes next for a DaemonSet paused with rec, by the
// planner's rules (internal/plan): a restore starts once every trigger has
// been OK for restore.stableFor and the record's backoff has passed, one
// DaemonSet at a time; each wave is held for restore.probation of every
// trigger seen clear; a trigger firing during a wave pauses it again.
func Next(rec plan.Pause, p Pending, now time.Time) Outlook {
	r := p.Config.Restore
	waves := r.WavePercents
	clearSince := detection.ClearSince(readings(p.Signals))
	if len(p.Signals) == 0 {
		clearSince = time.Time{} // never evaluated: nothing is clear
	}
	var out Outlook
	var at time.Time
	switch {
	case rec.Wave == 0:
		out.Step = fmt.Sprintf("restore wave 1 of %d (%d%% of its nodes)", len(waves), waves[0])
		at = rec.NextRestore
		if now.Before(rec.NextRestore) {
			out.Waiting = append(out.Waiting, fmt.Sprintf("its backoff after %d relapsed restores, until %s",
				rec.Attempt, Clock(rec.NextRestore, now)))
		}
		if p.Restoring != "" {
			out.Waiting = append(out.Waiting, fmt.Sprintf("the restore of %s, in progress: one DaemonSet at a time, "+
				"the least loaded first", p.Restoring))
		}
	case rec.Wave >= len(waves):
		out.Step = "complete the restore (its template has its original scheduling; the record goes)"
	default:
		out.Step = fmt.Sprintf("wave %d of %d (%d%% of its nodes)", rec.Wave+1, len(waves), waves[rec.Wave])
	}
	if clearSince.IsZero() {
		out.Waiting = append(out.Waiting, notClear(p.Signals, r.StableFor, rec.Wave > 0, rec.Attempt))
	} else {
		at = maxTime(at, stepAt(rec, clearSince, r))
		if now.Before(at) {
			out.Waiting = append(out.Waiting, calmFor(rec, clearSince, at, r, now))
		}
	}
	if p.Suspended {
		out.Waiting = append([]string{"the policy is suspended (spec.suspend): nothing is restored until it is unset"},
			out.Waiting...)
	}
	if !at.IsZero() {
		out.At = &metav1.Time{Time: at}
	}
	out.Due = len(out.Waiting) == 0
	return out
}

// stepAt is when the next step may come once every trigger has been clear
// since clearSince: a stableFor after it for a first wave, a probation
// after the later of the wave's start and it for the next ones.
func stepAt(rec plan.Pause, clearSince time.Time, r policy.Restore) time.Time {
	if rec.Wave == 0 {
		return clearSince.Add(r.StableFor)
	}
	return maxTime(rec.WaveStarted, clearSince).Add(r.Probation)
}

// calmFor says which calm a step waits for.
func calmFor(rec plan.Pause, clearSince, at time.Time, r policy.Restore, now time.Time) string {
	if rec.Wave == 0 {
		return fmt.Sprintf("every trigger OK for restore.stableFor (%v): OK since %s, so until %s",
			r.StableFor, Clock(clearSince, now), Clock(at, now))
	}
	return fmt.Sprintf("the probation of wave %d (restore.probation %v of every trigger clear), until %s",
		rec.Wave, r.Probation, Clock(at, now))
}

// notClear says what keeps the triggers from being all OK, and what a
// firing one does to a DaemonSet in a wave.
func notClear(signals []v1alpha1.SignalStatus, stableFor time.Duration, inWave bool, attempt int) string {
	if len(signals) == 0 {
		return "every trigger OK for restore.stableFor (" + stableFor.String() + "): the policy has not been evaluated"
	}
	var not []string
	firing := false
	for _, s := range signals {
		if s.State == v1alpha1.TriggerOK {
			continue
		}
		firing = firing || s.State == v1alpha1.TriggerFiring
		not = append(not, fmt.Sprintf("%s is %s", s.Name, s.State))
	}
	out := fmt.Sprintf("every trigger OK for restore.stableFor (%v): %s", stableFor, strings.Join(not, ", "))
	if inWave && firing {
		out += fmt.Sprintf("; a trigger firing during a wave pauses it again (attempt %d)", attempt+1)
	}
	return out
}

// readings turns a policy's status signals into the detection's readings,
// for its FiringSince and ClearSince.
func readings(signals []v1alpha1.SignalStatus) []detection.Reading {
	out := make([]detection.Reading, 0, len(signals))
	for _, s := range signals {
		out = append(out, detection.Reading{Name: s.Name, Signal: s.Signal, Status: detection.StatusOf(s)})
	}
	return out
}

// Clock writes a time as RFC 3339 with how far it is from now: "2026-05-01T12:00:00Z (3m10s ago)".
func Clock(t, now time.Time) string {
	return t.UTC().Format(time.RFC3339) + " (" + Relative(t, now) + ")"
}

// Relative writes how far t is from now, to the second: "3m10s ago", "in 45s", "now".
func Relative(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d == 0:
		return "now"
	case d < 0:
		return (-d).String() + " ago"
	}
	return "in " + d.String()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
