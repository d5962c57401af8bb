package controllers

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
)

// setStatus computes the whole status from what the loop saw. It reads only
// values, never the API, and is tested without a client.
func setStatus(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	if !state.evaluated.IsZero() {
		setSignals(obj, state)
		setOffenders(obj, state)
		setMetricsCondition(obj, state)
		setTriggeredCondition(obj, state)
		setActions(obj, state)
		t := metav1.NewTime(state.evaluated)
		obj.Status.LastEvaluationTime = &t
	}
	setReadyCondition(obj, state)
	setPhase(obj, state)
	var se *specError
	if state.err == nil || errors.As(state.err, &se) {
		// The loop saw this generation through, even if the spec is invalid:
		// Ready says so for exactly this generation.
		obj.Status.ObservedGeneration = obj.Generation
	}
}

func setSignals(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	out := make([]v1alpha1.SignalStatus, 0, len(state.signals))
	for _, s := range state.signals {
		st := v1alpha1.SignalStatus{
			Name:           s.Name,
			Signal:         s.Signal,
			Threshold:      detection.FormatValue(s.Threshold),
			ClearThreshold: detection.FormatValue(s.ClearThreshold),
			State:          s.State.State,
			Message:        s.Message,
		}
		if s.OK {
			st.Value = detection.FormatValue(s.Value)
		}
		if !s.State.Since.IsZero() {
			since := metav1.NewTime(s.State.Since)
			st.Since = &since
		}
		out = append(out, st)
	}
	obj.Status.Signals = out
	if _, worst, ok := detection.Worst(state.signals); ok {
		obj.Status.WorstSignal = worst
	}
}

func setOffenders(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	out := make([]v1alpha1.OffenderStatus, 0, len(state.offenders))
	for _, o := range state.offenders {
		out = append(out, v1alpha1.OffenderStatus{
			ServiceAccount:      o.ServiceAccount,
			DaemonSets:          o.DaemonSets,
			Shared:              o.Shared(),
			RequestsPerSecond:   detection.FormatValue(o.RequestsPerSecond),
			RejectedPerSecond:   detection.FormatValue(o.RejectedPerSecond),
			RequestSharePercent: percent(o.RequestShare),
			SeatSharePercent:    percent(o.SeatShare),
		})
	}
	obj.Status.Offenders = out
}

func percent(share float64) int32 {
	return int32(math.Round(share * 100))
}

func setMetricsCondition(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	status := metav1.ConditionFalse
	if state.metrics.available {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{
		Type:               v1alpha1.ConditionMetricsAvailable,
		Status:             status,
		Reason:             state.metrics.reason,
		Message:            truncate(state.metrics.message),
		ObservedGeneration: obj.Generation,
	})
}

func setTriggeredCondition(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	var firing []string
	for _, s := range state.signals {
		if s.Firing() {
			firing = append(firing, fmt.Sprintf("%s (%s %s > %s)", s.Name, s.Signal, valueOrMissing(s), detection.FormatValue(s.Threshold)))
		}
	}
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionTriggered,
		Status:             metav1.ConditionFalse,
		Reason:             v1alpha1.ReasonAllClear,
		Message:            "No trigger fires",
		ObservedGeneration: obj.Generation,
	}
	if len(firing) > 0 {
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonTriggerFiring
		cond.Message = truncate("Firing: " + strings.Join(firing, ", "))
	}
	meta.SetStatusCondition(&obj.Status.Conditions, cond)
}

func setReadyCondition(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	cond := metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		ObservedGeneration: obj.Generation,
	}
	var se *specError
	switch {
	case errors.As(state.err, &se):
		cond.Status = metav1.ConditionFalse
		cond.Reason = se.reason
		cond.Message = truncate(se.Error())
	case state.err != nil:
		cond.Status = metav1.ConditionFalse
		cond.Reason = v1alpha1.ReasonProgressing
		cond.Message = truncate("Reconcile failed, will retry: " + state.err.Error())
	case obj.Spec.Suspend:
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonSuspended
		cond.Message = "Suspended: nothing is evaluated or changed, and actions in place are held"
	default:
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonReconciled
		cond.Message = "Policy is valid and was evaluated"
	}
	meta.SetStatusCondition(&obj.Status.Conditions, cond)
}

// setPhase: Suspended for a valid suspended policy; Triggered while a
// trigger fires (no action is taken yet); Healthy when every trigger is OK;
// Unknown otherwise (invalid, not evaluated, or a signal missing).
func setPhase(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	switch {
	case state.err == nil && obj.Spec.Suspend:
		obj.Status.Phase = v1alpha1.PhaseSuspended
	case state.err != nil || state.evaluated.IsZero():
		obj.Status.Phase = v1alpha1.PhaseUnknown
	case shedding(state) && detection.Firing(state.signals):
		obj.Status.Phase = v1alpha1.PhaseShedding
	case shedding(state):
		obj.Status.Phase = v1alpha1.PhaseRestoring
	case detection.Firing(state.signals):
		obj.Status.Phase = v1alpha1.PhaseTriggered
	case detection.AllClear(state.signals):
		obj.Status.Phase = v1alpha1.PhaseHealthy
	default:
		obj.Status.Phase = v1alpha1.PhaseUnknown
	}
}

// truncate keeps condition messages within the API's 32768-byte limit.
func truncate(s string) string {
	const limit = 4096
	if len(s) <= limit {
		return s
	}
	return s[:limit-3] + "..."
}

// shedding reports whether the plan keeps anything throttled or paused; in
// dryRun nothing is.
func shedding(state *reconcileState) bool {
	return state.plan != nil && !state.config.DryRun && (len(state.plan.Paused) > 0 || len(state.plan.Throttled) > 0)
}

// setActions lists what the plan keeps in place (in dryRun: what it would),
// counts it, and sets the Shedding condition.
func setActions(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	p := state.plan
	if p == nil {
		return
	}
	prefix := ""
	if state.config.DryRun {
		prefix = "dryRun, not applied: "
	}
	var actions []v1alpha1.ActionStatus
	for _, sa := range slices.Sorted(maps.Keys(p.Throttled)) {
		since := metav1.NewTime(p.Throttled[sa])
		actions = append(actions, v1alpha1.ActionStatus{Kind: v1alpha1.ActionThrottle, Target: sa, Since: &since,
			Message: prefix + "routed to the throttling priority level"})
	}
	for _, ds := range slices.Sorted(maps.Keys(p.Paused)) {
		rec := p.Paused[ds]
		since := metav1.NewTime(rec.Since)
		a := v1alpha1.ActionStatus{Kind: v1alpha1.ActionPause, Target: ds, Since: &since,
			Attempt: int32(rec.Attempt), Wave: int32(rec.Wave)}
		if next := restoreDue(state, rec); !next.IsZero() {
			t := metav1.NewTime(next)
			a.NextRestoreTime = &t
		}
		a.Message = prefix + "paused"
		if rec.Wave > 0 {
			a.Message = fmt.Sprintf("%srestoring: wave %d of %d (%d%% of its nodes)", prefix, rec.Wave,
				len(state.config.Restore.WavePercents), state.config.Restore.WavePercents[rec.Wave-1])
		}
		actions = append(actions, a)
	}
	obj.Status.Actions = actions
	if state.config.DryRun {
		obj.Status.PausedCount, obj.Status.ThrottledCount = 0, 0
	} else {
		obj.Status.PausedCount, obj.Status.ThrottledCount = int32(len(p.Paused)), int32(len(p.Throttled))
	}
	obj.Status.NextRestoreTime = nil
	if !p.NextRestore.IsZero() {
		t := metav1.NewTime(p.NextRestore)
		obj.Status.NextRestoreTime = &t
	}

	cond := metav1.Condition{Type: v1alpha1.ConditionShedding, Status: metav1.ConditionFalse,
		Reason: v1alpha1.ReasonNothingShed, Message: "Nothing is throttled or paused", ObservedGeneration: obj.Generation}
	if len(actions) > 0 {
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonActionsInPlace
		cond.Message = fmt.Sprintf("%s%d ServiceAccounts throttled, %d DaemonSets paused or restoring", prefix, len(p.Throttled), len(p.Paused))
		if state.config.DryRun {
			cond.Status = metav1.ConditionFalse
		}
	}
	if len(p.Blocked) > 0 {
		cond.Message += "; " + strings.Join(p.Blocked, "; ")
	}
	if overridden := append(append([]string(nil), p.PutBack...), p.Held...); len(overridden) > 0 {
		cond.Reason = v1alpha1.ReasonPauseOverridden
		cond.Message += "; someone removed the pause of " + strings.Join(overridden, ", ") +
			" (put back at most once per backoff step)"
	}
	cond.Message = truncate(cond.Message)
	meta.SetStatusCondition(&obj.Status.Conditions, cond)
}

// restoreDue is when a paused DaemonSet's next restore step may come.
func restoreDue(state *reconcileState, rec plan.Pause) time.Time {
	if rec.Wave > 0 {
		return rec.WaveStarted.Add(state.config.Restore.Probation)
	}
	return rec.NextRestore
}
