package replay

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/loadshed/loadshed/internal/localcluster"
)

func TestRecorderKeepsLatencyAndErrorsPerSecond(t *testing.T) {
	start := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	r := NewRecorder(start)
	for i := 1; i <= 100; i++ {
		r.Observe(start.Add(100*time.Millisecond), time.Duration(i)*time.Millisecond, nil)
	}
	r.Observe(start.Add(2500*time.Millisecond), 3*time.Second, errors.New("timeout"))
	got := r.Seconds()
	if len(got) != 3 {
		t.Fatalf("%d seconds, want 3 (0, an empty 1, 2)", len(got))
	}
	if got[0].Requests != 100 || got[0].Errors != 0 || got[0].P99 != 99*time.Millisecond {
		t.Errorf("second 0 = %+v, want 100 requests, no error, p99 99ms", got[0])
	}
	if got[1].Requests != 0 || got[2].Errors != 1 || got[2].P99 != 3*time.Second {
		t.Errorf("seconds 1 and 2 = %+v %+v", got[1], got[2])
	}
}

// TestInnocentClientsMeasureTheirRequests runs the DNS-like and the
// controller-like clients, as ServiceAccounts with TokenRequest tokens,
// against a real API server for a few seconds.
func TestInnocentClientsMeasureTheirRequests(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts("kube-system").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "coredns"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts("shop").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "controller"}}, metav1.CreateOptions{}))
	must(cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "innocent"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}},
		}}, metav1.CreateOptions{}))
	must(cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "innocent"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "innocent"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "coredns"},
			{Kind: rbacv1.ServiceAccountKind, Namespace: "shop", Name: "controller"},
		}}, metav1.CreateOptions{}))

	runCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	dns, ctl := NewRecorder(time.Now()), NewRecorder(time.Now())
	errs := make(chan error, 2)
	go func() {
		errs <- RunDNSLike(runCtx, cs, c.Config, "coredns", Pace{Period: 100 * time.Millisecond, Timeout: 5 * time.Second}, dns)
	}()
	go func() {
		errs <- RunControllerLike(runCtx, cs, c.Config, "shop", "controller", Pace{Period: 100 * time.Millisecond}, ctl)
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]*Recorder{"dns-like": dns, "controller-like": ctl} {
		requests, failed := 0, 0
		for _, s := range r.Seconds() {
			requests += s.Requests
			failed += s.Errors
		}
		if requests < 5 || failed != 0 {
			t.Errorf("%s: %d requests, %d failed; want some, none failed", name, requests, failed)
		}
	}
}

func TestSeedConfigMapsMakesListsExpensive(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	if err := SeedConfigMaps(ctx, cs, "background", 50, 4096); err != nil {
		t.Fatal(err)
	}
	// Seeding twice keeps what exists.
	if err := SeedConfigMaps(ctx, cs, "background", 50, 4096); err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: "loadshed.io/replay=background"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 50 {
		t.Fatalf("%d ConfigMaps, want 50", len(list.Items))
	}
	if got := len(list.Items[0].Data["payload"]); got != 4096 {
		t.Errorf("a ConfigMap holds %d bytes, want 4096", got)
	}
}
