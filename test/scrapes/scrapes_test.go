// Package scrapes runs `kubectl loadshed top` and `kubectl loadshed record`
// as their own process, with a kubeconfig holding a ServiceAccount's token
// that has exactly the permissions docs/kubectl.md lists, against two
// kube-apiservers on one etcd (each published in default/kubernetes, read
// at its own address), while a ServiceAccount floods them with pod LISTs.
// The cluster has no loadshed CRD and no operator: both commands work
// without them.
package scrapes

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{APIServers: 2, NoCRDs: true})
}

// The ServiceAccounts the plugin runs as, in their namespace.
const (
	viewers  = "loadshed-viewers"
	topSA    = "top"
	recordSA = "recorder"
)

// pluginBinary builds cmd/kubectl-loadshed once for the package's tests,
// as it ships (hack/build.sh).
var pluginBinary = sync.OnceValues(func() (string, error) {
	return replay.BuildPlugin(context.Background(), testenv.RepoRoot(), env.Dir())
})

// world creates, once, the flooding ServiceAccount telemetry/agent allowed
// to list pods, its DaemonSet, and the plugin's ServiceAccounts with the
// permissions docs/kubectl.md says top and record need: top gets the two
// non-resource URLs, FlowSchemas and the EndpointSlices of default; record
// also DaemonSets and namespaces.
var world = sync.OnceValue(func() error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry",
			Labels: map[string]string{"team": "observability"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}},
		clusterRole("list-pods", list("", "pods")),
		clusterBinding("list-pods", "telemetry", "agent"),
		agentDaemonSet(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: viewers}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: viewers, Name: topSA}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: viewers, Name: recordSA}},
		clusterRole("loadshed-top",
			rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics", "/debug/api_priority_and_fairness/dump_requests"},
				Verbs: []string{"get"}},
			list("flowcontrol.apiserver.k8s.io", "flowschemas")),
		clusterBinding("loadshed-top", viewers, topSA, recordSA),
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "loadshed-endpoints"},
			Rules: []rbacv1.PolicyRule{list("discovery.k8s.io", "endpointslices")}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "loadshed-endpoints"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "loadshed-endpoints"},
			Subjects: subjects(viewers, topSA, recordSA)},
		clusterRole("loadshed-record", list("apps", "daemonsets"), list("", "namespaces")),
		clusterBinding("loadshed-record", viewers, recordSA),
	}
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
})

// list allows to list a resource.
func list(group, resource string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{resource}, Verbs: []string{"list"}}
}

func clusterRole(name string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
}

func clusterBinding(role, namespace string, names ...string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role + "-" + namespace},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: subjects(namespace, names...)}
}

func subjects(namespace string, names ...string) []rbacv1.Subject {
	out := make([]rbacv1.Subject, 0, len(names))
	for _, n := range names {
		out = append(out, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: n})
	}
	return out
}

// agentDaemonSet is the flooding agent's DaemonSet (no controller runs: it
// has no pods, only what a recording's snapshot keeps).
func agentDaemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"app": "agent"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent", Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{ServiceAccountName: "agent",
					Containers: []corev1.Container{{Name: "agent", Image: "registry.example/telemetry-agent:1"}}},
			},
		},
	}
}

// setUp creates the world, builds the plugin and starts the flood, which
// stops when the test ends; it returns the plugin's path.
func setUp(t *testing.T) string {
	t.Helper()
	if err := world(); err != nil {
		t.Fatal(err)
	}
	bin, err := pluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	load := harness.Env{Env: env}.StartLoad(t, "telemetry", 6, 0)
	t.Cleanup(load.Stop)
	time.Sleep(time.Second)
	return bin
}

// kubeconfig writes a kubeconfig holding a token of the viewers'
// ServiceAccount name, reaching the cluster (and each kube-apiserver at its
// published address) through the local cluster's proxy.
func kubeconfig(t *testing.T, name string) string {
	t.Helper()
	token, err := replay.ServiceAccountToken(context.Background(), env.Config, viewers, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := replay.WriteKubeconfig(path, env.Config, token, env.ProxyURL()); err != nil {
		t.Fatal(err)
	}
	return path
}

// plugin runs the plugin and returns what it wrote; a failure fails the
// test with its standard error.
func plugin(t *testing.T, bin, kc string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kc}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl-loadshed %v: %v\n%s", args, err, errOut.String())
	}
	return out.String(), errOut.String()
}

// adminThroughProxy is the admin configuration that reaches each
// kube-apiserver at its published address, as the plugin does.
func adminThroughProxy(t *testing.T) *rest.Config {
	t.Helper()
	proxy, err := url.Parse(env.ProxyURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Proxy = http.ProxyURL(proxy)
	return cfg
}

// noLoadshedAPI checks that the cluster serves no loadshed.io API.
func noLoadshedAPI(t *testing.T) {
	t.Helper()
	d, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := d.ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups {
		if g.Name == v1alpha1.GroupVersion.Group {
			t.Fatalf("the cluster serves %s: the test is of a cluster without loadshed", g.Name)
		}
	}
}

func both() []string {
	return []string{env.AdvertisedURL(0), env.AdvertisedURL(1)}
}

func sameStrings(a, b []string) error {
	if fmt.Sprint(a) != fmt.Sprint(b) {
		return fmt.Errorf("%v, want %v", a, b)
	}
	return nil
}
