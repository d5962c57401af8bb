package controllers

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/trigger"
)

// Event reasons. Few, UpperCamelCase, one constructor each.
const (
	// ReasonTriggerFired: a trigger started firing.
	ReasonTriggerFired = "TriggerFired"
	// ReasonTriggerCleared: a trigger stopped firing.
	ReasonTriggerCleared = "TriggerCleared"
)

// Event actions (events.k8s.io/v1 "action").
const (
	actionEvaluate = "Evaluate"
)

// recordTransitions records an event for each trigger that started or
// stopped firing since the last evaluation.
func (r *LoadShedPolicyReconciler) recordTransitions(obj *v1alpha1.LoadShedPolicy, prev map[string]trigger.State, sigs []detection.Signal) {
	started, stopped := detection.Transitions(prev, sigs)
	for _, s := range started {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonTriggerFired, actionEvaluate, "%s", triggerFiredNote(s))
	}
	for _, s := range stopped {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonTriggerCleared, actionEvaluate, "%s", triggerClearedNote(s))
	}
}

func triggerFiredNote(s detection.Signal) string {
	return fmt.Sprintf("Trigger %s fired: %s is %s, above %s", s.Name, s.Signal, valueOrMissing(s), detection.FormatValue(s.Threshold))
}

func triggerClearedNote(s detection.Signal) string {
	return fmt.Sprintf("Trigger %s cleared: %s is %s, at or below %s", s.Name, s.Signal, valueOrMissing(s),
		detection.FormatValue(s.ClearThreshold))
}

func valueOrMissing(s detection.Signal) string {
	if !s.OK {
		return "missing"
	}
	return detection.FormatValue(s.Value)
}

// recordActions records an event for each change of a plan, on the policy
// and on the DaemonSet it concerns; in dryRun the reasons start with Would.
func (r *LoadShedPolicyReconciler) recordActions(obj *v1alpha1.LoadShedPolicy, p plan.Plan, dryRun bool) {
	for _, a := range p.Actions {
		reason, note := string(a.Kind), fmt.Sprintf("%s %s: %s", a.Kind, a.Target, a.Reason)
		if dryRun {
			reason, note = "Would"+reason, "dryRun: would have "+lowerFirst(note)
		}
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, reason, actionShed, "%s", note)
		if isDaemonSetAction(a.Kind) {
			ds := &appsv1.DaemonSet{}
			ds.Namespace, ds.Name = splitKey(a.Target)
			r.Recorder.Eventf(ds, obj, corev1.EventTypeNormal, reason, actionShed, "%s (policy %s)", note, obj.Name)
		}
	}
}

const actionShed = "Shed"

// ReasonPauseOverridden is the reason of the event recorded when someone
// else removed a pause that should hold.
const ReasonPauseOverridden = "PauseOverridden"

// recordOverrides records, on the policy and the DaemonSet, each pause
// someone removed, and whether loadshed put it back or waits.
func (r *LoadShedPolicyReconciler) recordOverrides(obj *v1alpha1.LoadShedPolicy, p plan.Plan) {
	for _, key := range append(append([]string(nil), p.PutBack...), p.Held...) {
		note := fmt.Sprintf("Someone removed the pause of %s while it should hold; put it back", key)
		if slices.Contains(p.Held, key) {
			note = fmt.Sprintf("Someone removed the pause of %s again; it is put back at most once per backoff step", key)
		}
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonPauseOverridden, actionShed, "%s", note)
		ds := &appsv1.DaemonSet{}
		ds.Namespace, ds.Name = splitKey(key)
		r.Recorder.Eventf(ds, obj, corev1.EventTypeWarning, ReasonPauseOverridden, actionShed, "%s (policy %s)", note, obj.Name)
	}
}

func isDaemonSetAction(k plan.ActionKind) bool {
	return k != plan.Throttled && k != plan.Unthrottled
}

func splitKey(key string) (string, string) {
	sa := serviceAccountFromKey(key)
	return sa.Namespace, sa.Name
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
