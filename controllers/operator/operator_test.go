package operator_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/manifests"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

const (
	namespace      = "loadshed-system"
	serviceAccount = "loadshed-controller-manager"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, testenv.Options{}) }

// TestTheOperatorRunsOnItsGeneratedRBAC runs the operator as its own
// ServiceAccount, bound to the ClusterRole and Roles that `make manifests`
// generates and config/rbac binds, not as cluster admin: if a marker is
// missing, the policy never becomes Ready.
func TestTheOperatorRunsOnItsGeneratedRBAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	if err := manifests.ApplyRBAC(ctx, env.Client, testenv.RepoRoot(), namespace, "loadshed-tests"); err != nil {
		t.Fatal(err)
	}

	cfg := testutil.AsServiceAccount(env.Config, namespace, serviceAccount)

	// Least privilege: the operator cannot read Secrets outside its namespace.
	asOperator, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := asOperator.List(ctx, &corev1.SecretList{}, client.InNamespace("default")); !apierrors.IsForbidden(err) {
		t.Errorf("the operator's ServiceAccount may list Secrets in default (err %v); it must not", err)
	}

	stop, err := env.StartOperator(cfg, operator.Options{
		Namespace:        namespace,
		MetricsAddr:      "0",
		ProbeAddr:        "0",
		LeaderElection:   true,
		LeaderElectionID: "loadshed-rbac-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop() }()

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "prometheus-token"},
		Data:       map[string][]byte{"token": []byte("t")},
	}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "rbac"},
		Spec: v1alpha1.LoadShedPolicySpec{
			DryRun: true,
			Source: v1alpha1.MetricsSource{
				Type: v1alpha1.SourcePrometheus,
				Prometheus: &v1alpha1.PrometheusSource{
					URL:                  "http://prometheus.monitoring:9090",
					BearerTokenSecretRef: &v1alpha1.SecretKeyReference{Name: "prometheus-token", Key: "token"},
				},
			},
			Triggers: []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400")}},
		},
	}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		last = fmt.Sprintf("%+v finalizers=%v", c, got.Finalizers)
		return c != nil && c.Status == metav1.ConditionTrue && got.Status.ObservedGeneration == got.Generation &&
			len(got.Finalizers) == 1, nil
	})
	if err != nil {
		t.Fatalf("the policy did not become Ready under the operator's own RBAC: %s", last)
	}
	checkSelfProtectionOwnedByTheCRD(ctx, t)

	// A policy on the apiServer source reads /metrics and APF's dump of the
	// requests each API server holds, the API servers' EndpointSlices,
	// DaemonSets, namespaces and FlowSchemas: all under the same RBAC.
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry", Labels: map[string]string{"team": "observability"}}},
		&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
					Spec:       corev1.PodSpec{ServiceAccountName: "agent", Containers: []corev1.Container{{Name: "a", Image: "agent:1"}}},
				},
			},
		},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	scraping := &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "rbac-scraping"},
		Spec: v1alpha1.LoadShedPolicySpec{
			DryRun:   true,
			Interval: &metav1.Duration{Duration: time.Second},
			Targets: v1alpha1.Targets{NamespaceSelector: &v1alpha1.LabelSelector{
				MatchLabels: map[string]v1alpha1.LabelValue{"team": "observability"}}},
			Triggers: []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400")}},
		},
	}
	if err := env.Client.Create(ctx, scraping); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(scraping), got); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionMetricsAvailable)
		last = fmt.Sprintf("MetricsAvailable %+v; phase %s", c, got.Status.Phase)
		return c != nil && c.Status == metav1.ConditionTrue && !strings.Contains(c.Message, "cannot tell who loads") &&
			got.Status.Phase == v1alpha1.PhaseHealthy, nil
	})
	if err != nil {
		t.Fatalf("the apiServer source did not work under the operator's own RBAC: %s", last)
	}
	if err := env.Client.Delete(ctx, scraping); err != nil {
		t.Fatal(err)
	}

	// Acting needs more: a policy whose trigger always fires throttles and
	// pauses the DaemonSet whose ServiceAccount makes requests (PLC and
	// FlowSchema writes, DaemonSet updates, nodes), and its finalizer undoes
	// that: all under the same RBAC.
	acting := scraping.DeepCopy()
	acting.ObjectMeta = metav1.ObjectMeta{Name: "rbac-acting"}
	acting.Spec.DryRun = false
	acting.Spec.Triggers = []v1alpha1.Trigger{{Name: "always", Signal: v1alpha1.SignalRequestsPerSecond,
		Threshold: resource.MustParse("0.001"), For: &metav1.Duration{}}}
	acting.Spec.Actions = v1alpha1.Actions{MinSharePercent: 1, Pause: v1alpha1.PauseAction{After: &metav1.Duration{}}}
	if err := env.Client.Create(ctx, acting); err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(testutil.AsServiceAccount(env.Config, "telemetry", "agent"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The agent lists 200 ConfigMaps of 16 KiB from eight loops: LISTs that
	// take long enough for some to be in flight whenever the operator
	// samples what APF holds, even under the race detector.
	seedListableConfigMaps(ctx, t, "telemetry", "agent")
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	for range 8 {
		load.Go(func() {
			for loadCtx.Err() == nil {
				_ = agent.List(loadCtx, &corev1.ConfigMapList{})
			}
		})
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		ds := &appsv1.DaemonSet{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "telemetry", Name: "agent"}, ds); err != nil {
			return false, err
		}
		got := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(acting), got); err != nil {
			return false, err
		}
		last = fmt.Sprintf("paused by %q; status %+v", ds.Annotations[v1alpha1.AnnotationPausedBy], got.Status.Conditions)
		return ds.Annotations[v1alpha1.AnnotationPausedBy] == "rbac-acting" && got.Status.ThrottledCount == 1, nil
	})
	stopLoad()
	load.Wait()
	if err != nil {
		t.Fatalf("the operator could not act under its own RBAC: %s", last)
	}
	if err := env.Client.Delete(ctx, acting); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		ds := &appsv1.DaemonSet{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "telemetry", Name: "agent"}, ds); err != nil {
			return false, err
		}
		gone := apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(acting), &v1alpha1.LoadShedPolicy{}))
		last = fmt.Sprintf("policy gone %v; DaemonSet annotations %v", gone, ds.Annotations)
		return gone && ds.Annotations[v1alpha1.AnnotationPausedBy] == "", nil
	})
	if err != nil {
		t.Fatalf("the finalizer could not undo the pause under the operator's own RBAC: %s", last)
	}

	lease := &coordinationv1.Lease{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "loadshed-rbac-test"}, lease); err != nil {
		t.Errorf("no leader election Lease in %s: %v", namespace, err)
	}

	// Deleting the policy runs the finalizer under the same RBAC.
	if err := env.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.LoadShedPolicy{})), nil
	})
	if err != nil {
		t.Errorf("the policy was not deleted: its finalizer stayed")
	}

	if err := stop(); err != nil {
		t.Errorf("the operator stopped with an error: %v", err)
	}
}

// seedListableConfigMaps creates 200 ConfigMaps of 16 KiB in namespace and
// lets its ServiceAccount name list ConfigMaps cluster-wide.
func seedListableConfigMaps(ctx context.Context, t *testing.T, namespace, name string) {
	t.Helper()
	const bulk = 200
	objs := make([]client.Object, 0, bulk+2)
	objs = append(objs,
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "list-configmaps"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-configmaps-" + namespace + "-" + name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-configmaps"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}}},
	)
	data := strings.Repeat("x", 16<<10)
	for i := range bulk {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("bulk-%03d", i)},
			Data: map[string]string{"data": data}})
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// checkSelfProtectionOwnedByTheCRD checks that the operator, under its own
// RBAC, made the self-protection FlowSchema a dependent of the
// LoadShedPolicy CRD, so that the garbage collector deletes it with the CRD.
func checkSelfProtectionOwnedByTheCRD(ctx context.Context, t *testing.T) {
	t.Helper()
	crd := &metav1.PartialObjectMetadata{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	if err := env.Client.Get(ctx, client.ObjectKey{Name: operator.CRDName}, crd); err != nil {
		t.Fatal(err)
	}
	fs := &flowcontrolv1.FlowSchema{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: shed.SelfProtectionName}, fs); err != nil {
		t.Fatal(err)
	}
	want := []metav1.OwnerReference{{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: crd.Name, UID: crd.UID}}
	if !reflect.DeepEqual(fs.OwnerReferences, want) {
		t.Errorf("the self-protection FlowSchema's owners are %+v, want %+v", fs.OwnerReferences, want)
	}
}
