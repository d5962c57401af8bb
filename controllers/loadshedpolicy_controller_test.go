package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// newPolicy returns a valid policy; each test names its own.
func newPolicy(name string) *v1alpha1.LoadShedPolicy {
	return &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.LoadShedPolicySpec{
			DryRun: true,
			Triggers: []v1alpha1.Trigger{{
				Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400"),
			}},
		},
	}
}

func create(t *testing.T, p *v1alpha1.LoadShedPolicy) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, p) })
}

func get(t *testing.T, name string) *v1alpha1.LoadShedPolicy {
	t.Helper()
	p := &v1alpha1.LoadShedPolicy{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAValidPolicyBecomesReadyForEachGeneration(t *testing.T) {
	p := newPolicy("valid")
	create(t, p)
	eventually(t, readyIs(t, "valid", metav1.ConditionTrue, v1alpha1.ReasonReconciled))

	got := get(t, "valid")
	if !controllerutil.ContainsFinalizer(got, v1alpha1.Finalizer) {
		t.Errorf("finalizer %s missing: %v", v1alpha1.Finalizer, got.Finalizers)
	}

	// A new generation is observed too. The controller writes the object
	// meanwhile: retry on conflict, as any client must.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := get(t, "valid")
		cur.Spec.Triggers[0].Threshold = resource.MustParse("500")
		return env.Client.Update(context.Background(), cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, readyIs(t, "valid", metav1.ConditionTrue, v1alpha1.ReasonReconciled))
	if g := get(t, "valid"); g.Status.ObservedGeneration < 2 {
		t.Errorf("observedGeneration = %d after an update, want at least 2", g.Status.ObservedGeneration)
	}
}

// TestASpecOnlyTheControllerCanCheckIsReportedInReady: the schema rejects
// what CEL can check (selectors among it, see api/v1alpha1's validation
// test); a regular expression that does not compile is left to the
// controller, which reports it in Ready and Stalled.
func TestASpecOnlyTheControllerCanCheckIsReportedInReady(t *testing.T) {
	p := newPolicy("bad-regexp")
	p.Spec.Triggers[0].Matchers = []v1alpha1.LabelMatcher{{Label: "resource", Operator: v1alpha1.MatchRegexp, Value: "pods("}}
	create(t, p)
	eventually(t, readyIs(t, "bad-regexp", metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec))

	c := meta.FindStatusCondition(get(t, "bad-regexp").Status.Conditions, v1alpha1.ConditionReady)
	if !strings.Contains(c.Message, "spec.triggers[0].matchers[0].value") {
		t.Errorf("Ready's message does not name the field: %q", c.Message)
	}
	if phase := get(t, "bad-regexp").Status.Phase; phase != v1alpha1.PhaseUnknown {
		t.Errorf("phase = %q, want Unknown", phase)
	}
	// kstatus readers (Flux, Argo CD, kubectl wait) see it as stalled.
	if c := meta.FindStatusCondition(get(t, "bad-regexp").Status.Conditions, v1alpha1.ConditionStalled); c == nil ||
		c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonInvalidSpec {
		t.Errorf("Stalled = %+v, want True/%s", c, v1alpha1.ReasonInvalidSpec)
	}
}

func TestAMissingSecretIsReportedUntilItAppears(t *testing.T) {
	p := newPolicy("prometheus-secret")
	p.Spec.Source = v1alpha1.MetricsSource{
		Type: v1alpha1.SourcePrometheus,
		Prometheus: &v1alpha1.PrometheusSource{
			URL:         "https://prometheus.monitoring:9090",
			CASecretRef: &v1alpha1.SecretKeyReference{Name: "prometheus-ca", Key: "ca.crt"},
		},
	}
	create(t, p)
	eventually(t, readyIs(t, "prometheus-secret", metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound))

	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "prometheus-ca"},
		Data:       map[string][]byte{"other-key": []byte("x")},
	}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, secret) })
	// The Secret exists, without the key: still not ready, and says why.
	eventually(t, func() error {
		c := meta.FindStatusCondition(get(t, "prometheus-secret").Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || !strings.Contains(c.Message, `has no key "ca.crt"`) {
			return fmt.Errorf("Ready does not name the missing key: %+v", c)
		}
		return nil
	})

	secret.Data["ca.crt"] = []byte("-----BEGIN CERTIFICATE-----")
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// The Secret watch brings the policy back, well before the 10s requeue.
	eventually(t, readyIs(t, "prometheus-secret", metav1.ConditionTrue, v1alpha1.ReasonReconciled))
}

func TestASuspendedPolicySaysSo(t *testing.T) {
	p := newPolicy("suspended")
	p.Spec.Suspend = true
	create(t, p)
	eventually(t, readyIs(t, "suspended", metav1.ConditionTrue, v1alpha1.ReasonSuspended))
	if phase := get(t, "suspended").Status.Phase; phase != v1alpha1.PhaseSuspended {
		t.Errorf("phase = %q, want Suspended", phase)
	}
}

func TestDeletingAPolicyRemovesItsFinalizer(t *testing.T) {
	p := newPolicy("deleted")
	create(t, p)
	eventually(t, readyIs(t, "deleted", metav1.ConditionTrue, v1alpha1.ReasonReconciled))
	if err := env.Client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		err := env.Client.Get(context.Background(), client.ObjectKey{Name: "deleted"}, &v1alpha1.LoadShedPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("the policy is still there: %w", err)
	})
}

// TestDeletingAPolicySaysSoAndKeepsOthersFinalizers deletes a policy that
// another controller also holds with its own finalizer: loadshed writes the
// Deleting status before it removes its finalizer, and removes only its own.
func TestDeletingAPolicySaysSoAndKeepsOthersFinalizers(t *testing.T) {
	const other = "example.com/keep"
	ctx := context.Background()
	p := newPolicy("deleting")
	p.Finalizers = []string{other}
	create(t, p)
	t.Cleanup(func() {
		_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := &v1alpha1.LoadShedPolicy{}
			if err := env.Client.Get(ctx, client.ObjectKey{Name: "deleting"}, cur); err != nil {
				return client.IgnoreNotFound(err)
			}
			controllerutil.RemoveFinalizer(cur, other)
			return env.Client.Update(ctx, cur)
		})
	})
	eventually(t, readyIs(t, "deleting", metav1.ConditionTrue, v1alpha1.ReasonReconciled))
	if err := env.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		got := get(t, "deleting")
		if controllerutil.ContainsFinalizer(got, v1alpha1.Finalizer) {
			return fmt.Errorf("loadshed's finalizer is still there: %v", got.Finalizers)
		}
		if !controllerutil.ContainsFinalizer(got, other) {
			return fmt.Errorf("the other finalizer is gone: %v", got.Finalizers)
		}
		for _, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionReconciling} {
			c := meta.FindStatusCondition(got.Status.Conditions, typ)
			if c == nil || c.Reason != v1alpha1.ReasonDeleting || !strings.HasPrefix(c.Message, "Deleting: ") {
				return fmt.Errorf("%s is %+v, want reason %s", typ, c, v1alpha1.ReasonDeleting)
			}
		}
		return nil
	})
}
