package controllers

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/shed"
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

func TestApplyAttribution(t *testing.T) {
	attr := attribution.Name(attribution.ServiceAccount(agentSA))
	tests := []struct {
		name      string
		schemas   []client.Object
		selected  []appsv1.DaemonSet
		wantAttr  []string // ServiceAccounts attributed
		wantDSs   int      // DaemonSets of the first one
		wantPrec  int32    // its attribution FlowSchema's precedence; 0 for none
		wantOwned bool
	}{
		{name: "a selected DaemonSet's ServiceAccount gets a FlowSchema just ahead of its match",
			schemas: []client.Object{matchedSchema(9000)}, selected: []appsv1.DaemonSet{daemonSet("telemetry", "agent", "agent")},
			wantAttr: []string{"telemetry/agent"}, wantDSs: 1, wantPrec: 8999, wantOwned: true},
		{name: "two DaemonSets of one ServiceAccount share one attribution",
			schemas:  []client.Object{matchedSchema(9000)},
			selected: []appsv1.DaemonSet{daemonSet("telemetry", "agent-v2", "agent"), daemonSet("telemetry", "agent", "agent")},
			wantAttr: []string{"telemetry/agent"}, wantDSs: 2, wantPrec: 8999, wantOwned: true},
		{name: "a ServiceAccount no FlowSchema matches is not attributed",
			selected: []appsv1.DaemonSet{daemonSet("telemetry", "agent", "agent")}},
		{name: "a FlowSchema loadshed does not own, with the attribution's name, is left alone",
			schemas: []client.Object{matchedSchema(9000), &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: attr},
				Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 5000,
					PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "global-default"}}}},
			selected: []appsv1.DaemonSet{daemonSet("telemetry", "agent", "agent")}, wantPrec: 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, writes := fakeReconciler(t, tt.schemas...)
			ctx := context.Background()
			w := &world{selected: tt.selected, schemas: listSchemas(t, r.Client), matched: map[types.NamespacedName]*flowcontrolv1.FlowSchema{}}
			got, err := r.applyAttribution(ctx, w)
			if err != nil {
				t.Fatal(err)
			}
			var sas []string
			for _, a := range got {
				sas = append(sas, a.ServiceAccount.String())
			}
			if !slices.Equal(sas, tt.wantAttr) {
				t.Errorf("attributed %v, want %v", sas, tt.wantAttr)
			}
			if len(got) > 0 && (len(got[0].DaemonSets) != tt.wantDSs ||
				!slices.IsSortedFunc(got[0].DaemonSets, plan.CompareNames)) {
				t.Errorf("DaemonSets %v, want %d sorted", got[0].DaemonSets, tt.wantDSs)
			}
			fs := findSchema(listSchemas(t, r.Client), attr)
			switch {
			case tt.wantPrec == 0 && fs != nil:
				t.Errorf("a FlowSchema %s was made", attr)
			case tt.wantPrec != 0 && (fs == nil || fs.Spec.MatchingPrecedence != tt.wantPrec || attribution.IsOwned(fs) != tt.wantOwned):
				t.Errorf("FlowSchema %s = %+v, want precedence %d, owned %v", attr, fs, tt.wantPrec, tt.wantOwned)
			}

			// A second loop over the same cluster writes nothing.
			before := writes.Load()
			w = &world{selected: tt.selected, schemas: listSchemas(t, r.Client), matched: map[types.NamespacedName]*flowcontrolv1.FlowSchema{}}
			if _, err := r.applyAttribution(ctx, w); err != nil {
				t.Fatal(err)
			}
			if n := writes.Load() - before; n != 0 {
				t.Errorf("the second loop wrote %d times, want 0", n)
			}
		})
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
	if got := lastRestored(level); !got.Equal(state.evaluated) {
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
