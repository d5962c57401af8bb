package replay

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The application the drain and the rollout work on: a Deployment with
// appPodsPerNode pods per Node, spread over the Nodes.
const (
	appName        = "web"
	appPodsPerNode = 2
)

var appLabels = map[string]string{"app.kubernetes.io/name": appName}

func appDeployment(replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: shopNamespace, Name: appName, Labels: appLabels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: appLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: appLabels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: appName, Image: "registry.example/web:1.0.0"}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector: &metav1.LabelSelector{MatchLabels: appLabels},
					}},
				},
			},
		},
	}
}

// prepareApp creates the application and waits until all its pods are
// running.
func prepareApp(ctx context.Context, env *BurstEnv) error {
	replicas := int32(appPodsPerNode * env.Nodes)
	if err := createAll(ctx, env.Client, []client.Object{appDeployment(replicas)}); err != nil {
		return err
	}
	if err := waitForApp(ctx, env.Admin, 3*time.Minute); err != nil {
		return err
	}
	env.Say("%s/%s: %d pods running", shopNamespace, appName, replicas)
	return nil
}

// waitForApp waits until the application's rollout is complete: every
// replica updated, no old one left, and every pod running. Not "available":
// at 50 nodes, pods on kwok's fake nodes were seen turning Ready=False with
// their containers ready and no reason (the mark kube-controller-manager's
// node lifecycle controller leaves; not confirmed which writer it was),
// which stalled availability for minutes without changing the load a
// rollout puts on the API servers, which is what the burst is for.
func waitForApp(ctx context.Context, cs kubernetes.Interface, timeout time.Duration) error {
	var last appsv1.DeploymentStatus
	running := 0
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(shopNamespace).Get(ctx, appName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		last = d.Status
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want || d.Status.Replicas != want {
			return false, nil
		}
		if running, err = runningAppPods(ctx, cs, nil); err != nil {
			return false, nil
		}
		return running >= int(want), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s/%s's pods (status %+v, %d running): %w", shopNamespace, appName, last, running, err)
	}
	return nil
}

// runningAppPods counts the application's running pods, not deleting and
// not on a node in skip.
func runningAppPods(ctx context.Context, cs kubernetes.Interface, skip map[string]bool) (int, error) {
	pods, err := cs.CoreV1().Pods(shopNamespace).List(ctx, metav1.ListOptions{LabelSelector: labels.FormatLabels(appLabels)})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && !skip[p.Spec.NodeName] {
			n++
		}
	}
	return n, nil
}

// rolloutBurst is a rolling update of the application (`kubectl rollout
// restart`): kube-controller-manager replaces every pod, 25% at a time,
// the scheduler places the new ones and kwok runs them.
type rolloutBurst struct{}

func (rolloutBurst) Name() string { return BurstRollout }

func (rolloutBurst) Describe(env *BurstEnv) string {
	return fmt.Sprintf("a rolling update of %s/%s replaces its %d pods", shopNamespace, appName, appPodsPerNode*env.Nodes)
}

func (rolloutBurst) Prepare(ctx context.Context, env *BurstEnv) error { return prepareApp(ctx, env) }

func (rolloutBurst) Run(ctx context.Context, env *BurstEnv) error {
	began := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		began.Format(time.RFC3339))
	_, err := env.Admin.AppsV1().Deployments(shopNamespace).Patch(ctx, appName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("updating %s/%s: %w", shopNamespace, appName, err)
	}
	if err := waitForApp(ctx, env.Admin, burstLimit*env.For); err != nil {
		return err
	}
	env.Say("%s: %s/%s rolled out in %v", BurstRollout, shopNamespace, appName, time.Since(began).Round(time.Second))
	return nil
}

// drainBurst cordons a fraction of the Nodes, then drains them parallel
// at a time, as ops/drainer (`kubectl drain --ignore-daemonsets`): every pod
// but the DaemonSets' is evicted through the Eviction API and the drain
// waits until it is gone; the Deployment controller and the scheduler
// put the application's pods on the other Nodes. Once the application is
// whole again, the Nodes are uncordoned.
type drainBurst struct {
	fraction float64
	parallel int
}

const (
	opsDrainer = "drainer"
	// drainParallel is how many Nodes are drained at once.
	drainParallel = 10
)

func (drainBurst) Name() string { return BurstDrain }

func (d drainBurst) Describe(env *BurstEnv) string {
	return fmt.Sprintf("%s/%s cordons and drains %d of %d nodes, %d at a time", opsNamespace, opsDrainer,
		d.nodes(env), env.Nodes, d.parallel)
}

func (d drainBurst) nodes(env *BurstEnv) int { return max(1, int(float64(env.Nodes)*d.fraction)) }

func (drainBurst) Prepare(ctx context.Context, env *BurstEnv) error {
	objs := serviceAccountWith(opsNamespace, opsDrainer,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{verbGet, "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{verbGet, verbList}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}})
	if err := createAll(ctx, env.Client, objs); err != nil {
		return err
	}
	return prepareApp(ctx, env)
}

func (d drainBurst) Run(ctx context.Context, env *BurstEnv) error {
	cs, err := clientAs(ctx, env.Admin, env.Base, opsNamespace, opsDrainer)
	if err != nil {
		return err
	}
	began := time.Now()
	drained := map[string]bool{}
	for i := range d.nodes(env) {
		drained[fmt.Sprintf("node-%03d", i)] = true
	}
	// As a node pool upgrade does: cordon every Node to drain first, so
	// the evicted pods land on the Nodes that stay.
	for node := range drained {
		if err := setUnschedulable(ctx, cs, node, true); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.parallel)
	for node := range drained {
		g.Go(func() error { return drainNode(gctx, cs, node) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	env.Say("%s: %d nodes drained in %v", BurstDrain, len(drained), time.Since(began).Round(100*time.Millisecond))
	if err := waitForAppOff(ctx, env.Admin, drained, appPodsPerNode*env.Nodes, burstLimit*env.For); err != nil {
		return err
	}
	env.Say("%s: %s/%s whole again on the other nodes %v after the drain began", BurstDrain, shopNamespace, appName,
		time.Since(began).Round(100*time.Millisecond))
	for node := range drained {
		if err := setUnschedulable(ctx, cs, node, false); err != nil {
			return err
		}
	}
	return nil
}

// waitForAppOff waits until want of the application's pods run on nodes
// other than those in drained.
func waitForAppOff(ctx context.Context, cs kubernetes.Interface, drained map[string]bool, want int, timeout time.Duration) error {
	running := 0
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := runningAppPods(ctx, cs, drained)
		if err != nil {
			return false, nil
		}
		running = n
		return running >= want, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d pods of %s/%s off the drained nodes (%d): %w", want, shopNamespace, appName, running, err)
	}
	return nil
}

func setUnschedulable(ctx context.Context, cs kubernetes.Interface, node string, on bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("setting %s unschedulable to %t: %w", node, on, err)
	}
	return nil
}

// drainNode does what `kubectl drain --ignore-daemonsets` does: cordon,
// evict every pod on the Node that no DaemonSet owns, and wait until they
// are gone. It lists the Node again until nothing is left to evict: a pod
// the scheduler bound before it saw the cordon arrives after the first
// list (kubectl drain would leave it; the next drain of the Node would
// not).
func drainNode(ctx context.Context, cs kubernetes.Interface, node string) error {
	if err := setUnschedulable(ctx, cs, node, true); err != nil {
		return err
	}
	for {
		evicted, err := evictAll(ctx, cs, node)
		if err != nil || evicted == 0 {
			return err
		}
	}
}

// evictAll evicts the pods on node that no DaemonSet owns and waits until
// they are gone; it returns how many it evicted.
func evictAll(ctx context.Context, cs kubernetes.Interface, node string) (int, error) {
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return 0, fmt.Errorf("listing the pods on %s: %w", node, err)
	}
	var evicted []corev1.Pod
	for _, p := range pods.Items {
		if ownedByDaemonSet(&p) || p.DeletionTimestamp != nil {
			continue
		}
		if err := evict(ctx, cs, &p); err != nil {
			return 0, err
		}
		evicted = append(evicted, p)
	}
	for _, p := range evicted {
		if err := waitForDelete(ctx, cs, &p); err != nil {
			return 0, err
		}
	}
	return len(evicted), nil
}

func ownedByDaemonSet(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	return c != nil && c.Kind == "DaemonSet"
}

// evict asks the Eviction API to evict p, again every 5 seconds while a
// disruption budget forbids it (HTTP 429), as kubectl drain does.
func evict(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) error {
	e := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
	for {
		err := cs.CoreV1().Pods(p.Namespace).EvictV1(ctx, e)
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsTooManyRequests(err):
			return fmt.Errorf("evicting %s/%s: %w", p.Namespace, p.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// waitForDelete waits until p is gone (or replaced by a pod of the same
// name), polling every second as kubectl drain does.
func waitForDelete(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) error {
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && cur.UID != p.UID, nil
	})
}
