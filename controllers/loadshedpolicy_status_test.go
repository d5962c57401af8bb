package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/plan"
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
			wantReason:     v1alpha1.ReasonReconcileFailed,
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

// TestKstatusConditions checks the conditions Flux, Argo CD and kubectl wait
// read: Stalled while the spec cannot be acted on, Reconciling while a failed
// loop is retried or the policy is being deleted, neither otherwise.
func TestKstatusConditions(t *testing.T) {
	invalid := &specError{reason: v1alpha1.ReasonInvalidSpec, err: errors.New("spec.targets.selector: bad")}
	tests := []struct {
		name            string
		steps           []func(*v1alpha1.LoadShedPolicy)
		wantStalled     string // the reason, "" for absent
		wantReconciling string
		wantReady       string
	}{
		{"a healthy loop has neither",
			[]func(*v1alpha1.LoadShedPolicy){loop(nil)}, "", "", v1alpha1.ReasonReconciled},
		{"an invalid spec is stalled",
			[]func(*v1alpha1.LoadShedPolicy){loop(invalid)}, v1alpha1.ReasonInvalidSpec, "", v1alpha1.ReasonInvalidSpec},
		{"a missing Secret is stalled",
			[]func(*v1alpha1.LoadShedPolicy){loop(&specError{reason: v1alpha1.ReasonSecretNotFound, retry: true, err: errors.New("x")})},
			v1alpha1.ReasonSecretNotFound, "", v1alpha1.ReasonSecretNotFound},
		{"a failed loop is reconciling",
			[]func(*v1alpha1.LoadShedPolicy){loop(errors.New("connection refused"))}, "", v1alpha1.ReasonReconcileFailed, v1alpha1.ReasonReconcileFailed},
		{"a fixed spec is no longer stalled",
			[]func(*v1alpha1.LoadShedPolicy){loop(invalid), loop(nil)}, "", "", v1alpha1.ReasonReconciled},
		{"a loop that succeeds again is no longer reconciling",
			[]func(*v1alpha1.LoadShedPolicy){loop(errors.New("timeout")), loop(nil)}, "", "", v1alpha1.ReasonReconciled},
		{"a policy being deleted is reconciling and not ready",
			[]func(*v1alpha1.LoadShedPolicy){loop(invalid), func(o *v1alpha1.LoadShedPolicy) { setDeletingStatus(o, "1 DaemonSet to restore", nil) }},
			"", v1alpha1.ReasonDeleting, v1alpha1.ReasonDeleting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &v1alpha1.LoadShedPolicy{}
			obj.Generation = 1
			for _, step := range tt.steps {
				step(obj)
			}
			for _, c := range []struct{ typ, want string }{
				{v1alpha1.ConditionStalled, tt.wantStalled},
				{v1alpha1.ConditionReconciling, tt.wantReconciling},
				{v1alpha1.ConditionReady, tt.wantReady},
			} {
				got := meta.FindStatusCondition(obj.Status.Conditions, c.typ)
				switch {
				case c.want == "" && got != nil:
					t.Errorf("%s is present: %+v", c.typ, *got)
				case c.want != "" && got == nil:
					t.Errorf("%s is absent, want reason %s", c.typ, c.want)
				case c.want != "" && got.Reason != c.want:
					t.Errorf("%s has reason %s, want %s", c.typ, got.Reason, c.want)
				case c.want != "" && c.typ != v1alpha1.ConditionReady && got.Status != metav1.ConditionTrue:
					t.Errorf("%s is %s, want True while present", c.typ, got.Status)
				}
			}
		})
	}
}

// loop is one reconcile loop that ended with err.
func loop(err error) func(*v1alpha1.LoadShedPolicy) {
	return func(obj *v1alpha1.LoadShedPolicy) { setStatus(obj, &reconcileState{err: err}) }
}

func TestTheDeletingStatusSaysWhatIsUndoneOrWhyItFailed(t *testing.T) {
	obj := &v1alpha1.LoadShedPolicy{}
	setDeletingStatus(obj, describeUndo(&inPlace{paused: map[types.NamespacedName]*appsv1.DaemonSet{{Namespace: "a", Name: "b"}: {}}}), nil)
	if c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); c == nil ||
		c.Message != "Deleting: 1 DaemonSet to restore" {
		t.Errorf("Ready = %+v, want it to say what is undone", c)
	}
	setDeletingStatus(obj, "", errors.New("the API server is gone"))
	if c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady); c == nil ||
		c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "the API server is gone") {
		t.Errorf("Ready = %+v, want False with the error", c)
	}
	if got := describeUndo(&inPlace{}); got != "nothing to undo" {
		t.Errorf("an empty undo reads %q", got)
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

// TestARestoringActionSaysHowManyNodesItsWaveRunsOn: a pause in restore
// says, in status, the nodes its wave runs on as the loop counted them,
// and when the wave size limit caps it; a pause not in restore says it is
// paused.
func TestARestoringActionSaysHowManyNodesItsWaveRunsOn(t *testing.T) {
	cfg := &policy.Config{Restore: policy.Restore{WavePercents: []int32{10, 25, 50, 100}, Probation: time.Minute}}
	agent, other := types.NamespacedName{Namespace: "telemetry", Name: "agent"}, types.NamespacedName{Namespace: "logs", Name: "shipper"}
	state := &reconcileState{config: cfg, evaluated: time.Now(),
		plan: &plan.Plan{Paused: map[types.NamespacedName]plan.Pause{
			agent: {Since: time.Now(), Wave: 3, WaveStarted: time.Now()},
			other: {Since: time.Now()},
		}},
		waveSizes: map[types.NamespacedName][]plan.WaveSize{agent: {{Nodes: 500, Eligible: 5000},
			{Nodes: 952, Eligible: 5000, Capped: true}, {Nodes: 952, Eligible: 5000, Capped: true}, {Nodes: 5000, Eligible: 5000}}},
	}
	got := map[string]string{}
	for _, a := range actionStatuses(state) {
		got[a.Target] = a.Message
	}
	want := map[string]string{
		"telemetry/agent": "restoring: wave 3 of 4: 952 of 5,000 nodes (19%), capped at the wave size limit",
		"logs/shipper":    "paused",
	}
	for target, msg := range want {
		if got[target] != msg {
			t.Errorf("%s: %q, want %q", target, got[target], msg)
		}
	}
}
