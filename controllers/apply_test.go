package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/internal/trigger"
)

// These tests run the apply layer against controller-runtime's fake client:
// the rules of what is written, and when nothing is, fail here in a second.
// The envtest suites run the same code against a real kube-apiserver.

var (
	applyNow = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	agentSA  = types.NamespacedName{Namespace: "telemetry", Name: "agent"}
)

// fakeReconciler returns a reconciler on a fake client holding objs, and a
// count of the writes made through it.
func fakeReconciler(t *testing.T, objs ...client.Object) (*LoadShedPolicyReconciler, *atomic.Int64) {
	t.Helper()
	return failingReconciler(t, nil, objs...)
}

// failingReconciler is fakeReconciler whose client fails each update that
// failUpdate (when set) returns an error for.
func failingReconciler(t *testing.T, failUpdate func(client.Object) error, objs ...client.Object) (*LoadShedPolicyReconciler,
	*atomic.Int64) {
	t.Helper()
	s, err := scheme.New()
	if err != nil {
		t.Fatal(err)
	}
	writes := &atomic.Int64{}
	count := func() { writes.Add(1) }
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			count()
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if failUpdate != nil {
				if err := failUpdate(obj); err != nil {
					return err
				}
			}
			count()
			return c.Update(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			count()
			return c.Delete(ctx, obj, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			count()
			return c.Apply(ctx, obj, opts...)
		},
	}).Build()
	return &LoadShedPolicyReconciler{Client: c, Namespace: "loadshed-system"}, writes
}

// matchedSchema is a FlowSchema that matches every ServiceAccount's
// requests, like the built-in service-accounts schema.
func matchedSchema(precedence int32) *flowcontrolv1.FlowSchema {
	return &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "service-accounts"},
		Spec: flowcontrolv1.FlowSchemaSpec{
			MatchingPrecedence:         precedence,
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindGroup,
					Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"},
					Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}},
			}},
		},
	}
}

func daemonSet(namespace, name, serviceAccount string) appsv1.DaemonSet {
	ds := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	ds.Spec.Template.Spec.ServiceAccountName = serviceAccount
	return ds
}

func listSchemas(t *testing.T, c client.Client) []flowcontrolv1.FlowSchema {
	t.Helper()
	l := &flowcontrolv1.FlowSchemaList{}
	if err := c.List(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func findSchema(schemas []flowcontrolv1.FlowSchema, name string) *flowcontrolv1.FlowSchema {
	i := slices.IndexFunc(schemas, func(fs flowcontrolv1.FlowSchema) bool { return fs.Name == name })
	if i < 0 {
		return nil
	}
	return &schemas[i]
}

func TestCannotThrottle(t *testing.T) {
	sa := func(s string) types.NamespacedName {
		ns, name, _ := strings.Cut(s, "/")
		return types.NamespacedName{Namespace: ns, Name: name}
	}
	everywhere := policy.Targets{NamespaceSelector: labels.Everything()}
	only := func(ns string) policy.Targets {
		return policy.Targets{NamespaceSelector: labels.SelectorFromSet(labels.Set{"kubernetes.io/metadata.name": ns})}
	}
	nsLabels := map[string]labels.Set{}
	for _, ns := range []string{"shop", "telemetry", "kube-system"} {
		nsLabels[ns] = labels.Set{"kubernetes.io/metadata.name": ns}
	}
	tests := []struct {
		name      string
		sa        string
		targets   policy.Targets
		schemas   []flowcontrolv1.FlowSchema
		want      string // a piece of the reason; "" for none
		wantMatch bool
	}{
		{name: "a Deployment's ServiceAccount matched by service-accounts can be throttled",
			sa: "shop/api", schemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}, wantMatch: true},
		{name: "the operator's own never is",
			sa: "loadshed-system/loadshed-operator", schemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}, want: "it is the operator"},
		{name: "kube-system is protected",
			sa: "kube-system/coredns", schemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}, want: "its namespace kube-system is protected"},
		{name: "unless the policy allows it",
			sa: "kube-system/coredns", targets: policy.Targets{NamespaceSelector: labels.Everything(), AllowProtectedNamespaces: true},
			schemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}, wantMatch: true},
		{name: "a namespace the policy does not select is out of its scope",
			sa: "shop/api", targets: only("telemetry"),
			schemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}, want: "not one spec.targets.namespaceSelector selects"},
		{name: "one it selects is in",
			sa: "telemetry/agent", targets: only("telemetry"),
			schemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}, wantMatch: true},
		{name: "no FlowSchema to go ahead of",
			sa: "shop/api", want: "no FlowSchema matches it"},
		{name: "matched too early for a throttle",
			sa: "shop/api", schemas: []flowcontrolv1.FlowSchema{*matchedSchema(1001)}, want: "a throttle would have to go ahead of 1000", wantMatch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.targets.NamespaceSelector == nil {
				tt.targets = everywhere
			}
			r := &LoadShedPolicyReconciler{Namespace: "loadshed-system", ServiceAccount: "loadshed-operator"}
			w := &world{schemas: tt.schemas, nsLabels: nsLabels, matched: map[types.NamespacedName]*flowcontrolv1.FlowSchema{}}
			got := r.cannotThrottle(sa(tt.sa), &policy.Config{Targets: tt.targets}, w)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("cannotThrottle = %q, want %q", got, tt.want)
			}
			if _, ok := w.matched[sa(tt.sa)]; ok != tt.wantMatch {
				t.Errorf("matched recorded: %v, want %v", ok, tt.wantMatch)
			}
		})
	}
}

func TestLegacyAttributionCleanup(t *testing.T) {
	legacy := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "loadshed-attr-telemetry.agent",
		Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: v1alpha1.RoleAttribution}}}
	notOurs := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses",
		Labels: map[string]string{v1alpha1.LabelRole: v1alpha1.RoleAttribution}}}
	r, _ := fakeReconciler(t, legacy, notOurs, matchedSchema(9000))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (&LegacyAttributionCleanup{Client: r.Client}).Start(ctx); err != nil {
		t.Fatal(err)
	}
	schemas := listSchemas(t, r.Client)
	left := make([]string, 0, len(schemas))
	for _, fs := range schemas {
		left = append(left, fs.Name)
	}
	if want := []string{"service-accounts", "someone-elses"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

func TestApplyThrottles(t *testing.T) {
	cfg := &policy.Config{Throttle: policy.Throttle{Enabled: true, NominalConcurrencyShares: 5,
		LimitResponse: v1alpha1.LimitResponseReject}}
	throttleName := shed.ThrottleName(attribution.ServiceAccount(agentSA))
	levelName := shed.ThrottleLevelName("flood")
	tests := []struct {
		name         string
		matched      int32 // precedence of the schema the ServiceAccount matches
		throttled    map[types.NamespacedName]time.Time
		paused       bool
		restored     bool
		wantThrottle int32 // the throttle FlowSchema's precedence; 0 for none
		wantLevel    bool
	}{
		{name: "a new throttle goes just ahead of the attribution, to the policy's level",
			matched: 9000, throttled: map[types.NamespacedName]time.Time{agentSA: applyNow}, wantThrottle: 8998, wantLevel: true},
		{name: "a ServiceAccount matched too early to throttle is left alone",
			matched: 1001, throttled: map[types.NamespacedName]time.Time{agentSA: applyNow}, wantLevel: true},
		{name: "a plan without throttles removes them, and the level once nothing is paused",
			matched: 9000},
		{name: "the level stays while something is paused",
			matched: 9000, paused: true, wantLevel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Start from a cluster with the throttle and level in place, as
			// a previous loop made them, except when the plan adds them.
			r, _ := fakeReconciler(t, matchedSchema(tt.matched))
			ctx := context.Background()
			state := &reconcileState{config: cfg, evaluated: applyNow}
			if tt.throttled == nil {
				prev := plan.Plan{Throttled: map[types.NamespacedName]time.Time{agentSA: applyNow.Add(-time.Minute)}}
				applyThrottlesOn(t, r, state, prev, tt.matched)
			}
			p := plan.Plan{Throttled: tt.throttled}
			if tt.paused {
				p.Paused = map[types.NamespacedName]plan.Pause{{Namespace: "telemetry", Name: "agent"}: {Since: applyNow}}
			}
			applyThrottlesOn(t, r, state, p, tt.matched)

			fs := findSchema(listSchemas(t, r.Client), throttleName)
			switch {
			case tt.wantThrottle == 0 && fs != nil:
				t.Errorf("throttle FlowSchema %s exists: %+v", throttleName, fs.Spec)
			case tt.wantThrottle != 0 && (fs == nil || fs.Spec.MatchingPrecedence != tt.wantThrottle ||
				fs.Spec.PriorityLevelConfiguration.Name != levelName):
				t.Errorf("throttle FlowSchema = %+v, want precedence %d to %s", fs, tt.wantThrottle, levelName)
			}
			level := &flowcontrolv1.PriorityLevelConfiguration{}
			err := r.Get(ctx, client.ObjectKey{Name: levelName}, level)
			if gotLevel := err == nil; gotLevel != tt.wantLevel {
				t.Errorf("throttling level exists: %v, want %v (%v)", gotLevel, tt.wantLevel, err)
			}
		})
	}
}

func TestAnUnchangedThrottleIsNotWrittenAgain(t *testing.T) {
	cfg := &policy.Config{Throttle: policy.Throttle{Enabled: true, NominalConcurrencyShares: 5,
		LimitResponse: v1alpha1.LimitResponseReject}}
	r, writes := fakeReconciler(t, matchedSchema(9000))
	ctx := context.Background()
	state := &reconcileState{config: cfg, evaluated: applyNow}
	p := plan.Plan{Throttled: map[types.NamespacedName]time.Time{agentSA: applyNow}}
	applyThrottlesOn(t, r, state, p, 9000)
	if n := writes.Load(); n != 2 {
		t.Errorf("the first loop wrote %d times, want 2 (the level and the FlowSchema)", n)
	}
	for range 3 {
		state.evaluated = state.evaluated.Add(5 * time.Second)
		applyThrottlesOn(t, r, state, p, 9000)
	}
	if n := writes.Load(); n != 2 {
		t.Errorf("three more loops of the same plan wrote %d more times, want none", n-2)
	}

	// A finished restore stamps the level, so that the throttles wait
	// stableFor after it.
	p.Restored = []types.NamespacedName{{Namespace: "telemetry", Name: "agent"}}
	applyThrottlesOn(t, r, state, p, 9000)
	level := &flowcontrolv1.PriorityLevelConfiguration{}
	if err := r.Get(ctx, client.ObjectKey{Name: shed.ThrottleLevelName("flood")}, level); err != nil {
		t.Fatal(err)
	}
	if got := shed.LastRestored(level); !got.Equal(state.evaluated) {
		t.Errorf("the level says the last restore was at %v, want %v", got, state.evaluated)
	}
}

// applyThrottlesOn reads the policy "flood"'s throttles from the fake
// cluster, as a loop does, and applies p.
func applyThrottlesOn(t *testing.T, r *LoadShedPolicyReconciler, state *reconcileState, p plan.Plan, matched int32) {
	t.Helper()
	ctx := context.Background()
	st, err := r.readShedState(ctx, "flood")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := inPlaceFrom("flood", st)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{inPlace: cur, matched: map[types.NamespacedName]*flowcontrolv1.FlowSchema{agentSA: matchedSchema(matched)}}
	refused, err := r.applyThrottles(ctx, "flood", state, w, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(refused) > 0 {
		t.Fatalf("refused %v", refused)
	}
}

// TestAFailingPauseHoldsNoThrottleBack: in one loop the plan throttles the
// telemetry agent's ServiceAccount and pauses its DaemonSet (pause.after
// 0). Whatever becomes of the pause, the throttle is made, and events and
// the plan say what was made: a pause that failed (a timeout) is taken
// back and its error returned, for the loop to be retried with backoff; a
// refused one is reported as blocked, with no error.
func TestAFailingPauseHoldsNoThrottleBack(t *testing.T) {
	ds := daemonSet("telemetry", "agent", "agent")
	key := client.ObjectKeyFromObject(&ds)
	tests := []struct {
		name      string
		err       error // the DaemonSet update's
		wantErr   bool
		wantPause bool
		wantBlock bool
	}{
		{name: "a pause that times out is retried", err: apierrors.NewTimeoutError("slow etcd", 1), wantErr: true},
		{name: "a refused pause is blocked", err: apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"},
			"agent", errors.New("denied")), wantBlock: true},
		{name: "a pause made", wantPause: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failUpdate := func(obj client.Object) error {
				if _, isDS := obj.(*appsv1.DaemonSet); isDS {
					return tt.err
				}
				return nil
			}
			r, _ := failingReconciler(t, failUpdate, ds.DeepCopy(), matchedSchema(9000))
			rec := events.NewFakeRecorder(100)
			r.Recorder = rec
			obj := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "flood"}}
			state, w := floodingLoop(t, r, ds)
			err := r.mitigate(context.Background(), obj, w, state)
			if (err != nil) != tt.wantErr || (err != nil && !apierrors.IsTimeout(err)) {
				t.Fatalf("mitigate returned %v, want an error: %v (the timeout)", err, tt.wantErr)
			}
			if findSchema(listSchemas(t, r.Client), shed.ThrottleName(attribution.ServiceAccount(agentSA))) == nil {
				t.Error("the throttle was not made")
			}
			p := state.plan
			if _, paused := p.Paused[key]; paused != tt.wantPause || len(p.Blocked) > 0 != tt.wantBlock {
				t.Errorf("the plan pauses: %v, blocks %v; want %v and a block: %v", paused, p.Blocked, tt.wantPause, tt.wantBlock)
			}
			close(rec.Events)
			var got []string
			for e := range rec.Events {
				got = append(got, strings.Fields(e)[1])
			}
			want := []string{v1alpha1.EventThrottled}
			switch {
			case tt.wantPause:
				want = append(want, v1alpha1.EventPaused, v1alpha1.EventPaused) // on the policy and the DaemonSet
			case tt.wantBlock:
				want = append(want, v1alpha1.EventBlocked, v1alpha1.EventBlocked)
			}
			if !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
		})
	}
}

// floodingLoop returns the state and world of a loop of the policy
// "flood" in which the telemetry agent's ServiceAccount floods, its
// DaemonSet ds running as it, and nothing is in place yet.
func floodingLoop(t *testing.T, r *LoadShedPolicyReconciler, ds appsv1.DaemonSet) (*reconcileState, *world) {
	t.Helper()
	cfg := &policy.Config{Interval: 10 * time.Second, MinShare: 0.2,
		Throttle: policy.Throttle{Enabled: true, NominalConcurrencyShares: 1, LimitResponse: v1alpha1.LimitResponseReject},
		Pause:    policy.Pause{Enabled: true, MaxPaused: 1},
		Restore: policy.Restore{StableFor: 2 * time.Minute, Probation: time.Minute, WavePercents: policy.DefaultWavePercents(),
			Backoff: policy.Backoff{Initial: time.Minute, Multiplier: 2, Max: 10 * time.Minute}},
		Targets: policy.Targets{NamespaceSelector: labels.Everything()}}
	st, err := r.readShedState(context.Background(), "flood")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := inPlaceFrom("flood", st)
	if err != nil {
		t.Fatal(err)
	}
	state := &reconcileState{config: cfg, evaluated: applyNow,
		readings: []detection.Reading{{Name: "inflight", OK: true, Value: 900, Threshold: 400,
			Status: trigger.Status{State: v1alpha1.TriggerFiring, Since: applyNow.Add(-time.Minute)}}},
		offenders: []detection.Offender{{User: "system:serviceaccount:telemetry:agent", ServiceAccount: agentSA,
			DaemonSets: []types.NamespacedName{client.ObjectKeyFromObject(&ds)}, InFlightShare: 0.8}}}
	w := &world{selected: []appsv1.DaemonSet{ds}, schemas: listSchemas(t, r.Client), inPlace: cur,
		nsLabels: map[string]labels.Set{"telemetry": {"kubernetes.io/metadata.name": "telemetry"}},
		matched:  map[types.NamespacedName]*flowcontrolv1.FlowSchema{}}
	return state, w
}

// TestARestoreWaveSaysHowManyNodesItRunsOn: a restore that starts on 2,000
// nodes whose names are 250 bytes long writes a first wave of no more
// nodes than fit in the wave size limit (161, not its 10%), and its event
// and status say so; when the nodes cannot be read, the wave is not
// written, the loop fails, and status says the DaemonSet is still paused.
func TestARestoreWaveSaysHowManyNodesItRunsOn(t *testing.T) {
	const total, nameBytes = 2000, 250
	nodes := make([]client.Object, total)
	for i := range nodes {
		name := fmt.Sprintf("node-%04d-", i) + strings.Repeat("x", nameBytes-10)
		nodes[i] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	}
	capped := shed.MaxWaveBytes / (nameBytes + len(`"",`))
	tests := []struct {
		name        string
		listErr     error
		wantEvent   string
		wantMessage string
	}{
		{name: "a capped first wave", wantEvent: fmt.Sprintf("wave 1 of 4: %d of 2,000 nodes (8%%), capped at the wave size limit", capped),
			wantMessage: fmt.Sprintf("restoring: wave 1 of 4: %d of 2,000 nodes (8%%), capped at the wave size limit", capped)},
		{name: "the nodes cannot be read", listErr: apierrors.NewTimeoutError("slow", 1), wantMessage: "paused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := daemonSet("telemetry", "agent", "agent")
			paused, err := shed.Apply(&ds, "flood", "it floods", plan.Pause{Since: applyNow.Add(-time.Hour)}, policy.DefaultWavePercents(), nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := scheme.New()
			if err != nil {
				t.Fatal(err)
			}
			c := fake.NewClientBuilder().WithScheme(s).WithObjects(append(nodes, paused)...).WithInterceptorFuncs(interceptor.Funcs{
				List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
					if _, isNodes := list.(*corev1.NodeList); isNodes && tt.listErr != nil {
						return tt.listErr
					}
					return c.List(ctx, list, opts...)
				},
			}).Build()
			rec := events.NewFakeRecorder(100)
			r := &LoadShedPolicyReconciler{Client: c, Namespace: "loadshed-system", Recorder: rec}
			state, w := floodingLoop(t, r, ds)
			state.offenders = nil
			state.readings[0].Value = 100
			state.readings[0].Status = trigger.Status{State: v1alpha1.TriggerOK, Since: applyNow.Add(-10 * time.Minute)}
			obj := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "flood"}}
			if err := r.mitigate(context.Background(), obj, w, state); !errors.Is(err, tt.listErr) || (err == nil) != (tt.listErr == nil) {
				t.Fatalf("mitigate returned %v, want %v", err, tt.listErr)
			}
			close(rec.Events)
			var got []string
			for e := range rec.Events {
				got = append(got, e)
			}
			if tt.wantEvent == "" && len(got) > 0 || tt.wantEvent != "" && (len(got) != 2 || !strings.Contains(got[0], tt.wantEvent) ||
				!strings.Contains(got[0], v1alpha1.EventRestoreStarted)) {
				t.Errorf("events %q, want two RestoreStarted saying %q", got, tt.wantEvent)
			}
			actions := actionStatuses(state)
			if len(actions) != 1 || actions[0].Message != tt.wantMessage {
				t.Errorf("actions %+v, want one whose message is %q", actions, tt.wantMessage)
			}
			stored := &appsv1.DaemonSet{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(&ds), stored); err != nil {
				t.Fatal(err)
			}
			runsOn := 0
			if a := stored.Spec.Template.Spec.Affinity; a != nil {
				runsOn = len(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values)
			}
			if want := map[bool]int{true: capped, false: 0}[tt.listErr == nil]; runsOn != want {
				t.Errorf("the DaemonSet runs on %d nodes, want %d", runsOn, want)
			}
		})
	}
}
