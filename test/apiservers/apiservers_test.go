// Package apiservers tests the operator against two kube-apiservers on one
// etcd, each published in default/kubernetes as in a real cluster: the
// sampler scrapes each through its endpoint, a flood that loads only one
// is caught, and one that is down leaves the policy partially blind, never
// healthy, with nothing restored.
package apiservers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

const timeout = 90 * time.Second

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{APIServers: 2, Components: []string{"kube-controller-manager"}})
}

// startOperator runs the operator in this process until the test ends
// (after the cleanups registered later: a policy's finalizer needs it).
func startOperator(t *testing.T) {
	t.Helper()
	stop, err := env.StartOperator(env.Config, operator.Options{Namespace: "loadshed-system", MetricsAddr: "0",
		ProbeAddr: "0", RestartableInProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("the operator stopped with an error: %v", err)
		}
	})
}

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := testutil.Poll(timeout, 200*time.Millisecond, check); err != nil {
		ps := &v1alpha1.LoadShedPolicyList{}
		_ = env.Client.List(context.Background(), ps)
		for _, p := range ps.Items {
			t.Logf("policy %s: phase %s, signals %+v, conditions %+v", p.Name, p.Status.Phase, p.Status.Signals, p.Status.Conditions)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// world creates the Nodes, the telemetry DaemonSet and its ServiceAccount,
// allowed to list pods, once per package.
var world = sync.OnceValue(func() error {
	ctx := context.Background()
	const nodes = 4
	objs := make([]client.Object, 0, 6+nodes)
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loadshed-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-pods-telemetry"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-pods"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "telemetry", Name: "agent"}}},
		&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"},
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
		},
	)
	for i := range nodes {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("node-%02d", i), Labels: map[string]string{"kubernetes.io/os": "linux"}}})
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
})

// policy watches the pod LISTs per second, summed over the API servers,
// with the short durations of test/mitigation's policies.
func policy(name string, dryRun bool) *v1alpha1.LoadShedPolicy {
	d := func(v time.Duration) *metav1.Duration { return &metav1.Duration{Duration: v} }
	clear := resource.MustParse("12")
	return &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.LoadShedPolicySpec{
			DryRun:   dryRun,
			Interval: d(time.Second),
			Targets: v1alpha1.Targets{NamespaceSelector: &v1alpha1.LabelSelector{
				MatchExpressions: []v1alpha1.LabelSelectorRequirement{{Key: corev1.LabelMetadataName,
					Operator: metav1.LabelSelectorOpIn, Values: []v1alpha1.LabelValue{"telemetry"}}}}},
			Triggers: []v1alpha1.Trigger{{
				Name: "pod-lists", Signal: v1alpha1.SignalListRequestsPerSecond,
				Matchers:  []v1alpha1.LabelMatcher{{Label: "resource", Value: "pods"}},
				Threshold: resource.MustParse("30"), ClearThreshold: &clear, For: d(2 * time.Second), Window: d(3 * time.Second),
			}},
			Actions: v1alpha1.Actions{
				MinSharePercent: 50,
				Throttle:        v1alpha1.ThrottleAction{LimitResponse: v1alpha1.LimitResponseReject},
				Pause:           v1alpha1.PauseAction{MaxPaused: 1, After: d(3 * time.Second)},
			},
			Restore: v1alpha1.Restore{
				StableFor: d(3 * time.Second), Probation: d(3 * time.Second), WavePercents: []int32{50, 100},
				Backoff: v1alpha1.Backoff{Initial: d(5 * time.Second), Max: d(time.Minute)},
			},
		},
	}
}

// create creates the policy, deleted (its finalizer undoing what it did)
// when the test ends.
func create(t *testing.T, p *v1alpha1.LoadShedPolicy) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
			return
		}
		eventually(t, "the policy "+p.Name+" is deleted", func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.LoadShedPolicy{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there: %w", err)
			}
			return nil
		})
	})
}

func getPolicy(t *testing.T, name string) *v1alpha1.LoadShedPolicy {
	t.Helper()
	p := &v1alpha1.LoadShedPolicy{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// metricsAre checks the policy's MetricsAvailable condition.
func metricsAre(t *testing.T, name string, status metav1.ConditionStatus, reason string, says ...string) func() error {
	return func() error {
		p := getPolicy(t, name)
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionMetricsAvailable)
		if c == nil || c.Status != status || c.Reason != reason {
			return fmt.Errorf("MetricsAvailable is %+v, want %s/%s", c, status, reason)
		}
		for _, s := range says {
			if !strings.Contains(c.Message, s) {
				return fmt.Errorf("MetricsAvailable's message %q does not say %q", c.Message, s)
			}
		}
		return nil
	}
}

// flood lists pods as telemetry/agent from workers goroutines through cfg's
// API server until the returned function is called.
func flood(t *testing.T, apiserver int, workers int) (stop func()) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(testutil.AsServiceAccount(env.APIServerConfig(apiserver), "telemetry", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Minute)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if _, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil && ctx.Err() == nil {
					time.Sleep(50 * time.Millisecond) // refused (the server is down) or throttled
				}
			}
		})
	}
	stopped := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stopped)
	return stopped
}

// stopSecond stops the second kube-apiserver, and returns what starts it
// again; that runs when the test ends if the test has not run it, for the
// next test.
func stopSecond(t *testing.T) (start func()) {
	t.Helper()
	stopped, err := env.StopAPIServer(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the second kube-apiserver %s", stopped)
	var once sync.Once
	start = func() {
		once.Do(func() {
			if err := env.StartAPIServer(1); err != nil {
				t.Errorf("starting the second kube-apiserver again: %v", err)
			}
		})
	}
	t.Cleanup(start)
	return start
}

// TestEachAPIServerIsScrapedThroughItsEndpoint: the sampler scrapes both
// kube-apiservers at the addresses default/kubernetes publishes, not the
// configured host. With the second one down, the policy is partially blind
// (MetricsAvailable False, PartialScrape, naming it) and never Healthy; back,
// it is read again.
func TestEachAPIServerIsScrapedThroughItsEndpoint(t *testing.T) {
	if err := world(); err != nil {
		t.Fatal(err)
	}
	startOperator(t)
	create(t, policy("scraped", true))
	both := fmt.Sprintf("scraped 2 of 2 API server instances (%s, %s)", env.AdvertisedURL(0), env.AdvertisedURL(1))
	eventually(t, "both API servers are scraped through their endpoints and the policy is healthy", func() error {
		if err := metricsAre(t, "scraped", metav1.ConditionTrue, v1alpha1.ReasonMetricsRead, both)(); err != nil {
			return err
		}
		if phase := getPolicy(t, "scraped").Status.Phase; phase != v1alpha1.PhaseHealthy {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})

	startSecond := stopSecond(t)
	down := env.AdvertisedURL(1) + ": no longer listed in default/kubernetes"
	eventually(t, "the policy says it cannot read the second API server", metricsAre(t, "scraped", metav1.ConditionFalse,
		v1alpha1.ReasonPartialScrape, fmt.Sprintf("scraped 1 of 2 API server instances (%s)", env.AdvertisedURL(0)), down))
	// Long enough for several loops, and for the trigger's for (2s) and
	// window (3s) over: never healthy.
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(200 * time.Millisecond) {
		p := getPolicy(t, "scraped")
		if p.Status.Phase == v1alpha1.PhaseHealthy {
			t.Fatalf("the policy is Healthy with an API server down: %+v", p.Status)
		}
		for _, s := range p.Status.Signals {
			if s.State == v1alpha1.TriggerOK {
				t.Fatalf("trigger %s is OK with an API server down: %+v", s.Name, s)
			}
		}
	}
	p := getPolicy(t, "scraped")
	t.Logf("with an API server down: phase %s, signals %+v", p.Status.Phase, p.Status.Signals)

	startSecond()
	eventually(t, "both API servers are read again and the policy is healthy", func() error {
		if err := metricsAre(t, "scraped", metav1.ConditionTrue, v1alpha1.ReasonMetricsRead, both)(); err != nil {
			return err
		}
		if phase := getPolicy(t, "scraped").Status.Phase; phase != v1alpha1.PhaseHealthy {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})
}

// TestAFloodOnOneAPIServerIsCaught: a flood sent only to the second
// kube-apiserver (the operator's own clients use the first) fires the
// trigger: the sampler reads that instance.
func TestAFloodOnOneAPIServerIsCaught(t *testing.T) {
	if err := world(); err != nil {
		t.Fatal(err)
	}
	startOperator(t)
	create(t, policy("one-server", true))
	eventually(t, "the policy reads both API servers", metricsAre(t, "one-server", metav1.ConditionTrue, v1alpha1.ReasonMetricsRead,
		"scraped 2 of 2 API server instances"))
	stop := flood(t, 1, 16)
	defer stop()
	eventually(t, "the trigger fires", func() error {
		p := getPolicy(t, "one-server")
		if !meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionTriggered) {
			return fmt.Errorf("not triggered: %+v", p.Status.Signals)
		}
		t.Logf("fired: %s, %+v", p.Status.WorstSignal, p.Status.Signals)
		return nil
	})
}

// TestNothingIsRestoredWhileAnAPIServerIsDown: a flood on the second
// kube-apiserver gets the telemetry DaemonSet paused (attributed from that
// instance's APF dump). The second API server goes down, and the flood
// with it: the instance left cannot say the trigger is clear, so for the
// time it would take to clear it, be stable and restore, it stays firing,
// the DaemonSet paused, nothing restored. Back, the restore begins.
func TestNothingIsRestoredWhileAnAPIServerIsDown(t *testing.T) {
	if err := world(); err != nil {
		t.Fatal(err)
	}
	startOperator(t)
	create(t, policy("blind", false))
	eventually(t, "the policy reads both API servers", metricsAre(t, "blind", metav1.ConditionTrue, v1alpha1.ReasonMetricsRead,
		"scraped 2 of 2 API server instances"))
	stopFlood := flood(t, 1, 16)
	ds := &appsv1.DaemonSet{}
	paused := func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: "telemetry", Name: "agent"}, ds); err != nil {
			return err
		}
		if shed.PausedBy(ds) != "blind" {
			return errors.New("not paused by the policy")
		}
		// Wave 0 is the pause itself; the restore's waves count from 1.
		if wave, _ := strconv.Atoi(ds.Annotations[v1alpha1.AnnotationWave]); wave > 0 {
			return fmt.Errorf("restoring, wave %d", wave)
		}
		return nil
	}
	eventually(t, "the DaemonSet is paused", paused)

	startSecond := stopSecond(t)
	stopFlood()
	eventually(t, "the policy says it cannot read the second API server", metricsAre(t, "blind", metav1.ConditionFalse,
		v1alpha1.ReasonPartialScrape, env.AdvertisedURL(1)))
	// More than clearing (for, 2s), stableFor (3s) and a wave's probation
	// (3s) take, with the window (3s) over.
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(250 * time.Millisecond) {
		if err := paused(); err != nil {
			t.Fatalf("with an API server down: %v", err)
		}
		p := getPolicy(t, "blind")
		if p.Status.Phase == v1alpha1.PhaseHealthy || p.Status.Phase == v1alpha1.PhaseRestoring {
			t.Fatalf("the policy is %s with an API server down: %+v", p.Status.Phase, p.Status.Signals)
		}
	}
	if at := testutil.FirstEventAt(t, env.Client, "blind", v1alpha1.EventRestoreStarted); !at.IsZero() {
		t.Fatalf("a restore started at %v with an API server down", at)
	}
	p := getPolicy(t, "blind")
	t.Logf("with an API server down: phase %s, signals %+v", p.Status.Phase, p.Status.Signals)

	startSecond()
	back := time.Now()
	eventually(t, "the restore starts", func() error {
		if testutil.FirstEventAt(t, env.Client, "blind", v1alpha1.EventRestoreStarted).IsZero() {
			return errors.New("no RestoreStarted yet")
		}
		return nil
	})
	t.Logf("the restore started %v after the second API server was back",
		testutil.FirstEventAt(t, env.Client, "blind", v1alpha1.EventRestoreStarted).Sub(back).Round(time.Second))
}
