// Package mitigation tests throttling, pausing and restoring against a real
// kube-apiserver and kube-controller-manager: the DaemonSet controller
// creates and deletes the pods, so a pause and each restore wave are seen
// in the pods that exist.
package mitigation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

const (
	nodeCount = 10
	timeout   = 90 * time.Second
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{Components: []string{"kube-controller-manager"}})
}

// startOperator runs the operator in this process, as cmd/manager wires it,
// until the returned function is called. A test stops and starts it again.
func startOperator(t *testing.T) func() {
	t.Helper()
	stop, err := env.StartOperator(env.Config, operator.Options{Namespace: "loadshed-system", MetricsAddr: "0",
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

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := testutil.Poll(timeout, 200*time.Millisecond, check); err != nil {
		ps := &v1alpha1.LoadShedPolicyList{}
		_ = env.Client.List(context.Background(), ps)
		for _, p := range ps.Items {
			t.Logf("policy %s: phase %s, signals %+v, actions %+v, conditions %+v", p.Name, p.Status.Phase, p.Status.Signals,
				p.Status.Actions, p.Status.Conditions)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// cluster creates the nodes, namespaces, ServiceAccounts and the telemetry
// DaemonSet, and returns the DaemonSet as created.
func cluster(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ctx := context.Background()
	objs := make([]client.Object, 0, nodeCount+9)
	for i := range nodeCount {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("node-%02d", i), Labels: map[string]string{"kubernetes.io/os": "linux"}}})
	}
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loadshed-system"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}},
	)
	for _, ns := range []string{"telemetry", "payments"} {
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-pods-" + ns},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-pods"},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "agent"}}},
		)
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent", Labels: map[string]string{"app": "agent"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "agent",
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					// The Nodes have no kubelet and turn NotReady (tainted) after
					// about 50s; like most node agents, this one tolerates that.
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:  []corev1.Container{{Name: "agent", Image: "registry.example/telemetry-agent:1"}},
				},
			},
		},
	}
	objs = append(objs, ds)
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	created := &appsv1.DaemonSet{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ds), created); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the DaemonSet controller creates a pod per node", podsAre(nodeCount))
	return created
}

// watchWaves polls the DaemonSet and its pods until the returned function
// is called, and returns the most pods seen running during each wave.
func watchWaves(t *testing.T) func() map[int]int {
	t.Helper()
	var mu sync.Mutex
	most := map[int]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			ds := &appsv1.DaemonSet{}
			pods := &corev1.PodList{}
			if env.Client.Get(context.Background(), client.ObjectKey{Namespace: "telemetry", Name: "agent"}, ds) != nil ||
				env.Client.List(context.Background(), pods, client.InNamespace("telemetry")) != nil {
				continue
			}
			wave, err := strconv.Atoi(ds.Annotations[v1alpha1.AnnotationWave])
			if err != nil {
				continue
			}
			alive := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp.IsZero() {
					alive++
				}
			}
			mu.Lock()
			most[wave] = max(most[wave], alive)
			mu.Unlock()
		}
	}()
	return func() map[int]int {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

func podsAre(n int) func() error {
	return func() error {
		pods := &corev1.PodList{}
		if err := env.Client.List(context.Background(), pods, client.InNamespace("telemetry")); err != nil {
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

// counting counts the HTTP 429 responses a client receives, including the
// ones client-go retries by itself (it honours Retry-After, as in production).
type counting struct {
	next      http.RoundTripper
	throttled *atomic.Int64
}

func (c counting) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		c.throttled.Add(1)
	}
	return resp, err
}

func clientAs(t *testing.T, namespace string, throttled *atomic.Int64) *kubernetes.Clientset {
	t.Helper()
	cfg := testutil.AsServiceAccount(env.Config, namespace, "agent")
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return counting{next: rt, throttled: throttled} }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// load lists pods as a ServiceAccount from workers goroutines until
// stopped, counting successes, failures and the HTTP 429s on the wire.
type load struct {
	ok, throttled, failed atomic.Int64
	ctx                   context.Context
	cancel                context.CancelFunc
	wg                    sync.WaitGroup
}

func startLoad(t *testing.T, namespace string, workers int, pause time.Duration) *load {
	l := &load{}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	cs := clientAs(t, namespace, &l.throttled)
	deadline := time.Now().Add(3 * time.Minute)
	for range workers {
		l.wg.Go(func() {
			for time.Now().Before(deadline) && l.ctx.Err() == nil {
				_, err := cs.CoreV1().Pods("").List(l.ctx, metav1.ListOptions{})
				switch {
				case l.ctx.Err() != nil:
					return // stopped: neither a success nor a failure
				case err == nil:
					l.ok.Add(1)
				default:
					l.failed.Add(1)
				}
				time.Sleep(pause)
			}
		})
	}
	return l
}

// Stop stops the load at once, cancelling the requests in flight (and
// client-go's waits for a Retry-After), and waits for its workers;
// stopping twice is fine.
func (l *load) Stop() {
	l.cancel()
	l.wg.Wait()
}

func policy(name string) *v1alpha1.LoadShedPolicy {
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
					Operator: metav1.LabelSelectorOpIn, Values: []v1alpha1.LabelValue{"telemetry", "payments"}}}}},
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

func getDS(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ds := &appsv1.DaemonSet{}
	key := client.ObjectKey{Namespace: "telemetry", Name: "agent"}
	if err := env.Client.Get(context.Background(), key, ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

func owned(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	fss := &flowcontrolv1.FlowSchemaList{}
	plcs := &flowcontrolv1.PriorityLevelConfigurationList{}
	if err := env.Client.List(ctx, fss, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleThrottle}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.List(ctx, plcs, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleThrottle}); err != nil {
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

// TestAFloodIsThrottledPausedAndRestoredInWaves runs the whole cycle: a
// flood from the telemetry DaemonSet's ServiceAccount is throttled (its
// burst gets 429s while an innocent ServiceAccount and the operator keep
// going), then paused (its pods go), then, once quiet, restored wave by
// wave to a pod template exactly as it was; then the throttle goes, and
// deleting the policy leaves nothing behind.
func TestAFloodIsThrottledPausedAndRestoredInWaves(t *testing.T) {
	original := cluster(t)
	stop := startOperator(t)
	defer stop()
	ctx := context.Background()
	p := policy("flood")
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	// The operator's own requests go to exempt, which no throttle touches.
	eventually(t, "the self-protection FlowSchema is in place", func() error {
		fs := &flowcontrolv1.FlowSchema{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: shed.SelfProtectionName}, fs); err != nil {
			return err
		}
		if fs.Spec.PriorityLevelConfiguration.Name != flowcontrolv1.PriorityLevelConfigurationNameExempt ||
			fs.Spec.MatchingPrecedence >= shed.MinThrottlePrecedence {
			return fmt.Errorf("self-protection routes to %s at %d",
				fs.Spec.PriorityLevelConfiguration.Name, fs.Spec.MatchingPrecedence)
		}
		return nil
	})
	innocent := startLoad(t, "payments", 1, 200*time.Millisecond)
	flood := startLoad(t, "telemetry", 16, 0)

	eventually(t, "the telemetry ServiceAccount is throttled", func() error {
		fs := &flowcontrolv1.FlowSchema{}
		sa := attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: shed.ThrottleName(sa)}, fs); err != nil {
			return err
		}
		if fs.Spec.PriorityLevelConfiguration.Name != shed.ThrottleLevelName("flood") || fs.Spec.MatchingPrecedence != 8998 {
			return fmt.Errorf("throttle FlowSchema %+v", fs.Spec)
		}
		return nil
	})
	eventually(t, "the flood gets 429s", func() error {
		if flood.throttled.Load() == 0 {
			return errors.New("no 429 yet")
		}
		return nil
	})
	eventually(t, "the DaemonSet is paused and its pods are gone", func() error {
		if err := podsAre(0)(); err != nil {
			return err
		}
		if shed.PausedBy(getDS(t)) != "flood" {
			return errors.New("not recorded as paused by flood")
		}
		return nil
	})
	// The operator caches objects without managedFields and updates the
	// DaemonSet from its cache: the API server keeps the other managers'
	// entries (an update that omits the field leaves it as it is).
	if !slices.ContainsFunc(getDS(t).ManagedFields, func(e metav1.ManagedFieldsEntry) bool {
		return e.Manager != controllers.FieldOwner && e.Subresource == ""
	}) {
		t.Errorf("the paused DaemonSet lost its creator's managedFields: %+v", getDS(t).ManagedFields)
	}
	// Watch the restore from now on: the pods seen during each wave.
	seen := watchWaves(t)
	flood.Stop()
	innocent.Stop()
	t.Logf("flood: %d ok, %d throttled (429), %d failed; innocent: %d ok, %d throttled, %d failed",
		flood.ok.Load(), flood.throttled.Load(), flood.failed.Load(),
		innocent.ok.Load(), innocent.throttled.Load(), innocent.failed.Load())
	if innocent.throttled.Load() != 0 || innocent.failed.Load() != 0 || innocent.ok.Load() == 0 {
		t.Errorf("the innocent ServiceAccount was hurt: %d ok, %d throttled, %d failed",
			innocent.ok.Load(), innocent.throttled.Load(), innocent.failed.Load())
	}

	eventually(t, "the restore completes with every pod back", func() error {
		if err := podsAre(nodeCount)(); err != nil {
			return err
		}
		ds := getDS(t)
		if shed.PausedBy(ds) != "" {
			return errors.New("still recorded as paused")
		}
		return nil
	})
	if got := seen(); got[1] != nodeCount/2 {
		t.Errorf("during wave 1 (50%%) at most %d pods ran, want %d (all waves: %v)", got[1], nodeCount/2, got)
	}

	// The pod template is exactly as it was, and of the annotations only the
	// DaemonSet controller's template generation moved (every template
	// change bumps it).
	got := getDS(t)
	if !equality.Semantic.DeepEqual(got.Spec.Template, original.Spec.Template) {
		t.Errorf("the pod template after the restore differs from the original:\n%s",
			cmp.Diff(original.Spec.Template, got.Spec.Template))
	}
	annotations := func(ds *appsv1.DaemonSet) map[string]string {
		out := map[string]string{}
		for k, v := range ds.Annotations {
			if k != "deprecated.daemonset.template.generation" {
				out[k] = v
			}
		}
		return out
	}
	// The restore is remembered, for a relapse, until the policy goes.
	if _, ok := shed.ReadRestoration(got, "flood"); !ok {
		t.Errorf("the restore left no record for a relapse: %v", got.Annotations)
	}
	got, _ = shed.Forget(got, "flood")
	if !equality.Semantic.DeepEqual(annotations(got), annotations(original)) {
		t.Errorf("annotations after the restore: %v, want %v and the restore's record", got.Annotations, original.Annotations)
	}
	eventually(t, "the throttle goes once quiet for stableFor again", func() error {
		if left := owned(t); len(left) > 0 {
			return fmt.Errorf("still there: %v", left)
		}
		return nil
	})
	// Status is written at the end of the loop that removed the throttle.
	eventually(t, "the policy reports it is healthy again", func() error {
		final := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), final); err != nil {
			return err
		}
		if final.Status.Phase != v1alpha1.PhaseHealthy || final.Status.PausedCount != 0 || final.Status.ThrottledCount != 0 {
			return fmt.Errorf("after the incident the policy is %s, %d paused, %d throttled",
				final.Status.Phase, final.Status.PausedCount, final.Status.ThrottledCount)
		}
		return nil
	})
	if err := env.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy is deleted", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.LoadShedPolicy{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
	if got := getDS(t); !equality.Semantic.DeepEqual(annotations(got), annotations(original)) {
		t.Errorf("annotations after the policy was deleted: %v, want %v", got.Annotations, original.Annotations)
	}
}
