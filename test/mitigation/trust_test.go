package mitigation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
)

// throttleOf reads the throttle FlowSchema of telemetry/agent.
func throttleOf() error {
	name := shed.ThrottleName(attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"})
	return env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &flowcontrolv1.FlowSchema{})
}

// writeCounter counts the writes that change what loadshed writes on an
// object (its spec, labels and annotations; not the status others write),
// from a watch, so that none is missed between two polls.
type writeCounter struct {
	w      watch.Interface
	writes chan int
}

func countWrites(w watch.Interface, content func(obj any) any) *writeCounter {

	c := &writeCounter{w: w, writes: make(chan int, 1)}
	go func() {
		var last any
		n := -1 // the first event is the object as it is
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			cur := content(ev.Object)
			if n < 0 || !equality.Semantic.DeepEqual(cur, last) {
				n++
			}
			last = cur
		}
		c.writes <- n
	}()
	return c
}

// daemonSetWrites counts the writes to telemetry/agent's spec, labels and
// annotations from now on.
func daemonSetWrites(t *testing.T) *writeCounter {
	t.Helper()
	w, err := kubernetes.NewForConfigOrDie(env.Config).AppsV1().DaemonSets("telemetry").Watch(context.Background(),
		metav1.ListOptions{FieldSelector: "metadata.name=agent"})
	if err != nil {
		t.Fatal(err)
	}
	return countWrites(w, func(o any) any {
		ds := o.(*appsv1.DaemonSet)
		return []any{ds.Spec, ds.Labels, ds.Annotations}
	})
}

func (c *writeCounter) stop() int {
	c.w.Stop()
	return <-c.writes
}

// steadyPolicy is the test policy with a throttle that queues rather than
// rejects, so that the flood's LISTs keep being served, slowly, and the
// trigger keeps firing; and nothing is restored for ten minutes.
func steadyPolicy(name string) *v1alpha1.LoadShedPolicy {
	p := harness.Policy(name)
	p.Spec.Actions.Throttle.LimitResponse = v1alpha1.LimitResponseQueue
	p.Spec.Restore.StableFor = &metav1.Duration{Duration: 10 * time.Minute}
	return p
}

// TestASteadyFloodWritesEachObjectOnce: once a DaemonSet is paused and its
// ServiceAccount (of the same namespace and name) throttled, a minute of the
// flood going on changes neither, however often the policy is evaluated;
// and a second policy with the same targets, firing too, does not fight
// the first over them: it reports them as the first one's.
func TestASteadyFloodWritesEachObjectOnce(t *testing.T) {
	env.Cluster(t)
	t.Cleanup(env.RunOperator(t)) // stops after the policies are deleted: their finalizers need the operator
	ctx := context.Background()
	first := steadyPolicy("steady")
	if err := env.Client.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, first) })
	flood := env.StartLoad(t, "telemetry", 16, 0)
	defer flood.Stop()
	env.Eventually(t, "the ServiceAccount is throttled and the DaemonSet paused", func() error {
		if err := throttleOf(); err != nil {
			return err
		}
		if shed.PausedBy(env.GetDS(t)) != "steady" {
			return errors.New("not paused yet")
		}
		return nil
	})
	rival := steadyPolicy("rival")
	if err := env.Client.Create(ctx, rival); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, rival) })

	dsWrites := daemonSetWrites(t)
	sa := attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"}
	fsWatch, err := kubernetes.NewForConfigOrDie(env.Config).FlowcontrolV1().FlowSchemas().Watch(ctx,
		metav1.ListOptions{FieldSelector: "metadata.name=" + shed.ThrottleName(sa)})
	if err != nil {
		t.Fatal(err)
	}
	fsWrites := countWrites(fsWatch, func(o any) any {
		fs := o.(*flowcontrolv1.FlowSchema)
		return []any{fs.Spec, fs.Labels, fs.Annotations}
	})
	evaluated := env.GetPolicy(t, "steady").Status.LastEvaluationTime
	time.Sleep(time.Minute)
	last := env.GetPolicy(t, "steady").Status.LastEvaluationTime
	if evaluated == nil || last == nil || !last.After(evaluated.Time) {
		t.Fatalf("the policy was not evaluated during the minute (%v, then %v): nothing was tested", evaluated, last)
	}
	if ds := env.GetDS(t); shed.PausedBy(ds) != "steady" || ds.Annotations[v1alpha1.AnnotationWave] != "0" {
		t.Fatalf("the DaemonSet is no longer fully paused by the first policy: %v", ds.Annotations)
	}
	dsN, fsN := dsWrites.stop(), fsWrites.stop()
	t.Logf("a minute of steady flood, two policies firing: %d writes to the paused DaemonSet, "+
		"%d to the throttle FlowSchema", dsN, fsN)
	if dsN > 1 {
		t.Errorf("the paused DaemonSet was written %d times in a minute of steady flood, want at most 1", dsN)
	}
	if fsN > 1 {
		t.Errorf("the throttle FlowSchema was written %d times in a minute of steady flood, want at most 1", fsN)
	}
	for policy, want := range map[string]map[string]int{
		"steady": {v1alpha1.EventThrottled: 1, v1alpha1.EventPaused: 1, v1alpha1.EventBlocked: 0},
		"rival":  {v1alpha1.EventThrottled: 0, v1alpha1.EventPaused: 0, v1alpha1.EventBlocked: 2},
	} {
		for reason, n := range want {
			if got := env.EventCount(t, policy, reason); got != n {
				t.Errorf("policy %s: %d %s events, want %d", policy, got, reason, n)
			}
		}
	}
	blocked := env.GetPolicy(t, "rival").Status.Blocked
	if len(blocked) != 2 {
		t.Errorf("the rival policy reports %+v blocked, want the throttle and the pause, as the first policy's", blocked)
	}
}

// TestAThrottleWithNoRoomIsReportedNotClaimed: a FlowSchema matches the
// flooding ServiceAccount at precedence 500, where attribution still fits
// but a throttle (1000 or more) cannot go ahead of it. Status says so, an
// event says so once, nothing claims a throttle, and the pause comes
// pause.after after the trigger fired.
func TestAThrottleWithNoRoomIsReportedNotClaimed(t *testing.T) {
	original := env.Cluster(t)
	ctx := context.Background()
	early := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "telemetry-early"},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
			MatchingPrecedence:         500,
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
					ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: "telemetry", Name: "agent"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"},
					Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}},
			}},
		},
	}
	if err := env.Client.Create(ctx, early); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, early) })
	t.Cleanup(env.RunOperator(t)) // stops after the policy is deleted: its finalizer needs the operator
	p := harness.Policy("no-room")
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, p) })
	flood := env.StartLoad(t, "telemetry", 16, 0)
	defer flood.Stop()

	env.Eventually(t, "the DaemonSet is paused, the throttle reported as blocked", func() error {
		got := env.GetPolicy(t, "no-room")
		if len(got.Status.Blocked) == 0 || got.Status.Blocked[0].Kind != v1alpha1.ActionThrottle ||
			got.Status.Blocked[0].Target != "telemetry/agent" {
			return fmt.Errorf("blocked %+v", got.Status.Blocked)
		}
		if shed.PausedBy(env.GetDS(t)) != "no-room" {
			return errors.New("not paused yet")
		}
		return nil
	})
	// Keep evaluating a few times: nothing may come to claim the throttle,
	// nor rewrite the paused DaemonSet (whose ServiceAccount has its name).
	dsWrites := daemonSetWrites(t)
	time.Sleep(10 * time.Second)
	if n := dsWrites.stop(); n > 0 {
		t.Errorf("the paused DaemonSet was written %d times in 10s of steady flood, want none", n)
	}
	got := env.GetPolicy(t, "no-room")
	for _, a := range got.Status.Actions {
		if a.Kind == v1alpha1.ActionThrottle {
			t.Errorf("status claims a throttle that is not there: %+v", a)
		}
	}
	if got.Status.ThrottledCount != 0 {
		t.Errorf("throttledCount = %d, want 0", got.Status.ThrottledCount)
	}
	if err := throttleOf(); !apierrors.IsNotFound(err) {
		t.Errorf("a throttle FlowSchema exists (%v)", err)
	}
	if n := env.EventCount(t, "no-room", v1alpha1.EventThrottled); n != 0 {
		t.Errorf("%d Throttled events for a throttle never applied", n)
	}
	if n := env.EventCount(t, "no-room", v1alpha1.EventBlocked); n != 1 {
		t.Errorf("%d Blocked events, want 1 (once, when it became blocked)", n)
	}
	flood.Stop()
	env.DeletePolicy(t, p)
	if !harness.SameTemplate(env.GetDS(t), original) {
		t.Error("deleting the policy did not give the DaemonSet its template back")
	}
}

// TestACriticalDaemonSetIsReportedNeverPaused: a flooding DaemonSet whose
// pods run at system-node-critical is the offender status names, and
// nothing is done to it or to its ServiceAccount; named in allowCritical,
// it is throttled.
func TestACriticalDaemonSetIsReportedNeverPaused(t *testing.T) {
	env.Cluster(t)
	ctx := context.Background()
	// The DaemonSet controller writes its status all along: retry on conflict.
	setPriority := func(class string) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			ds := env.GetDS(t)
			ds.Spec.Template.Spec.PriorityClassName = class
			return env.Client.Update(ctx, ds)
		})
	}
	if err := setPriority("system-node-critical"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := setPriority(""); err != nil {
			t.Errorf("giving the DaemonSet its priority back: %v", err)
		}
	})
	t.Cleanup(env.RunOperator(t)) // stops after the policy is deleted: its finalizer needs the operator
	p := harness.Policy("critical")
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, p) })
	flood := env.StartLoad(t, "telemetry", 16, 0)
	defer flood.Stop()

	env.Eventually(t, "the throttle and the pause are reported as blocked", func() error {
		got := env.GetPolicy(t, "critical")
		kinds := map[v1alpha1.ActionKind]string{}
		for _, b := range got.Status.Blocked {
			kinds[b.Kind] = b.Reason
		}
		if kinds[v1alpha1.ActionThrottle] == "" || kinds[v1alpha1.ActionPause] == "" {
			return fmt.Errorf("blocked %+v", got.Status.Blocked)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // a few more evaluations
	if by := shed.PausedBy(env.GetDS(t)); by != "" {
		t.Errorf("a system-node-critical DaemonSet was paused by %s", by)
	}
	if err := throttleOf(); !apierrors.IsNotFound(err) {
		t.Errorf("the critical DaemonSet's ServiceAccount is throttled (%v)", err)
	}
	if n := env.EventCount(t, "critical", v1alpha1.EventBlocked); n != 2 {
		t.Errorf("%d Blocked events on the policy, want 2: one for the throttle, one for the pause", n)
	}

	// Named explicitly, it may be acted on.
	cur := env.GetPolicy(t, "critical")
	cur.Spec.Targets.AllowCritical = []v1alpha1.DaemonSetReference{{Namespace: "telemetry", Name: "agent"}}
	if err := env.Client.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	env.Eventually(t, "named in allowCritical, it is throttled", throttleOf)
}

// TestARefusedWriteIsReportedNotClaimed: the API server refuses the
// throttle FlowSchema and the DaemonSet's pause (here two admission
// policies; in production RBAC, an admission webhook, or an object too
// large). Status and one Blocked event each say so, no event or status
// claims either; once the pause is allowed it comes at once, its clock
// having run since the throttle was first refused.
func TestARefusedWriteIsReportedNotClaimed(t *testing.T) {
	original := env.Cluster(t)
	ctx := context.Background()
	allowThrottles := env.DenyPolicy(t, "no-throttles-here", "flowcontrol.apiserver.k8s.io", "flowschemas",
		`object.metadata.?labels.orValue({})[?"loadshed.io/role"] != optional.of("throttle")`)
	t.Cleanup(allowThrottles)
	allowPauses := env.DenyPolicy(t, "no-pauses-here", "apps", "daemonsets",
		`!object.spec.template.spec.?nodeSelector.orValue({}).exists(k, k == "loadshed.io/paused")`)
	t.Cleanup(allowPauses)
	t.Cleanup(env.RunOperator(t))
	p := harness.Policy("refused")
	p.Spec.Actions.Pause.After = &metav1.Duration{Duration: 5 * time.Second}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, p) })
	flood := env.StartLoad(t, "telemetry", 16, 0)
	defer flood.Stop()

	env.Eventually(t, "the refused throttle and pause are reported", func() error {
		reasons := map[v1alpha1.ActionKind]string{}
		for _, b := range env.GetPolicy(t, "refused").Status.Blocked {
			reasons[b.Kind] = b.Reason
		}
		for _, kind := range []v1alpha1.ActionKind{v1alpha1.ActionThrottle, v1alpha1.ActionPause} {
			if !strings.Contains(reasons[kind], "the API server refused it") {
				return fmt.Errorf("%s blocked: %q", kind, reasons[kind])
			}
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few more evaluations, each refused again
	got := env.GetPolicy(t, "refused")
	if len(got.Status.Actions) != 0 || got.Status.PausedCount != 0 || got.Status.ThrottledCount != 0 {
		t.Errorf("status claims what the API server refused: actions %+v, %d paused, %d throttled",
			got.Status.Actions, got.Status.PausedCount, got.Status.ThrottledCount)
	}
	for reason, n := range map[string]int{v1alpha1.EventThrottled: 0, v1alpha1.EventPaused: 0, v1alpha1.EventBlocked: 2} {
		if got := env.EventCount(t, "refused", reason); got != n {
			t.Errorf("%d %s events, want %d", got, reason, n)
		}
	}
	if !harness.SameTemplate(env.GetDS(t), original) {
		t.Error("the DaemonSet changed although its pause was refused")
	}

	allowPauses()
	env.Eventually(t, "allowed, the pause is made", func() error {
		if shed.PausedBy(env.GetDS(t)) != "refused" {
			return errors.New("not paused yet")
		}
		return nil
	})
	// Events are recorded asynchronously: wait for it, then for no second.
	env.Eventually(t, "one Paused event", func() error {
		if n := env.EventCount(t, "refused", v1alpha1.EventPaused); n != 1 {
			return fmt.Errorf("%d Paused events, want 1", n)
		}
		return nil
	})
}

// TestEveryFloodingClientIsSeenWhateverRunsIt: a ServiceAccount that runs
// no DaemonSet (a Deployment's, say) floods: it is named the offender and
// throttled, and nothing is paused. Then a user who is not a ServiceAccount
// floods: status and one event name them and say why nothing is done.
func TestEveryFloodingClientIsSeenWhateverRunsIt(t *testing.T) {
	env.Cluster(t)
	ctx := context.Background()
	t.Cleanup(env.RunOperator(t)) // stops after the policies are deleted: their finalizers need the operator

	deployment := harness.Policy("any-client")
	if err := env.Client.Create(ctx, deployment); err != nil {
		t.Fatal(err)
	}
	flood := env.StartLoad(t, "payments", 16, 0)
	payments := attribution.ServiceAccount{Namespace: "payments", Name: "agent"}
	env.Eventually(t, "payments/agent, which runs no DaemonSet, is named and throttled", func() error {
		got := env.GetPolicy(t, "any-client")
		if len(got.Status.Offenders) == 0 || got.Status.Offenders[0].User != payments.UserName() ||
			got.Status.Offenders[0].ServiceAccount != "payments/agent" || len(got.Status.Offenders[0].DaemonSets) != 0 {
			return fmt.Errorf("offenders %+v", got.Status.Offenders)
		}
		fs := &flowcontrolv1.FlowSchema{}
		return env.Client.Get(ctx, client.ObjectKey{Name: shed.ThrottleName(payments)}, fs)
	})
	env.Eventually(t, "the flood gets 429s", func() error {
		if flood.Throttled.Load() == 0 {
			return errors.New("no 429 yet")
		}
		return nil
	})
	time.Sleep(5 * time.Second) // past pause.after (3s): still nothing to pause
	if by := shed.PausedBy(env.GetDS(t)); by != "" {
		t.Errorf("the telemetry DaemonSet, which did not flood, was paused by %s", by)
	}
	if n := env.EventCount(t, "any-client", v1alpha1.EventThrottled); n != 1 {
		t.Errorf("%d Throttled events, want 1", n)
	}
	flood.Stop()
	env.DeletePolicy(t, deployment)
	// The samples of the first flood age out of the attribution window (ten
	// intervals: 10s) before the next policy reads them: the policies share
	// the samples.
	time.Sleep(12 * time.Second)

	// A person, bound to the same role, floods the same way.
	if err := env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-pods-alice"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-pods"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"}}}); err != nil &&
		!apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	users := harness.Policy("any-user")
	if err := env.Client.Create(ctx, users); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, users) })
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "alice", Groups: []string{"system:authenticated"}}
	alice := kubernetes.NewForConfigOrDie(cfg)
	stop := make(chan struct{})
	defer close(stop)
	for range 16 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = alice.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
			}
		}()
	}
	env.Eventually(t, "alice is named, and the throttle reported as not possible", func() error {
		got := env.GetPolicy(t, "any-user")
		if o := got.Status.Offenders; len(o) == 0 || o[0].User != "alice" || o[0].ServiceAccount != "" {
			return fmt.Errorf("offenders %+v", o)
		}
		for _, b := range got.Status.Blocked {
			if b.Kind == v1alpha1.ActionThrottle && b.Target == "alice" && strings.Contains(b.Reason, "not a ServiceAccount") {
				return nil
			}
		}
		return fmt.Errorf("blocked %+v", got.Status.Blocked)
	})
	env.Eventually(t, "a Blocked event says so", func() error {
		if n := env.EventCount(t, "any-user", v1alpha1.EventBlocked); n == 0 {
			return errors.New("no Blocked event yet")
		}
		return nil
	})
	if left := env.Owned(t); len(left) > 0 {
		t.Errorf("a flood by a user left %v in place", left)
	}
}
