package controllers

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/trigger"
)

// Event actions (events.k8s.io/v1 "action"); the reasons are in api/v1alpha1.
const (
	actionEvaluate = "Evaluate"
	actionShed     = "Shed"
)

// recordTransitions records an event for each trigger that started or
// stopped firing since the last evaluation.
func (r *LoadShedPolicyReconciler) recordTransitions(obj *v1alpha1.LoadShedPolicy, prev map[string]trigger.Status,
	readings []detection.Reading) {
	started, stopped := detection.Transitions(prev, readings)
	for _, s := range started {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.EventTriggerFired, actionEvaluate, "%s", triggerFiredNote(s))
	}
	for _, s := range stopped {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.EventTriggerCleared, actionEvaluate, "%s", triggerClearedNote(s))
	}
}

func triggerFiredNote(s detection.Reading) string {
	return fmt.Sprintf("Trigger %s fired: %s is %s, above %s", s.Name, s.Signal, valueOrMissing(s), detection.FormatValue(s.Threshold))
}

func triggerClearedNote(s detection.Reading) string {
	return fmt.Sprintf("Trigger %s cleared: %s is %s, at or below %s", s.Name, s.Signal, valueOrMissing(s),
		detection.FormatValue(s.ClearThreshold))
}

func valueOrMissing(s detection.Reading) string {
	if !s.OK {
		return "missing"
	}
	return detection.FormatValue(s.Value)
}

// recordChanges records an event for each change of a plan, on the policy
// and on the DaemonSet it concerns; in dryRun the reasons start with Would.
func (r *LoadShedPolicyReconciler) recordChanges(obj *v1alpha1.LoadShedPolicy, p plan.Plan, dryRun bool) {
	for _, c := range p.Changes {
		reason, note := string(c.Kind), fmt.Sprintf("%s %s: %s", c.Kind, c.Target, c.Reason)
		if dryRun {
			reason, note = v1alpha1.DryRunReason(reason), "dryRun: would have "+lowerFirst(note)
		}
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, reason, actionShed, "%s", note)
		if c.Kind.OnDaemonSet() {
			r.Recorder.Eventf(daemonSetRef(c.Target), obj, corev1.EventTypeNormal, reason, actionShed, "%s (policy %s)", note, obj.Name)
		}
	}
}

// recordOverrides records, on the policy and the DaemonSet, each pause
// someone removed, and whether loadshed put it back or waits.
func (r *LoadShedPolicyReconciler) recordOverrides(obj *v1alpha1.LoadShedPolicy, p plan.Plan) {
	record := func(key types.NamespacedName, note string) {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.EventPauseOverridden, actionShed, "%s", note)
		r.Recorder.Eventf(daemonSetRef(key), obj, corev1.EventTypeWarning, v1alpha1.EventPauseOverridden, actionShed,
			"%s (policy %s)", note, obj.Name)
	}
	for _, key := range p.PutBack {
		record(key, fmt.Sprintf("Someone removed the pause of %s while it should hold; put it back", key))
	}
	for _, key := range p.Held {
		record(key, fmt.Sprintf("Someone removed the pause of %s again; it is put back at most once per backoff step", key))
	}
}

// daemonSetRef is a DaemonSet to record an event on.
func daemonSetRef(key types.NamespacedName) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{}
	ds.Namespace, ds.Name = key.Namespace, key.Name
	return ds
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
