package uninstall_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/internal/uninstall"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

var env *testenv.Env

// TestMain runs the operator in the test process: its finalizer is what
// uninstall waits for.
func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{
		Operator: &operator.Options{Namespace: "loadshed-system", MetricsAddr: "0", ProbeAddr: "0"},
	})
}

func policy(name string) *v1alpha1.LoadShedPolicy {
	return &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.LoadShedPolicySpec{
			DryRun:   true,
			Triggers: []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400")}},
		},
	}
}

// leftover is a throttling priority level of loadshed's that no policy
// holds, as an interrupted run could leave.
func leftover(name string) *flowcontrolv1.PriorityLevelConfiguration {
	return &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
			Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject},
			},
		},
	}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
}

// withFinalizer waits until the operator has put its finalizer on a policy.
func withFinalizer(t *testing.T, name string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		p := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
			return err
		}
		if !controllerutil.ContainsFinalizer(p, v1alpha1.Finalizer) {
			return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("finalizer").GroupResource(), name)
		}
		return nil
	})
}

func exists(t *testing.T, obj client.Object) bool {
	t.Helper()
	err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// The tests run one after the other on one cluster, each leaving it as it
// found it: no policy, and the self-protection schema in place (the
// operator applied it when it started; each test puts it back).

func TestUninstallWaitsForTheFinalizersThenDeletesLoadshedsAPFObjects(t *testing.T) {
	create(t, policy("one"), policy("two"), leftover("loadshed-throttle-gone"))
	withFinalizer(t, "one")
	withFinalizer(t, "two")
	selfProtection := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: shed.SelfProtectionName}}
	if !exists(t, selfProtection) {
		t.Fatal("the operator did not apply its self-protection FlowSchema")
	}
	defer restoreSelfProtection(t, selfProtection)

	var out bytes.Buffer
	res, err := uninstall.Run(context.Background(), env.Client, uninstall.Options{Timeout: time.Minute, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	if want := (uninstall.Result{Policies: 2, FlowSchemas: 1, PriorityLevels: 1}); res != want {
		t.Errorf("deleted %+v, want %+v\n%s", res, want, &out)
	}
	var left v1alpha1.LoadShedPolicyList
	if err := env.Client.List(context.Background(), &left); err != nil || len(left.Items) != 0 {
		t.Errorf("policies left: %d (%v)", len(left.Items), err)
	}
	for _, o := range []client.Object{selfProtection, leftover("loadshed-throttle-gone")} {
		if exists(t, o) {
			t.Errorf("%s %s is still there", o.GetObjectKind().GroupVersionKind().Kind, o.GetName())
		}
	}
	for _, line := range []string{"Deleted LoadShedPolicy one", "Every LoadShedPolicy is gone.", "Deleted FlowSchema " + shed.SelfProtectionName} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("the output does not say %q:\n%s", line, &out)
		}
	}
}

func TestUninstallRemovesNothingWhileAPolicyIsNotGone(t *testing.T) {
	p := policy("held")
	p.Finalizers = []string{"example.com/held-elsewhere"}
	create(t, p)
	defer func() {
		cur := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(p), cur); err == nil {
			cur.Finalizers = nil
			if err := env.Client.Update(context.Background(), cur); err != nil {
				t.Error(err)
			}
		}
	}()
	withFinalizer(t, "held")

	_, err := uninstall.Run(context.Background(), env.Client, uninstall.Options{Timeout: 3 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "1 LoadShedPolicies still hold their finalizer: held") ||
		!strings.Contains(err.Error(), "must be running") {
		t.Fatalf("got %v, want a timeout naming the policy and the operator", err)
	}
	if !exists(t, &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: shed.SelfProtectionName}}) {
		t.Error("the self-protection FlowSchema was deleted although a policy was left")
	}
}

func TestUninstallStopsAtADaemonSetThatStillCarriesLoadshedsRecord(t *testing.T) {
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "agents"}})
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "stranded",
			Annotations: map[string]string{v1alpha1.AnnotationPausedBy: "a-policy-deleted-by-hand"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{v1alpha1.LabelPaused: "a-policy-deleted-by-hand"},
					Containers:   []corev1.Container{{Name: "a", Image: "a:1"}},
				},
			},
		},
	}
	create(t, ds)
	defer func() {
		if err := env.Client.Delete(context.Background(), ds); err != nil {
			t.Error(err)
		}
	}()

	_, err := uninstall.Run(context.Background(), env.Client, uninstall.Options{Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "1 DaemonSets still carry loadshed's record: agents/stranded") {
		t.Fatalf("got %v, want an error naming agents/stranded", err)
	}
	if !exists(t, &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: shed.SelfProtectionName}}) {
		t.Error("the self-protection FlowSchema was deleted although a DaemonSet is still paused")
	}
}

// restoreSelfProtection puts back the self-protection schema a test deleted,
// as a restarted operator would.
func restoreSelfProtection(t *testing.T, fs *flowcontrolv1.FlowSchema) {
	t.Helper()
	if exists(t, fs) {
		return
	}
	fs.ResourceVersion, fs.UID, fs.CreationTimestamp, fs.ManagedFields, fs.OwnerReferences = "", "", metav1.Time{}, nil, nil
	if err := env.Client.Create(context.Background(), fs); err != nil {
		t.Error(err)
	}
}
