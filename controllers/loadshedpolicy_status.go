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
	"k8s.io/apimachinery/pkg/types"

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
	setKstatusConditions(obj, state)
	setPhase(obj, state)
	var se *specError
	if state.err == nil || errors.As(state.err, &se) {
		// The loop saw this generation through, even if the spec is invalid:
		// Ready says so for exactly this generation.
		obj.Status.ObservedGeneration = obj.Generation
	}
}

func setSignals(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	out := make([]v1alpha1.SignalStatus, 0, len(state.readings))
	for _, s := range state.readings {
		st := v1alpha1.SignalStatus{
			Name:           s.Name,
			Signal:         s.Signal,
			Threshold:      detection.FormatValue(s.Threshold),
			ClearThreshold: detection.FormatValue(s.ClearThreshold),
			State:          s.Status.State,
			Message:        s.Message,
		}
		if s.OK {
			st.Value = detection.FormatValue(s.Value)
		}
		if !s.Status.Since.IsZero() {
			since := metav1.NewTime(s.Status.Since)
			st.Since = &since
		}
		out = append(out, st)
	}
	obj.Status.Signals = out
	if _, worst, ok := detection.Worst(state.readings); ok {
		obj.Status.WorstSignal = worst
	}
}

func setOffenders(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	out := make([]v1alpha1.OffenderStatus, 0, len(state.offenders))
	for _, o := range state.offenders {
		st := v1alpha1.OffenderStatus{
			User:                 o.User,
			DaemonSets:           namesOf(o.DaemonSets),
			Shared:               o.Shared(),
			InFlightSharePercent: percent(o.InFlightShare),
			SeatSharePercent:     percent(o.SeatShare),
			RequestSharePercent:  percent(o.RequestShare),
		}
		if o.ServiceAccount != (types.NamespacedName{}) {
			st.ServiceAccount = o.ServiceAccount.String()
		}
		if o.RequestsPerSecond > 0 || o.RejectedPerSecond > 0 {
			st.RequestsPerSecond = detection.FormatValue(o.RequestsPerSecond)
			st.RejectedPerSecond = detection.FormatValue(o.RejectedPerSecond)
		}
		out = append(out, st)
	}
	obj.Status.Offenders = out
}

// namesOf returns "namespace/name" for each.
func namesOf(keys []types.NamespacedName) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.String())
	}
	return out
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
	for _, s := range state.readings {
		if s.Firing() {
			firing = append(firing, fmt.Sprintf("%s (%s %s > %s)", s.Name, s.Signal, s.Shown(), detection.FormatValue(s.Threshold)))
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
		cond.Reason = v1alpha1.ReasonReconcileFailed
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

// setKstatusConditions sets the kstatus "abnormal-true" conditions, present
// only while they hold: Stalled for a spec that cannot be acted on until it
// (or what it refers to) changes, Reconciling while a failed loop is retried.
func setKstatusConditions(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	var se *specError
	switch {
	case errors.As(state.err, &se):
		meta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionReconciling)
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled,
			Status: metav1.ConditionTrue, Reason: se.reason, Message: truncate(se.Error()), ObservedGeneration: obj.Generation})
	case state.err != nil:
		meta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconcileFailed,
			Message: truncate("Retrying: " + state.err.Error()), ObservedGeneration: obj.Generation})
	default:
		meta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
		meta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionReconciling)
	}
}

// setDeletingStatus is the status of a policy whose finalizer is undoing
// what it did: what is left to undo, or why undoing failed.
func setDeletingStatus(obj *v1alpha1.LoadShedPolicy, undoing string, undoErr error) {
	msg := "Deleting: " + undoing
	if undoErr != nil {
		msg = "Deleting: undoing what the policy did failed, will retry: " + undoErr.Error()
	}
	for _, t := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionReconciling} {
		status := metav1.ConditionTrue
		if t == v1alpha1.ConditionReady {
			status = metav1.ConditionFalse
		}
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: t, Status: status,
			Reason: v1alpha1.ReasonDeleting, Message: truncate(msg), ObservedGeneration: obj.Generation})
	}
	meta.RemoveStatusCondition(&obj.Status.Conditions, v1alpha1.ConditionStalled)
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
	case shedding(state) && detection.Firing(state.readings):
		obj.Status.Phase = v1alpha1.PhaseShedding
	case shedding(state):
		obj.Status.Phase = v1alpha1.PhaseRestoring
	case detection.Firing(state.readings):
		obj.Status.Phase = v1alpha1.PhaseTriggered
	case detection.AllClear(state.readings):
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
	actions := actionStatuses(state)
	obj.Status.Actions = actions
	obj.Status.Blocked = plan.BlockedStatuses(obj.Status.Blocked, p.Blocked, state.evaluated)
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
	meta.SetStatusCondition(&obj.Status.Conditions, sheddingCondition(obj, state, len(actions) > 0))
}

// dryRunPrefix starts the messages of what a policy in dryRun would keep in place.
func dryRunPrefix(state *reconcileState) string {
	if state.config.DryRun {
		return "dryRun, not applied: "
	}
	return ""
}

// actionStatuses lists the throttles, then the pauses, of the plan.
func actionStatuses(state *reconcileState) []v1alpha1.ActionStatus {
	p, prefix := state.plan, dryRunPrefix(state)
	actions := make([]v1alpha1.ActionStatus, 0, len(p.Throttled)+len(p.Paused))
	for _, sa := range slices.SortedFunc(maps.Keys(p.Throttled), plan.CompareNames) {
		since := metav1.NewTime(p.Throttled[sa])
		actions = append(actions, v1alpha1.ActionStatus{Kind: v1alpha1.ActionThrottle, Target: sa.String(), Since: &since,
			Message: prefix + "routed to the throttling priority level"})
	}
	for _, ds := range slices.SortedFunc(maps.Keys(p.Paused), plan.CompareNames) {
		rec := p.Paused[ds]
		since := metav1.NewTime(rec.Since)
		a := v1alpha1.ActionStatus{Kind: v1alpha1.ActionPause, Target: ds.String(), Since: &since,
			Attempt: int32(rec.Attempt), Wave: int32(rec.Wave), Message: prefix + "paused"}
		if next := restoreDue(state, rec); !next.IsZero() {
			t := metav1.NewTime(next)
			a.NextRestoreTime = &t
		}
		if rec.Wave > 0 {
			a.Message = prefix + "restoring: " + plan.DescribeWave(rec.Wave, state.config.Restore.WavePercents, state.waveSizes[ds])
		}
		actions = append(actions, a)
	}
	return actions
}

// sheddingCondition says what is in place, what the plan may not do, and
// which pauses someone else removed.
func sheddingCondition(obj *v1alpha1.LoadShedPolicy, state *reconcileState, some bool) metav1.Condition {
	p, prefix := state.plan, dryRunPrefix(state)
	cond := metav1.Condition{Type: v1alpha1.ConditionShedding, Status: metav1.ConditionFalse,
		Reason: v1alpha1.ReasonNothingShed, Message: "Nothing is throttled or paused", ObservedGeneration: obj.Generation}
	if some {
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonActionsInPlace
		cond.Message = fmt.Sprintf("%s%d ServiceAccounts throttled, %d DaemonSets paused or restoring", prefix, len(p.Throttled), len(p.Paused))
		if state.config.DryRun {
			cond.Status = metav1.ConditionFalse
		}
	}
	for _, b := range p.Blocked {
		cond.Message += "; " + b.String()
	}
	if overridden := append(slices.Clone(p.PutBack), p.Held...); len(overridden) > 0 {
		cond.Reason = v1alpha1.ReasonPauseOverridden
		cond.Message += "; someone removed the pause of " + strings.Join(namesOf(overridden), ", ") +
			" (put back at most once per backoff step)"
	}
	cond.Message = truncate(cond.Message)
	return cond
}

// restoreDue is when a paused DaemonSet's next restore step may come.
func restoreDue(state *reconcileState, rec plan.Pause) time.Time {
	if rec.Wave > 0 {
		return rec.WaveStarted.Add(state.config.Restore.Probation)
	}
	return rec.NextRestore
}
