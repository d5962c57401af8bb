package localcluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

func assets(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`")
	}
	return dir
}

func runningPods(ctx context.Context, cs *kubernetes.Clientset, want int) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) {
		running, total, err := RunningPods(ctx, cs, "telemetry")
		if err != nil {
			return false, nil
		}
		return running == want && total == want, nil
	}
}

// startWithAll starts a cluster with every component, stopped when the
// test ends.
func startWithAll(t *testing.T) *Cluster {
	t.Helper()
	c, err := Start(Options{Assets: assets(t), Components: []string{"kube-controller-manager", "kube-scheduler", "kwok"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	return c
}

// TestADaemonSetGetsRunningPodsOnFakeNodes: with kube-controller-manager,
// kube-scheduler and kwok, a DaemonSet's pods reach Running on every fake
// Node, a node selector no Node matches removes them, and removing it
// brings them back, also after kube-controller-manager restarted.
func TestADaemonSetGetsRunningPodsOnFakeNodes(t *testing.T) {
	c := startWithAll(t)
	if _, err := os.Stat(c.Kubeconfig()); err != nil {
		t.Fatalf("no kubeconfig: %v", err)
	}
	ctx := context.Background()
	const nodes = 5
	if err := c.AddNodes(ctx, nodes); err != nil {
		t.Fatalf("the fake Nodes did not become Ready: %v", err)
	}
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}}},
			},
		},
	}
	if _, err := cs.AppsV1().DaemonSets("telemetry").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll := func(what string, cond func(context.Context) (bool, error)) {
		t.Helper()
		start := time.Now()
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, cond); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s after %v", what, time.Since(start).Round(10*time.Millisecond))
	}
	poll(fmt.Sprintf("%d pods Running", nodes), runningPods(ctx, cs, nodes))

	set := func(selector map[string]string) {
		t.Helper()
		// The DaemonSet controller writes status all along: retry on conflict.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := cs.AppsV1().DaemonSets("telemetry").Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Template.Spec.NodeSelector = selector
			_, err = cs.AppsV1().DaemonSets("telemetry").Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	set(map[string]string{"loadshed.io/paused": "test"})
	poll("every pod gone after a pause", runningPods(ctx, cs, 0))
	// The restore is up to a kube-controller-manager started again.
	if err := c.Restart("kube-controller-manager"); err != nil {
		t.Fatal(err)
	}
	set(nil)
	poll(fmt.Sprintf("%d pods Running again", nodes), runningPods(ctx, cs, nodes))
}

// TestTheAPIServerRestartsOnItsPortWithItsCertificates: after
// RestartAPIServer, with its usual clients connected, the admin's config
// (the same port and serving CA) and a ServiceAccount token issued before
// the restart still work, and what was stored before is still there.
func TestTheAPIServerRestartsOnItsPortWithItsCertificates(t *testing.T) {
	c := startWithAll(t)
	ctx := context.Background()
	if err := c.AddNodes(ctx, 3); err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(c.Config)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "before"}}
	if _, err := admin.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokenCfg := rest.AnonymousClientConfig(c.Config)
	tokenCfg.BearerToken = tr.Status.Token
	asSA := kubernetes.NewForConfigOrDie(tokenCfg)

	start := time.Now()
	stopped, err := c.RestartAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver %s, and answered again %v after the restart began", stopped, time.Since(start).Round(10*time.Millisecond))
	if _, err := admin.CoreV1().ServiceAccounts(sa.Namespace).Get(ctx, sa.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the admin's config after the restart: %v", err)
	}
	review, err := asSA.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token issued before the restart: %v", err)
	}
	if want := "system:serviceaccount:default:before"; review.Status.UserInfo.Username != want {
		t.Errorf("the token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
}
