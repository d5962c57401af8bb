// Package admission tests the ValidatingAdmissionPolicies of
// config/admission against a real kube-apiserver: with the operator's
// credentials (and RBAC that allows anything, so that every denial is the
// admission policy's), every write loadshed makes passes, and a forged pod
// template, a new exempt FlowSchema or a change to a built-in schema is
// denied.
package admission

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
	flowcontrolv1ac "k8s.io/client-go/applyconfigurations/flowcontrol/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

const operatorNamespace = "loadshed-system"

var (
	env        *testenv.Env
	operatorSA = attribution.ServiceAccount{Namespace: operatorNamespace, Name: operator.DefaultServiceAccount}
)

func TestMain(m *testing.M) { testenv.Main(m, &env, testenv.Options{}) }

// asOperator installs the admission policies, gives the operator's
// ServiceAccount cluster-admin, and returns a client with its credentials
// once the policies are in force.
func asOperator(t *testing.T) client.Client {
	t.Helper()
	ctx := context.Background()
	objs, err := testenv.ReadObjects("config/admission/operator_limits.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Apply(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "operator-is-admin"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: operatorSA.Namespace,
				Name: operatorSA.Name}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	sch, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(testutil.AsServiceAccount(env.Config, operatorSA.Namespace, operatorSA.Name),
		client.Options{Scheme: sch})
	if err != nil {
		t.Fatal(err)
	}
	// The API server compiles a new policy within a second or so: wait
	// until a write it must deny is denied.
	err = testutil.Poll(30*time.Second, 200*time.Millisecond, func() error {
		err := c.Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "probe"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}}}, client.DryRunAll)
		if err == nil {
			return errors.New("the admission policies are not in force yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func agentDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent", Labels: map[string]string{"app": "agent"},
			Annotations: map[string]string{"team": "observability"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "agent",
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:         []corev1.Container{{Name: "agent", Image: "registry.example/telemetry-agent:1"}},
				},
			},
		},
	}
	ctx := context.Background()
	_ = env.Client.Delete(ctx, ds)
	err := testutil.Poll(30*time.Second, 100*time.Millisecond, func() error { return env.Client.Create(ctx, ds) })
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func nodes(n int) []corev1.Node {
	out := make([]corev1.Node, n)
	for i := range out {
		out[i].Name = fmt.Sprintf("node-%02d", i)
		out[i].Labels = map[string]string{"kubernetes.io/os": "linux"}
	}
	return out
}

// wantDenied fails unless err is the admission policy's denial saying msg.
func wantDenied(t *testing.T, what string, err error, msg string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: admitted, want denied", what)
	case !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
		t.Errorf("%s: %v, want a denial", what, err)
	case !strings.Contains(err.Error(), msg):
		t.Errorf("%s: denied with %q, want it to say %q", what, err, msg)
	}
}

// TestEveryWriteLoadshedMakesIsAdmitted pauses, restores in waves and
// restores a DaemonSet, and applies and removes every kind of FlowSchema
// and the priority level, with the operator's credentials.
func TestEveryWriteLoadshedMakesIsAdmitted(t *testing.T) {
	c := asOperator(t)
	ctx := context.Background()
	ds := agentDaemonSet(t)
	waves := []int32{50, 100}
	steps := []struct {
		name string
		rec  plan.Pause
	}{
		{"pause", plan.Pause{Since: time.Now(), Load: 90}},
		{"wave 1", plan.Pause{Since: time.Now(), Wave: 1, WaveStarted: time.Now()}},
		{"re-pause", plan.Pause{Since: time.Now(), Attempt: 1, NextRestore: time.Now().Add(time.Minute)}},
		{"put back after an override", plan.Pause{Since: time.Now(), Attempt: 1, Overrides: 1}},
	}
	for _, s := range steps {
		want, err := shed.Apply(ds, "flood", "it floods", s.rec, waves, nodes(4))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Update(ctx, want); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		ds = want
	}
	restored, err := shed.Restore(ds, &plan.Restoration{At: time.Now(), Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, restored); err != nil {
		t.Fatalf("restore: %v", err)
	}

	agent := attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"}
	throttle, err := shed.ThrottleFlowSchema("flood", agent, bootstrap.SuggestedFlowSchemaServiceAccounts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	level := shed.ThrottleLevel("flood",
		policy.Throttle{NominalConcurrencyShares: 1, LimitResponse: v1alpha1.LimitResponseReject})
	for name, ac := range map[string]runtime.ApplyConfiguration{
		"the self-protection FlowSchema": shed.SelfProtection(operatorSA),
		"a throttle FlowSchema":          throttle,
		"the throttling priority level":  level,
	} {
		if err := c.Apply(ctx, ac, client.FieldOwner("loadshed-operator"), client.ForceOwnership); err != nil {
			t.Errorf("applying %s: %v", name, err)
		}
	}
	// An attribution FlowSchema an earlier version left, which the operator
	// deletes once it leads.
	legacy := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "loadshed-attr-telemetry.agent",
			Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
				v1alpha1.LabelRole: v1alpha1.RoleAttribution}},
		Spec: *bootstrap.SuggestedFlowSchemaServiceAccounts.Spec.DeepCopy(),
	}
	legacy.Spec.MatchingPrecedence--
	if err := env.Client.Create(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: *throttle.Name}},
		&flowcontrolv1.PriorityLevelConfiguration{ObjectMeta: metav1.ObjectMeta{Name: *level.Name}},
		&flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: legacy.Name}},
	} {
		if err := c.Delete(ctx, o); err != nil {
			t.Errorf("deleting %s: %v", o.GetName(), err)
		}
	}
}

// TestWhatLoadshedNeverDoesIsDenied forges, with the operator's
// credentials, what a compromised operator would do.
func TestWhatLoadshedNeverDoesIsDenied(t *testing.T) {
	c := asOperator(t)
	ctx := context.Background()
	ds := agentDaemonSet(t)
	paused, err := shed.Apply(ds, "flood", "", plan.Pause{Since: time.Now()}, []int32{100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(change func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
		out := paused.DeepCopy()
		change(out)
		return out
	}
	dsCases := []struct {
		name string
		ds   *appsv1.DaemonSet
		msg  string
	}{
		{"a pause that also changes the container's image", forge(func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Containers[0].Image = "registry.example/miner:1"
		}), "only the node selector key loadshed.io/paused and the required node affinity"},
		{"a pause that adds a privileged init container", forge(func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "x", Image: "registry.example/x:1"}}
		}), "only the node selector key loadshed.io/paused and the required node affinity"},
		{"a pause that turns on host networking", forge(func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.HostNetwork = true
		}), "only the node selector key loadshed.io/paused and the required node affinity"},
		{"a pause that changes another node selector key", forge(func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] = "windows"
		}), "only the node selector key loadshed.io/paused"},
		{"a pause that adds pod anti-affinity", forge(func(d *appsv1.DaemonSet) {
			d.Spec.Template.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{}}
		}), "only the required node affinity"},
		{"a pause that changes the pod template's labels", forge(func(d *appsv1.DaemonSet) {
			d.Spec.Template.Labels["extra"] = "x"
		}), "pod template metadata"},
		{"a pause that changes another annotation", forge(func(d *appsv1.DaemonSet) {
			d.Annotations["team"] = "someone-else"
		}), "only loadshed.io/ annotations"},
	}
	for _, tt := range dsCases {
		wantDenied(t, tt.name, c.Update(ctx, tt.ds), tt.msg)
	}
	wantDenied(t, "deleting a DaemonSet", c.Delete(ctx, ds), "never creates nor deletes a DaemonSet")

	// The same changes by anyone else are none of this policy's business.
	if err := env.Client.Update(ctx, dsCases[0].ds); err != nil {
		t.Errorf("the policy denied an administrator's change: %v", err)
	}

	exemptThrottle := shed.SelfProtection(attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"})
	exemptThrottle.WithName("loadshed-throttle-telemetry.agent")
	wantDenied(t, "a FlowSchema of loadshed's that exempts a client",
		c.Apply(ctx, exemptThrottle, client.FieldOwner("loadshed-operator"), client.ForceOwnership),
		"only loadshed's self-protection FlowSchema")
	boost, err := shed.ThrottleFlowSchema("flood", attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"},
		bootstrap.SuggestedFlowSchemaServiceAccounts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	high := flowcontrolv1ac.PriorityLevelConfigurationReference().WithName("workload-high")
	boost.Spec.WithPriorityLevelConfiguration(high)
	wantDenied(t, "a FlowSchema of loadshed's that moves a client to a level loadshed does not own",
		c.Apply(ctx, boost, client.FieldOwner("loadshed-operator"), client.ForceOwnership),
		"routes only to one of its throttling priority levels")
	forgedSelf := shed.SelfProtection(attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"})
	wantDenied(t, "the self-protection FlowSchema for another ServiceAccount",
		c.Apply(ctx, forgedSelf, client.FieldOwner("loadshed-operator"), client.ForceOwnership),
		"only loadshed's self-protection FlowSchema")

	builtin := &flowcontrolv1.FlowSchema{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "global-default"}, builtin); err != nil {
		t.Fatal(err)
	}
	builtin.Spec.PriorityLevelConfiguration.Name = "exempt"
	wantDenied(t, "routing a built-in FlowSchema to exempt", c.Update(ctx, builtin), "never a built-in one")
	builtin.Labels = map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	wantDenied(t, "taking over a built-in FlowSchema by labelling it", c.Update(ctx, builtin), "never a built-in one")
	globalDefault := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "global-default"}}
	wantDenied(t, "deleting a built-in FlowSchema", c.Delete(ctx, globalDefault), "never a built-in one")

	exempt := &flowcontrolv1.PriorityLevelConfiguration{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "exempt"}, exempt); err != nil {
		t.Fatal(err)
	}
	exempt.Labels = map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	wantDenied(t, "taking over the built-in exempt priority level", c.Update(ctx, exempt), "never a built-in one")
}

// TestThePolicyNamesEveryPodSpecField: the DaemonSet policy compares every
// field of the pod template's spec but the two loadshed changes, one by
// one (CEL cannot iterate a typed object's fields). A field that a new
// Kubernetes version adds must be added there too, or a forged change to it
// would be admitted: this fails until it is.
func TestThePolicyNamesEveryPodSpecField(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config/admission/operator_limits.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[corev1.PodSpec]()
	for i := range typ.NumField() {
		name := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]
		if name == "nodeSelector" || name == "affinity" {
			continue
		}
		want := fmt.Sprintf("variables.podSpec.?%s == variables.oldPodSpec.?%s", name, name)
		if !strings.Contains(string(data), want) {
			t.Errorf("the DaemonSet policy does not compare pod spec field %s: add %q", name, want)
		}
	}
}
