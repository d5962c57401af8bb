// Package harness is the cluster, flood and policy that the suites of
// test/mitigation and test/faults share: nodes and a telemetry DaemonSet
// whose ServiceAccount floods the API server, the operator run in the test
// process, and the checks both make. It is test code in a normal package, so
// that the two suites, each on its own control plane, run in parallel.
package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

const (
	// NodeCount is how many Nodes Cluster creates: the telemetry DaemonSet
	// has a pod on each.
	NodeCount = 10
	// Timeout is how long Eventually waits.
	Timeout = 90 * time.Second

	// telemetry is the namespace of the agent DaemonSet, whose pods run as
	// the ServiceAccount agent there and are labelled app=agent.
	telemetry = "telemetry"
	agent     = "agent"
	appLabel  = "app"
)

// Env is a package's control plane, started by testenv.Main (pass it
// &env.Env), with the helpers of the suites that run against it.
type Env struct {
	*testenv.Env
}

// RunOperator runs the operator in this process, as cmd/manager wires it,
// until the returned function is called. A test stops and starts it again.
func (e Env) RunOperator(t *testing.T) func() {
	t.Helper()
	stop, err := e.StartOperator(e.Config, operator.Options{Namespace: "loadshed-system", MetricsAddr: "0",
		ProbeAddr: "0", RestartableInProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := stop(); err != nil {
			t.Errorf("the operator stopped with an error: %v", err)
		}
	}
}

// Eventually polls check until it succeeds, or fails the test after Timeout
// saying what was awaited, having logged every policy's status.
func (e Env) Eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := testutil.Poll(Timeout, 200*time.Millisecond, check); err != nil {
		ps := &v1alpha1.LoadShedPolicyList{}
		_ = e.Client.List(context.Background(), ps)
		for _, p := range ps.Items {
			t.Logf("policy %s: phase %s, signals %+v, actions %+v, conditions %+v", p.Name, p.Status.Phase, p.Status.Signals,
				p.Status.Actions, p.Status.Conditions)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// Cluster creates the nodes, namespaces, ServiceAccounts and the telemetry
// DaemonSet, and returns the DaemonSet as created.
func (e Env) Cluster(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ctx := context.Background()
	objs := make([]client.Object, 0, NodeCount+9)
	for i := range NodeCount {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("node-%02d", i), Labels: map[string]string{"kubernetes.io/os": "linux"}}})
	}
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loadshed-system"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}},
	)
	for _, ns := range []string{telemetry, "payments"} {
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: agent}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-pods-" + ns},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-pods"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: agent}}},
		)
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: telemetry, Name: agent, Labels: map[string]string{appLabel: agent}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{appLabel: agent}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{appLabel: agent}},
				Spec: corev1.PodSpec{
					ServiceAccountName: agent,
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					// The Nodes have no kubelet and turn NotReady (tainted) after
					// about 50s; like most node agents, this one tolerates that.
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:  []corev1.Container{{Name: agent, Image: "registry.example/telemetry-agent:1"}},
				},
			},
		},
	}
	objs = append(objs, ds)
	for _, o := range objs {
		if err := e.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	created := &appsv1.DaemonSet{}
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(ds), created); err != nil {
		t.Fatal(err)
	}
	e.Eventually(t, "the DaemonSet controller creates a pod per node", e.PodsAre(NodeCount))
	return created
}

// PodsAre checks that the telemetry namespace has n pods not being deleted.
func (e Env) PodsAre(n int) func() error {
	return func() error {
		pods := &corev1.PodList{}
		if err := e.Client.List(context.Background(), pods, client.InNamespace(telemetry)); err != nil {
			return err
		}
		alive := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp.IsZero() {
				alive++
			}
		}
		if alive != n {
			return fmt.Errorf("%d pods, want %d", alive, n)
		}
		return nil
	}
}

// GetDS reads telemetry/agent.
func (e Env) GetDS(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ds := &appsv1.DaemonSet{}
	key := client.ObjectKey{Namespace: telemetry, Name: agent}
	if err := e.Client.Get(context.Background(), key, ds); err != nil {
		t.Fatal(err)
	}
	return ds
}
