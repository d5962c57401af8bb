package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Policy is the test policy: it targets the telemetry and payments
// namespaces, fires on pod LISTs above 30/s for 2s, throttles by rejecting,
// pauses one DaemonSet 3s later, and restores in two waves (50%, 100%).
func Policy(name string) *v1alpha1.LoadShedPolicy {
	// The test itself lists pods a few times a second: clear above that.
	clear := resource.MustParse("12")
	d := func(s string) *metav1.Duration {
		v, _ := time.ParseDuration(s)
		return &metav1.Duration{Duration: v}
	}
	return &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.LoadShedPolicySpec{
			Interval: d("1s"),
			Targets: v1alpha1.Targets{NamespaceSelector: &v1alpha1.LabelSelector{
				MatchExpressions: []v1alpha1.LabelSelectorRequirement{{Key: corev1.LabelMetadataName,
					Operator: metav1.LabelSelectorOpIn, Values: []v1alpha1.LabelValue{telemetry, "payments"}}}}},
			Triggers: []v1alpha1.Trigger{{
				Name: "pod-lists", Signal: v1alpha1.SignalListRequestsPerSecond,
				Matchers:  []v1alpha1.LabelMatcher{{Label: "resource", Value: "pods"}},
				Threshold: resource.MustParse("30"), ClearThreshold: &clear, For: d("2s"), Window: d("3s"),
			}},
			Actions: v1alpha1.Actions{
				MinSharePercent: 50,
				Throttle:        v1alpha1.ThrottleAction{LimitResponse: v1alpha1.LimitResponseReject},
				Pause:           v1alpha1.PauseAction{MaxPaused: 1, After: d("3s")},
			},
			Restore: v1alpha1.Restore{
				StableFor: d("3s"), Probation: d("3s"), WavePercents: []int32{50, 100},
				Backoff: v1alpha1.Backoff{Initial: d("5s"), Max: d("1m")},
			},
		},
	}
}

// DeletePolicy deletes a policy and waits until it is gone (its finalizer
// needs an operator).
func (e Env) DeletePolicy(t *testing.T, p *v1alpha1.LoadShedPolicy) {
	t.Helper()
	ctx := context.Background()
	if err := e.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	e.Eventually(t, "the policy "+p.Name+" is deleted", func() error {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.LoadShedPolicy{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
}

// GetPolicy reads a policy.
func (e Env) GetPolicy(t *testing.T, name string) *v1alpha1.LoadShedPolicy {
	t.Helper()
	p := &v1alpha1.LoadShedPolicy{}
	if err := e.Client.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Owned lists the throttle FlowSchemas and priority levels there are, as
// "Kind/name".
func (e Env) Owned(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	fss := &flowcontrolv1.FlowSchemaList{}
	plcs := &flowcontrolv1.PriorityLevelConfigurationList{}
	if err := e.Client.List(ctx, fss, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleThrottle}); err != nil {
		t.Fatal(err)
	}
	if err := e.Client.List(ctx, plcs, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleThrottle}); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(fss.Items)+len(plcs.Items))
	for _, o := range fss.Items {
		names = append(names, "FlowSchema/"+o.Name)
	}
	for _, o := range plcs.Items {
		names = append(names, "PriorityLevelConfiguration/"+o.Name)
	}
	return names
}

// EventCount counts the occurrences of events of a reason regarding a
// policy, a series counting as its count: only this policy's, by UID, while
// it exists, so that a policy of the same name in an earlier run (go test
// -count) does not count.
func (e Env) EventCount(t *testing.T, policyName, reason string) int {
	t.Helper()
	ctx := context.Background()
	var uid types.UID
	p := &v1alpha1.LoadShedPolicy{}
	if err := e.Client.Get(ctx, client.ObjectKey{Name: policyName}, p); err == nil {
		uid = p.UID
	}
	list := &eventsv1.EventList{}
	if err := e.Client.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range list.Items {
		if ev.Regarding.Name != policyName || ev.Reason != reason || (uid != "" && ev.Regarding.UID != uid) {
			continue
		}
		if ev.Series != nil && ev.Series.Count > 1 {
			n += int(ev.Series.Count)
		} else {
			n++
		}
	}
	return n
}

// SameTemplate reports whether two DaemonSets have the same pod template.
func SameTemplate(a, b *appsv1.DaemonSet) bool {
	return equality.Semantic.DeepEqual(a.Spec.Template, b.Spec.Template)
}

// DenyPolicy installs a ValidatingAdmissionPolicy that denies, to everyone,
// the writes of a resource that expression rejects, and returns a function
// that removes it.
func (e Env) DenyPolicy(t *testing.T, name, group, resourceName, expression string) func() {
	t.Helper()
	ctx := context.Background()
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{
							admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule: admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"},
							Resources: []string{resourceName}},
					},
				}},
			},
			Validations: []admissionregistrationv1.Validation{{Expression: expression, Message: name}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
	for _, o := range []client.Object{vap, binding} {
		if err := e.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		for _, o := range []client.Object{binding, vap} {
			if err := e.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				t.Errorf("removing %s: %v", name, err)
			}
		}
	}
}
