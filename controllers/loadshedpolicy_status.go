package controllers

import (
	"errors"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// setStatus computes the whole status from what the loop saw. It reads only
// values, never the API, and is tested without a client.
func setStatus(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	setReadyCondition(obj, state)
	setPhase(obj, state)
	var se *specError
	if state.err == nil || errors.As(state.err, &se) {
		// The loop saw this generation through, even if the spec is invalid:
		// Ready says so for exactly this generation.
		obj.Status.ObservedGeneration = obj.Generation
	}
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
		cond.Message = se.Error()
	case state.err != nil:
		cond.Status = metav1.ConditionFalse
		cond.Reason = v1alpha1.ReasonProgressing
		cond.Message = "Reconcile failed, will retry: " + state.err.Error()
	case obj.Spec.Suspend:
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonSuspended
		cond.Message = "Suspended: nothing is evaluated or changed, and actions in place are held"
	default:
		cond.Status = metav1.ConditionTrue
		cond.Reason = v1alpha1.ReasonReconciled
		cond.Message = "Policy is valid"
	}
	meta.SetStatusCondition(&obj.Status.Conditions, cond)
}

// setPhase sets Suspended for a valid suspended policy and Unknown for
// everything not evaluated against signals.
func setPhase(obj *v1alpha1.LoadShedPolicy, state *reconcileState) {
	if state.err == nil && obj.Spec.Suspend {
		obj.Status.Phase = v1alpha1.PhaseSuspended
		return
	}
	obj.Status.Phase = v1alpha1.PhaseUnknown
}
