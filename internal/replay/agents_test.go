package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/loadshed/loadshed/internal/localcluster"
)

// TestAgentsFollowTheDaemonSetsPods: one agent per pod, authenticated as
// the DaemonSet's ServiceAccount with a pod-bound token; pausing the
// DaemonSet stops them and restoring it starts them again.
func TestAgentsFollowTheDaemonSetsPods(t *testing.T) {
	c := startCluster(t, localcluster.Options{Components: []string{"kube-controller-manager", "kube-scheduler", "kwok"}})
	ctx := context.Background()
	const nodes = 3
	if err := c.AddNodes(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(c.Config)
	create := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}, metav1.CreateOptions{})
	create(err)
	_, err = cs.CoreV1().ServiceAccounts("telemetry").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}, metav1.CreateOptions{})
	create(err)
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
		}}, metav1.CreateOptions{})
	create(err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "telemetry"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "telemetry", Name: "agent"}}}, metav1.CreateOptions{})
	create(err)
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{ServiceAccountName: "agent", Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}}},
			},
		},
	}
	_, err = cs.AppsV1().DaemonSets("telemetry").Create(ctx, ds, metav1.CreateOptions{})
	create(err)

	agents := NewAgents(cs, c.Config, AgentOptions{Namespace: "telemetry", Selector: "app=agent", ServiceAccount: "agent",
		Work: Work{Path: "/api/v1/pods", Rate: 20, List: true}})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { agents.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()

	until := func(what string, cond func(Counts) bool) {
		t.Helper()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			return cond(agents.Counts()), nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, agents.Counts())
		}
		t.Logf("%s: %v", what, agents.Counts())
	}
	until(fmt.Sprintf("%d agents list pods", nodes), func(n Counts) bool { return n.Running == nodes && n.Requests > 3*nodes })
	if n := agents.Counts(); n.Errors != 0 {
		t.Errorf("the agents' requests failed: %v", n)
	}
	if n := agents.Counts(); n.Lists == 0 || n.Lists > n.Requests || n.Bytes == 0 || n.ListAttempts < n.Lists {
		t.Errorf("want every LIST counted, as sent and as attempted, and the bytes read: %v", n)
	}

	setSelector := func(sel map[string]string) {
		t.Helper()
		// The DaemonSet controller writes status all along: retry on conflict.
		create(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := cs.AppsV1().DaemonSets("telemetry").Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Template.Spec.NodeSelector = sel
			_, err = cs.AppsV1().DaemonSets("telemetry").Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}))
	}
	setSelector(map[string]string{"loadshed.io/paused": "test"})
	until("a pause stops every agent", func(n Counts) bool { return n.Running == 0 })
	before := agents.Counts().Requests
	setSelector(nil)
	until("a restore brings them back", func(n Counts) bool { return n.Running == nodes && n.Requests > before+3*nodes })

	// A new configuration: each agent GETs its own Node ({node}), which
	// only works if the path names a real one.
	agents.Set(Work{Path: "/api/v1/nodes/{node}", Rate: 20})
	before = agents.Counts().Requests
	sofar := agents.Counts()
	lists, attempts := sofar.Lists, sofar.ListAttempts
	until("the agents GET their Nodes", func(n Counts) bool { return n.Requests > before+3*nodes })
	if n := agents.Counts(); n.Errors != 0 {
		t.Errorf("GETting their own Nodes failed: %v", n)
	}
	// An agent that read its work just before the change may count one
	// more LIST.
	if n := agents.Counts(); n.Lists > lists+nodes || n.ListAttempts > attempts+nodes {
		t.Errorf("GETs counted as LISTs: %d LISTs of %d attempted before, %v", lists, attempts, n)
	}
	// Rate 0: idle. Requests are counted when sent: after a moment, none.
	agents.Set(Work{})
	var idle int64
	until("the agents go idle", func(n Counts) bool {
		settled := n.Requests == idle
		idle = n.Requests
		return settled
	})
	time.Sleep(time.Second) // 20 requests per agent, had they gone on
	if n := agents.Counts(); n.Requests != idle {
		t.Errorf("idle agents sent %d requests in a second", n.Requests-idle)
	}
}
