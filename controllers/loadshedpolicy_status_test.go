package controllers

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

func TestSetStatus(t *testing.T) {
	tests := []struct {
		name           string
		suspend        bool
		err            error
		wantReady      metav1.ConditionStatus
		wantReason     string
		wantPhase      v1alpha1.Phase
		wantObservedAt int64
	}{
		{
			name:           "a valid policy is ready and its generation observed",
			wantReady:      metav1.ConditionTrue,
			wantReason:     v1alpha1.ReasonReconciled,
			wantPhase:      v1alpha1.PhaseUnknown,
			wantObservedAt: 3,
		},
		{
			name:           "a suspended policy is ready and says it is suspended",
			suspend:        true,
			wantReady:      metav1.ConditionTrue,
			wantReason:     v1alpha1.ReasonSuspended,
			wantPhase:      v1alpha1.PhaseSuspended,
			wantObservedAt: 3,
		},
		{
			name:           "an invalid spec is not ready, and that generation is observed",
			err:            &specError{reason: v1alpha1.ReasonInvalidSpec, err: errors.New("spec.targets.selector: bad")},
			wantReady:      metav1.ConditionFalse,
			wantReason:     v1alpha1.ReasonInvalidSpec,
			wantPhase:      v1alpha1.PhaseUnknown,
			wantObservedAt: 3,
		},
		{
			name:           "a failed loop leaves observedGeneration where it was",
			err:            errors.New("connection refused"),
			wantReady:      metav1.ConditionFalse,
			wantReason:     v1alpha1.ReasonProgressing,
			wantPhase:      v1alpha1.PhaseUnknown,
			wantObservedAt: 2,
		},
		{
			name:           "an invalid suspended policy is not called suspended",
			suspend:        true,
			err:            &specError{reason: v1alpha1.ReasonSecretNotFound, err: errors.New("secret x not found")},
			wantReady:      metav1.ConditionFalse,
			wantReason:     v1alpha1.ReasonSecretNotFound,
			wantPhase:      v1alpha1.PhaseUnknown,
			wantObservedAt: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &v1alpha1.LoadShedPolicy{}
			obj.Generation = 3
			obj.Status.ObservedGeneration = 2
			obj.Spec.Suspend = tt.suspend
			setStatus(obj, &reconcileState{err: tt.err})

			c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil {
				t.Fatal("no Ready condition")
			}
			if c.Status != tt.wantReady || c.Reason != tt.wantReason {
				t.Errorf("Ready = %s/%s, want %s/%s", c.Status, c.Reason, tt.wantReady, tt.wantReason)
			}
			if c.Message == "" {
				t.Error("Ready has no message")
			}
			if c.ObservedGeneration != 3 {
				t.Errorf("Ready's observedGeneration = %d, want 3", c.ObservedGeneration)
			}
			if obj.Status.Phase != tt.wantPhase {
				t.Errorf("phase = %s, want %s", obj.Status.Phase, tt.wantPhase)
			}
			if obj.Status.ObservedGeneration != tt.wantObservedAt {
				t.Errorf("observedGeneration = %d, want %d", obj.Status.ObservedGeneration, tt.wantObservedAt)
			}
		})
	}
}

func TestResultFor(t *testing.T) {
	cfg := &policy.Config{Interval: 7e9}
	tests := []struct {
		name        string
		state       *reconcileState
		wantRequeue bool
		wantAfter   int64
	}{
		{"a good loop comes back after the interval", &reconcileState{config: cfg}, true, 7e9},
		{"an invalid spec waits for the spec to change", &reconcileState{err: &specError{reason: "InvalidSpec", err: errors.New("x")}}, false, 0},
		{"a missing Secret is looked at again", &reconcileState{err: &specError{reason: "SecretNotFound", retry: true, err: errors.New("x")}}, true, int64(policy.DefaultInterval)},
		{"a failure is left to the rate limiter", &reconcileState{err: errors.New("timeout")}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resultFor(tt.state)
			if (got.RequeueAfter > 0) != tt.wantRequeue || int64(got.RequeueAfter) != tt.wantAfter {
				t.Errorf("resultFor = %+v, want requeue after %v", got, tt.wantAfter)
			}
		})
	}
}
