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
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.EventTriggerFired, actionEvaluate, "%s", detection.FiredNote(s))
	}
	for _, s := range stopped {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.EventTriggerCleared, actionEvaluate, "%s", detection.ClearedNote(s))
	}
}

// recordChanges records an event for each change of a plan, on the policy
// and on the DaemonSet it concerns; in dryRun the reasons start with Would.
func (r *LoadShedPolicyReconciler) recordChanges(obj *v1alpha1.LoadShedPolicy, p plan.Plan, dryRun bool) {
	for _, c := range p.Changes {
		reason, note := string(c.Kind), c.String()
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
// someone removed that loadshed puts back now. A removed pause held until
// its backoff step has passed is in status, not in an event each loop.
func (r *LoadShedPolicyReconciler) recordOverrides(obj *v1alpha1.LoadShedPolicy, p plan.Plan) {
	for _, key := range p.PutBack {
		note := fmt.Sprintf("Someone removed the pause of %s while it should hold; put it back (%d times so far); "+
			"removed again, it is put back after a longer backoff step", key, p.Paused[key].Overrides)
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.EventPauseOverridden, actionShed, "%s", note)
		r.Recorder.Eventf(daemonSetRef(key), obj, corev1.EventTypeWarning, v1alpha1.EventPauseOverridden, actionShed,
			"%s (policy %s)", note, obj.Name)
	}
}

// recordBlocked records each action the plan may not take, once: when it
// was not blocked in the status the loop started from, nor reported
// already while the triggers fire (firing says whether they do; when they
// do not, what is blocked next is new).
func (r *LoadShedPolicyReconciler) recordBlocked(obj *v1alpha1.LoadShedPolicy, p plan.Plan, firing bool) {
	for _, b := range r.reported.newlyBlocked(obj.Name, obj.Status.Blocked, p.Blocked) {
		note := upperFirst(b.String())
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.EventBlocked, actionShed, "%s", note)
		if b.Kind == plan.Paused {
			r.Recorder.Eventf(daemonSetRef(b.Target), obj, corev1.EventTypeWarning, v1alpha1.EventBlocked, actionShed,
				"%s (policy %s)", note, obj.Name)
		}
	}
	if !firing {
		r.reported.forget(obj.Name)
	}
}

// daemonSetRef is a DaemonSet to record an event on.
func daemonSetRef(key types.NamespacedName) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{}
	ds.Namespace, ds.Name = key.Namespace, key.Name
	return ds
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
