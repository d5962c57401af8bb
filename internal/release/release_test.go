package release

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/internal/uninstall"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

var leaseKey = types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed.io"}

// agent is a DaemonSet as its owner wrote it, with scheduling of its own
// that a pause replaces and a release must give back exactly.
func agent(namespace, name string) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
		Annotations: map[string]string{"team": "observability"}}}
	ds.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	ds.Spec.Template.Labels = map[string]string{"app": name}
	ds.Spec.Template.Spec.ServiceAccountName = "agent"
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn,
				Values: []string{"general"}}}}}}}}
	ds.Spec.Template.Spec.Containers = []corev1.Container{{Name: "agent", Image: "agent:1"}}
	return ds
}

var nodes = []corev1.Node{
	{ObjectMeta: metav1.ObjectMeta{Name: "node-0", Labels: map[string]string{"kubernetes.io/os": "linux", "pool": "general",
		corev1.LabelHostname: "node-0"}}},
	{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"kubernetes.io/os": "linux", "pool": "general",
		corev1.LabelHostname: "node-1"}}},
}

// pausedAt returns ds as the operator leaves it, paused by policyName and
// at wave (0: fully paused).
func pausedAt(t *testing.T, ds *appsv1.DaemonSet, policyName string, wave int) *appsv1.DaemonSet {
	t.Helper()
	out, err := shed.Apply(ds, policyName, "a flood", plan.Pause{Since: now.Add(-time.Minute), Wave: wave,
		WaveStarted: now.Add(-time.Second)}, []int32{50, 100}, nodes)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func throttle(t *testing.T, policyName, namespace string) flowcontrolv1.FlowSchema {
	const name = "agent"
	t.Helper()
	matched := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "service-accounts"},
		Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 9000}}
	ac, err := shed.ThrottleFlowSchema(policyName, attribution.ServiceAccount{Namespace: namespace, Name: name}, matched, now)
	if err != nil {
		t.Fatal(err)
	}
	fs := flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: *ac.Name, Labels: ac.Labels, Annotations: ac.Annotations}}
	fs.Spec.MatchingPrecedence = *ac.Spec.MatchingPrecedence
	fs.Spec.PriorityLevelConfiguration.Name = *ac.Spec.PriorityLevelConfiguration.Name
	fs.Spec.Rules = []flowcontrolv1.PolicyRulesWithSubjects{{Subjects: []flowcontrolv1.Subject{{
		Kind: flowcontrolv1.SubjectKindServiceAccount, ServiceAccount: &flowcontrolv1.ServiceAccountSubject{
			Namespace: namespace, Name: name}}}}}
	return fs
}

func level(policyName string) flowcontrolv1.PriorityLevelConfiguration {
	ac := shed.ThrottleLevel(policyName, policy.Throttle{NominalConcurrencyShares: 1, LimitResponse: v1alpha1.LimitResponseReject})
	return flowcontrolv1.PriorityLevelConfiguration{ObjectMeta: metav1.ObjectMeta{Name: *ac.Name, Labels: ac.Labels}}
}

func lsp(name string, suspended bool) v1alpha1.LoadShedPolicy {
	return v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LoadShedPolicySpec{Suspend: suspended}}
}

func lease(renewedAgo time.Duration) *coordinationv1.Lease {
	const holder = "pod-a"
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: leaseKey.Namespace, Name: leaseKey.Name},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](30),
			RenewTime: ptr.To(metav1.NewMicroTime(now.Add(-renewedAgo)))}}
}

// world is two policies: p paused telemetry/agent and throttles its
// ServiceAccount; q paused telemetry/other and throttles payments/agent;
// telemetry/restored carries what p's last restore left.
func world(t *testing.T) Input {
	restored, err := shed.Restore(pausedAt(t, agent("telemetry", "restored"), "p", 0), &plan.Restoration{At: now, Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	return Input{
		Recorded: []appsv1.DaemonSet{*pausedAt(t, agent("telemetry", "agent"), "p", 0),
			*pausedAt(t, agent("telemetry", "other"), "q", 1), *restored},
		Throttles: uninstall.APF{
			FlowSchemas:    []flowcontrolv1.FlowSchema{throttle(t, "p", "telemetry"), throttle(t, "q", "payments")},
			PriorityLevels: []flowcontrolv1.PriorityLevelConfiguration{level("p"), level("q")},
		},
		Policies: []v1alpha1.LoadShedPolicy{lsp("p", false), lsp("q", true)},
		LeaseKey: leaseKey,
		Now:      now,
	}
}

func names(p Plan) string {
	out := make([]string, 0, len(p.Restore)+len(p.Forget)+len(p.Throttles.FlowSchemas)+len(p.Throttles.PriorityLevels))
	for _, r := range p.Restore {
		out = append(out, "restore "+r.Key.String()+" of "+r.Policy)
	}
	for _, r := range p.Forget {
		out = append(out, "forget "+r.Key.String()+" of "+r.Policy)
	}
	for _, fs := range p.Throttles.FlowSchemas {
		out = append(out, "delete "+fs.Name)
	}
	for _, l := range p.Throttles.PriorityLevels {
		out = append(out, "delete level "+l.Name)
	}
	return strings.Join(out, "; ")
}

func TestDecide(t *testing.T) {
	agentKey := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	web := agent("payments", "web")
	web.Spec.Template.Spec.ServiceAccountName = "web"
	tests := []struct {
		name    string
		scope   Scope
		ds      *appsv1.DaemonSet
		lease   *coordinationv1.Lease
		force   bool
		want    string
		refused string
	}{
		{"a DaemonSet, no operator leading", Scope{DaemonSet: &agentKey}, nil, nil, false,
			"restore telemetry/agent of p; delete loadshed-throttle-telemetry.agent; delete level loadshed-throttle-p", ""},
		{"a DaemonSet while an operator leads and its policy is not suspended", Scope{DaemonSet: &agentKey}, nil,
			lease(5 * time.Second), false, "", "an operator leads (Lease loadshed-system/loadshed.io held by pod-a"},
		{"the same, forced", Scope{DaemonSet: &agentKey}, nil, lease(5 * time.Second), true,
			"restore telemetry/agent of p; delete loadshed-throttle-telemetry.agent; delete level loadshed-throttle-p", ""},
		{"a DaemonSet while the Lease has expired", Scope{DaemonSet: &agentKey}, nil, lease(time.Minute), false,
			"restore telemetry/agent of p; delete loadshed-throttle-telemetry.agent; delete level loadshed-throttle-p", ""},
		{"a suspended policy while an operator leads", Scope{Policy: "q"}, nil, lease(5 * time.Second), false,
			"restore telemetry/other of q; delete loadshed-throttle-payments.agent; delete level loadshed-throttle-q", ""},
		{"a policy", Scope{Policy: "p"}, nil, nil, false, "restore telemetry/agent of p; forget telemetry/restored of p; " +
			"delete loadshed-throttle-telemetry.agent; delete level loadshed-throttle-p", ""},
		{"everything while an operator leads", Scope{All: true}, nil, lease(5 * time.Second), false, "",
			"policy p is not suspended"},
		{"everything, forced", Scope{All: true}, nil, lease(5 * time.Second), true,
			"restore telemetry/agent of p; restore telemetry/other of q; forget telemetry/restored of p; " +
				"delete loadshed-throttle-telemetry.agent; delete loadshed-throttle-payments.agent; " +
				"delete level loadshed-throttle-p; delete level loadshed-throttle-q", ""},
		{"a policy that does not exist", Scope{Policy: "typo"}, nil, nil, false, "", `no LoadShedPolicy named "typo"`},
		{"a DaemonSet with nothing of loadshed's", Scope{DaemonSet: &types.NamespacedName{Namespace: "payments", Name: "web"}},
			web, lease(5 * time.Second), false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := world(t)
			in.Scope, in.Lease, in.Force = tt.scope, tt.lease, tt.force
			in.DaemonSet = tt.ds
			if tt.scope.DaemonSet != nil && tt.ds == nil {
				in.DaemonSet = &in.Recorded[0]
			}
			p, err := Decide(in)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("error %v, want one saying %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(p); got != tt.want {
				t.Errorf("plan:\n  %s\nwant:\n  %s", got, tt.want)
			}
		})
	}
}

func TestARefusalSaysHowToSuspend(t *testing.T) {
	in := world(t)
	in.Scope, in.Lease = Scope{Policy: "p"}, lease(time.Second)
	_, err := Decide(in)
	if err == nil || !strings.Contains(err.Error(), `kubectl patch loadshedpolicy p --type=merge -p '{"spec":{"suspend":true}}'`) ||
		!strings.Contains(err.Error(), "--force") {
		t.Errorf("refusal %v", err)
	}
	in.LeaseErr, in.Lease = apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"},
		"loadshed.io", nil), nil
	if _, err := Decide(in); err == nil || !strings.Contains(err.Error(), "cannot tell whether an operator leads") {
		t.Errorf("with the Lease unreadable: %v", err)
	}
}

func fakeClient(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) client.WithWatch {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(funcs).Build()
}

// TestReleaseGivesBackThePodTemplateFromBeforeThePause pauses a DaemonSet
// mid-restore, changes it behind release's back once (a conflict), and
// checks that release gives back exactly the template from before the
// pause, with the other change kept, and deletes the throttles.
func TestReleaseGivesBackThePodTemplateFromBeforeThePause(t *testing.T) {
	original := agent("telemetry", "agent")
	inWave := pausedAt(t, original, "p", 1)
	fs, lvl := throttle(t, "p", "telemetry"), level("p")
	var conflicts atomic.Int32
	c := fakeClient(t, interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object,
		opts ...client.UpdateOption) error {
		if conflicts.Add(1) == 1 {
			// Someone relabels the DaemonSet between release's read and its write.
			ds := &appsv1.DaemonSet{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), ds); err != nil {
				return err
			}
			ds.Labels = map[string]string{"relabelled": "yes"}
			if err := c.Update(ctx, ds); err != nil {
				return err
			}
		}
		return c.Update(ctx, obj, opts...)
	}}, inWave, &fs, &lvl)
	in := Input{Scope: Scope{Policy: "p"}, Recorded: []appsv1.DaemonSet{*inWave},
		Throttles: uninstall.APF{FlowSchemas: []flowcontrolv1.FlowSchema{fs},
			PriorityLevels: []flowcontrolv1.PriorityLevelConfiguration{lvl}},
		Policies: []v1alpha1.LoadShedPolicy{lsp("p", true)}, LeaseKey: leaseKey, Now: now}
	p, err := Decide(in)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Apply(context.Background(), c, p, false, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, &out)
	}
	got := &appsv1.DaemonSet{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(original), got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got.Spec.Template, original.Spec.Template) {
		t.Errorf("template after release:\n%+v\nwant the one before the pause:\n%+v", got.Spec.Template, original.Spec.Template)
	}
	if !equality.Semantic.DeepEqual(got.Annotations, original.Annotations) || got.Labels["relabelled"] != "yes" {
		t.Errorf("annotations %v, labels %v: want the original annotations and the concurrent relabelling", got.Annotations, got.Labels)
	}
	if conflicts.Load() < 2 {
		t.Error("the conflict was not retried")
	}
	for _, o := range []client.Object{&fs, &lvl} {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%s is still there (%v)", o.GetName(), err)
		}
	}
	for _, line := range []string{"Restored DaemonSet telemetry/agent: paused by policy p, wave 1, attempt 0; " +
		"scheduling as before the pause (nodeSelector kubernetes.io/os=linux, with its affinity)",
		"Deleted FlowSchema loadshed-throttle-telemetry.agent.", "Deleted PriorityLevelConfiguration loadshed-throttle-p."} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("the output does not say %q:\n%s", line, &out)
		}
	}
	if len(res.Changes) != 3 || res.Changes[0].Action != ActionRestored {
		t.Errorf("changes %+v", res.Changes)
	}
}

func TestADryRunChangesNothing(t *testing.T) {
	paused := pausedAt(t, agent("telemetry", "agent"), "p", 0)
	fs := throttle(t, "p", "telemetry")
	c := fakeClient(t, interceptor.Funcs{}, paused, &fs)
	p, err := Decide(Input{Scope: Scope{All: true}, Recorded: []appsv1.DaemonSet{*paused},
		Throttles: uninstall.APF{FlowSchemas: []flowcontrolv1.FlowSchema{fs}}, LeaseKey: leaseKey, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Apply(context.Background(), c, p, true, &out)
	if err != nil || !res.DryRun {
		t.Fatal(err)
	}
	got := &appsv1.DaemonSet{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(paused), got); err != nil {
		t.Fatal(err)
	}
	if shed.PausedBy(got) != "p" || !equality.Semantic.DeepEqual(got.Spec.Template, paused.Spec.Template) {
		t.Error("a dry run changed the DaemonSet")
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(&fs), &flowcontrolv1.FlowSchema{}); err != nil {
		t.Errorf("a dry run deleted the throttle: %v", err)
	}
	for _, line := range []string{"Would restore DaemonSet telemetry/agent (server dry run)",
		"Would delete FlowSchema loadshed-throttle-telemetry.agent (server dry run)."} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("the output does not say %q:\n%s", line, &out)
		}
	}
}

func TestADaemonSetNoLongerPausedIsLeftAsItIs(t *testing.T) {
	ds := agent("telemetry", "agent")
	c := fakeClient(t, interceptor.Funcs{}, ds)
	var out bytes.Buffer
	res, err := Apply(context.Background(), c, Plan{Restore: []Record{{Key: client.ObjectKeyFromObject(ds), Policy: "p"}}},
		false, &out)
	if err != nil || len(res.Changes) != 1 || res.Changes[0].Action != ActionUnchanged {
		t.Errorf("changes %+v (%v)", res.Changes, err)
	}
	if !strings.Contains(out.String(), `Left DaemonSet telemetry/agent as it is: no longer paused by policy p (paused by "" now).`) {
		t.Errorf("output %q", &out)
	}
}
