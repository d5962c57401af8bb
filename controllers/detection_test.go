package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testutil"
)

// daemonSetAs creates a namespace, a ServiceAccount that may list pods
// cluster-wide, and a DaemonSet running as it. No pod runs (there is no
// kube-controller-manager here): attribution needs only the DaemonSet.
func daemonSetAs(t *testing.T, namespace, name string) {
	t.Helper()
	ctx := context.Background()
	objs := []client.Object{
		// The built-in view role gets its rules from kube-controller-manager's
		// aggregation, which does not run here.
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
		},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "list-pods-" + namespace + "-" + name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-pods"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}},
		},
		&appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
					Spec: corev1.PodSpec{
						ServiceAccountName: name,
						Containers:         []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}},
					},
				},
			},
		},
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// clientAs returns a clientset that impersonates a ServiceAccount; API
// Priority and Fairness classifies its requests as that ServiceAccount's.
func clientAs(t *testing.T, namespace, name string) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(testutil.AsServiceAccount(env.Config, namespace, name))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// listPods lists pods cluster-wide as cs, from workers goroutines, until
// stop is closed or a minute has passed, and returns how many it made.
func listPods(cs *kubernetes.Clientset, workers int, pause time.Duration, stop <-chan struct{}) func() int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := 0
	deadline := time.Now().Add(time.Minute)
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
				mu.Lock()
				n++
				mu.Unlock()
				time.Sleep(pause)
			}
		})
	}
	return func() int { wg.Wait(); return n }
}

// podLists returns the pod-lists trigger's status.
func podLists(p *v1alpha1.LoadShedPolicy) v1alpha1.SignalStatus {
	for _, s := range p.Status.Signals {
		if s.Name == "pod-lists" {
			return s
		}
	}
	return v1alpha1.SignalStatus{}
}

// TestDetectionSeesAFloodAndAttributesIt floods the real API server with
// cluster-wide LISTs as one DaemonSet's ServiceAccount, while another makes a
// few. The LIST rate moves, the trigger fires after "for", the flooding
// ServiceAccount is ranked first (from APF's dump of the requests the API
// server holds), and once the flood stops the trigger clears through its
// lower clear threshold.
func TestDetectionSeesAFloodAndAttributesIt(t *testing.T) {
	daemonSetAs(t, "telemetry", "agent")
	daemonSetAs(t, "payments", "web")
	ctx := context.Background()

	m := v1alpha1.LabelMatcher{Label: "resource", Value: "pods"}
	p := newPolicy("flood")
	p.Spec.Interval = &metav1.Duration{Duration: time.Second}
	p.Spec.Targets.NamespaceSelector = &v1alpha1.LabelSelector{MatchExpressions: []v1alpha1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []v1alpha1.LabelValue{"telemetry", "payments"},
	}}}
	clear := resource.MustParse("5")
	p.Spec.Triggers = []v1alpha1.Trigger{{
		Name: "pod-lists", Signal: v1alpha1.SignalListRequestsPerSecond, Matchers: []v1alpha1.LabelMatcher{m},
		Threshold: resource.MustParse("30"), ClearThreshold: &clear,
		For: &metav1.Duration{Duration: 3 * time.Second}, Window: &metav1.Duration{Duration: 3 * time.Second},
	}}
	create(t, p)

	eventually(t, func() error {
		got := get(t, "flood")
		if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionMetricsAvailable); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("MetricsAvailable is not True yet: %+v", c)
		}
		if s := podLists(got); s.State != v1alpha1.TriggerOK {
			return fmt.Errorf("before the flood, pod-lists is %s (%s), want OK", s.State, s.Value)
		}
		return nil
	})

	if _, err := clientAs(t, "telemetry", "agent").CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the telemetry agent cannot list pods: %v", err)
	}
	stop := make(chan struct{})
	flood := listPods(clientAs(t, "telemetry", "agent"), 8, 0, stop)
	trickle := listPods(clientAs(t, "payments", "web"), 1, 500*time.Millisecond, stop)

	var fired *v1alpha1.LoadShedPolicy
	eventually(t, func() error {
		got := get(t, "flood")
		s := podLists(got)
		if s.State != v1alpha1.TriggerFiring {
			return fmt.Errorf("pod-lists is %s at %s/s, want Firing", s.State, s.Value)
		}
		fired = got
		return nil
	})
	s := podLists(fired)
	if v := resource.MustParse(s.Value); v.Cmp(resource.MustParse("30")) <= 0 {
		t.Errorf("the trigger fired at %s/s, not above its threshold 30", s.Value)
	}
	if c := meta.FindStatusCondition(fired.Status.Conditions, v1alpha1.ConditionTriggered); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Triggered is not True while firing: %+v", c)
	}
	if fired.Status.Phase != v1alpha1.PhaseTriggered || !strings.HasPrefix(fired.Status.WorstSignal, "pod-lists ") {
		t.Errorf("phase %q, worst %q; want Triggered and pod-lists", fired.Status.Phase, fired.Status.WorstSignal)
	}
	eventually(t, func() error {
		got := get(t, "flood")
		if len(got.Status.Offenders) == 0 {
			return fmt.Errorf("no offender yet")
		}
		first := got.Status.Offenders[0]
		if first.User != "system:serviceaccount:telemetry:agent" || first.ServiceAccount != "telemetry/agent" ||
			len(first.DaemonSets) != 1 || first.DaemonSets[0] != "telemetry/agent" || first.InFlightSharePercent < 50 {
			return fmt.Errorf("first offender %+v; want telemetry/agent, its DaemonSet, most requests held", first)
		}
		return nil
	})

	close(stop)
	t.Logf("the flood made %d LISTs, the trickle %d", flood(), trickle())

	eventually(t, func() error {
		got := get(t, "flood")
		if s := podLists(got); s.State != v1alpha1.TriggerOK {
			return fmt.Errorf("after the flood, pod-lists is %s at %s/s, want OK", s.State, s.Value)
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionTriggered); c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("Triggered is not False after the flood: %+v", c)
		}
		return nil
	})

	// An event for each transition.
	eventually(t, func() error {
		list := &eventsv1.EventList{}
		if err := env.Client.List(ctx, list); err != nil {
			return err
		}
		reasons := map[string]bool{}
		for _, e := range list.Items {
			if e.Regarding.Name == "flood" {
				reasons[e.Reason] = true
			}
		}
		if !reasons[v1alpha1.EventTriggerFired] || !reasons[v1alpha1.EventTriggerCleared] {
			return fmt.Errorf("events on the policy: %v", reasons)
		}
		return nil
	})

	// Measuring who loads the API servers made no object: a dryRun policy
	// writes nothing but its status and events.
	list := &flowcontrolv1.FlowSchemaList{}
	if err := env.Client.List(ctx, list, client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}); err != nil {
		t.Fatal(err)
	}
	for _, fs := range list.Items {
		if fs.Name != shed.SelfProtectionName {
			t.Errorf("FlowSchema %s (role %s) made", fs.Name, fs.Labels[v1alpha1.LabelRole])
		}
	}
}
