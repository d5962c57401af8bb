package kubectl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/test/testenv"
)

// The binaries, built once for the package with hack/build.sh, as they ship.
var (
	pluginBinary = sync.OnceValues(func() (string, error) {
		return replay.BuildPlugin(context.Background(), testenv.RepoRoot(), env.Dir())
	})
	operatorBinary = sync.OnceValues(func() (string, error) {
		return replay.BuildOperator(context.Background(), testenv.RepoRoot(), env.Dir())
	})
)

// The people who run the plugin: ServiceAccounts in the ops namespace
// bound to config/kubectl's ClusterRoles, and nothing more.
const (
	viewer   = "loadshed-kubectl-view"
	releaser = "loadshed-kubectl-release"
)

// kubeconfigs maps each person to a kubeconfig with their token, made once.
var kubeconfigs = sync.OnceValues(func() (map[string]string, error) {
	ctx := context.Background()
	objs, err := testenv.ReadObjects("config/kubectl/rbac.yaml")
	if err != nil {
		return nil, err
	}
	if err := env.Apply(ctx, objs...); err != nil {
		return nil, err
	}
	ops := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ops"}}
	if err := env.Client.Create(ctx, ops); client.IgnoreAlreadyExists(err) != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, role := range []string{viewer, releaser} {
		for _, o := range []client.Object{
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: role}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "ops", Name: role}}},
		} {
			if err := env.Client.Create(ctx, o); client.IgnoreAlreadyExists(err) != nil {
				return nil, err
			}
		}
		token, err := replay.ServiceAccountToken(ctx, env.Config, "ops", role)
		if err != nil {
			return nil, err
		}
		out[role] = filepath.Join(env.Dir(), role+".kubeconfig")
		if err := replay.WriteKubeconfig(out[role], env.Config, token, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
})

// result is one run of the plugin.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// plugin runs kubectl-loadshed as who, with args, and logs what it printed.
func plugin(t *testing.T, who string, args ...string) result {
	t.Helper()
	r := quietly(t, who, args...)
	t.Logf("$ kubectl loadshed %s  # as %s\n%s%s", strings.Join(args, " "), who, r.stdout, r.stderr)
	return r
}

// quietly runs kubectl-loadshed as who, with args.
func quietly(t *testing.T, who string, args ...string) result {
	t.Helper()
	bin, err := pluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	kcs, err := kubeconfigs()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kcs[who]}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustSay fails unless the output has every one of want.
func mustSay(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("the plugin failed:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("the output does not say %q:\n%s", w, r.stdout)
		}
	}
}

// startOperator runs the shipped operator as its own process, under its
// ServiceAccount with config/'s RBAC and admission policies, with leader
// election on its default Lease (loadshed.io, the plugin's default) and
// short timings; it waits until it leads, and stops it when the test ends.
func startOperator(t *testing.T) {
	t.Helper()
	bin, err := operatorBinary()
	if err != nil {
		t.Fatal(err)
	}
	op, err := replay.StartOperator(context.Background(), env.Client, env.Config, replay.OperatorOptions{
		Root: testenv.RepoRoot(), Namespace: "loadshed-system", ServiceAccount: operator.DefaultServiceAccount,
		Dir: t.TempDir(), Binary: bin, ProxyURL: env.ProxyURL(),
		LeaderElection: &replay.LeaderElection{LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second,
			RetryPeriod: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Stop)
	env.Eventually(t, "the operator leads", func() error {
		l := &coordinationv1.Lease{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: "loadshed-system",
			Name: operator.DefaultLeaderElectionID}, l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return errors.New("no holder")
		}
		return nil
	})
}

// daemonSet creates a DaemonSet whose pods no node runs (a nodeSelector
// no node matches), labelled as given.
func daemonSet(t *testing.T, namespace, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := env.Client.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	sel := map[string]string{"app": name}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"example.com/pool": "none"},
				Containers:   []corev1.Container{{Name: name, Image: "registry.example/" + name + ":1"}},
			}},
		},
	}
	if err := env.Client.Create(ctx, ds); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// pausedBy waits until telemetry/agent is paused by the policy.
func pausedBy(t *testing.T, policyName string) {
	t.Helper()
	env.Eventually(t, "telemetry/agent is paused by "+policyName, func() error {
		if by := env.GetDS(t).Annotations[v1alpha1.AnnotationPausedBy]; by != policyName {
			return fmt.Errorf("paused by %q", by)
		}
		return nil
	})
}
