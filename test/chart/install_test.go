package chart

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/test/helmtest"
	"github.com/loadshed/loadshed/test/testenv"
)

const (
	crdName        = "loadshedpolicies.loadshed.io"
	deploymentName = "loadshed-controller-manager"
	serviceAccount = "loadshed-controller-manager"
	timeout        = 2 * time.Minute
)

var deploymentKey = client.ObjectKey{Namespace: namespace, Name: deploymentName}

// operatorBinary builds cmd/manager once for the package's tests.
var operatorBinary = sync.OnceValues(func() (string, error) {
	return replay.BuildOperator(context.Background(), testenv.RepoRoot(), env.Dir())
})

// TestInstallUpgradeUninstall installs the chart, runs the operator's
// binary as the Deployment would (its ServiceAccount, its arguments), shows
// that a LoadShedPolicy is acted on, upgrades with changed values and shows
// the change landed and the operator still works, and uninstalls: the
// pre-delete hook gives everything back, and nothing of the chart or of
// loadshed is left.
func TestInstallUpgradeUninstall(t *testing.T) {
	h := newHelm(t, true)
	bin, err := operatorBinary()
	if err != nil {
		t.Fatal(err)
	}
	run(t, h, "install", release, chartDir(), "--namespace", namespace, "--create-namespace")
	eventually(t, "the CRD is established", crdEstablished)
	op := startLikeDeployment(t, bin, "operator-1")
	first := createPolicy(t, "chart-first")
	eventually(t, "the first policy is acted on", actedOn(first))
	crd, err := getCRD()
	if err != nil {
		t.Fatal(err)
	}

	run(t, h, "upgrade", release, chartDir(), "--namespace", namespace,
		"--set", "replicaCount=3", "--set", "extraArgs={--log-level=debug}")
	d := deployment(t)
	if *d.Spec.Replicas != 3 || !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--log-level=debug") {
		t.Fatalf("the upgrade did not land: replicas %d, args %v", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Args)
	}
	if upgraded, err := getCRD(); err != nil || upgraded.UID != crd.UID {
		t.Fatalf("the upgrade replaced or removed the CRD (and every policy with it): %v", err)
	}
	op.Stop() // the Deployment's new pods replace the old
	op = startLikeDeployment(t, bin, "operator-2")
	second := createPolicy(t, "chart-second")
	eventually(t, "the second policy is acted on after the upgrade", actedOn(second))
	eventually(t, "the first policy survived the upgrade", actedOn(first))

	before := leftovers(t)
	uninstall(t, h, bin, op)
	assertNothingLeft(t)
	t.Logf("objects of loadshed's before helm uninstall: %d (%v); after: 0", len(before), before)
}

// uninstall runs `helm uninstall`, playing the kubelet: the pre-delete
// hook's Job runs the operator's binary, and the operator is stopped once
// its Deployment is deleted.
func uninstall(t *testing.T, h *helmtest.Helm, bin string, op *replay.Operator) {
	t.Helper()
	jobs, err := helmtest.RunHookJobs(env.Config, helmtest.HookJobOptions{Namespace: namespace,
		Binaries: map[string]string{"/loadshed-operator": bin}, Dir: t.TempDir(), ProxyURL: env.ProxyURL()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := helmtest.StopWhenDeleted(env.Client, deploymentKey, op, timeout)
	out, err := h.Run(context.Background(), "uninstall", release, "--namespace", namespace, "--timeout", "3m")
	<-stopped
	if jerr := jobs.Stop(); jerr != nil {
		t.Errorf("running the hook Jobs: %v", jerr)
	}
	runs := jobs.Runs()
	for _, r := range runs {
		t.Logf("hook Job %s %v: err %v\n%s", r.Job, r.Args, r.Err, r.Output)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(runs) != 1 || runs[0].Job != "loadshed-uninstall" || runs[0].Err != nil {
		t.Fatalf("want one successful run of the Job loadshed-uninstall, got %+v", runs)
	}
}

// assertNothingLeft checks that nothing of the chart's or of loadshed's is
// left: CRD, cluster-scoped RBAC, admission policies, APF objects, and the
// chart's objects in the release namespace, which then goes away.
func assertNothingLeft(t *testing.T) {
	t.Helper()
	eventually(t, "the CRD is gone", func() error {
		_, err := getCRD()
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the CRD: %w", err)
		}
		return errors.New("the CRD is still there")
	})
	eventually(t, "nothing of loadshed's is left", func() error {
		if left := leftovers(t); len(left) > 0 {
			return fmt.Errorf("left after helm uninstall: %v", left)
		}
		return nil
	})
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := env.Client.Delete(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the release namespace, deleted, is gone", func() error {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(ns), ns)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading namespace %s: %w", namespace, err)
		}
		return fmt.Errorf("namespace %s is still there: %+v", namespace, ns.Status)
	})
}

// leftovers lists the objects of loadshed's in the cluster: cluster-scoped
// RBAC and admission policies named loadshed-*, FlowSchemas and
// PriorityLevelConfigurations labelled managed-by=loadshed, and what is
// named loadshed-* (or is Helm's record of the release) in its namespace.
func leftovers(t *testing.T) []string {
	t.Helper()
	managed := client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	in := client.InNamespace(namespace)
	lists := []struct {
		list client.ObjectList
		opts []client.ListOption
	}{
		{&rbacv1.ClusterRoleList{}, nil},
		{&rbacv1.ClusterRoleBindingList{}, nil},
		{&admissionregistrationv1.ValidatingAdmissionPolicyList{}, nil},
		{&admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}, nil},
		{&flowcontrolv1.FlowSchemaList{}, []client.ListOption{managed}},
		{&flowcontrolv1.PriorityLevelConfigurationList{}, []client.ListOption{managed}},
		{&corev1.ServiceAccountList{}, []client.ListOption{in}},
		{&rbacv1.RoleList{}, []client.ListOption{in}},
		{&rbacv1.RoleBindingList{}, []client.ListOption{in}},
		{&corev1.ServiceList{}, []client.ListOption{in}},
		{&appsv1.DeploymentList{}, []client.ListOption{in}},
		{&appsv1.ReplicaSetList{}, []client.ListOption{in}},
		{&corev1.PodList{}, []client.ListOption{in}},
		{&batchv1.JobList{}, []client.ListOption{in}},
		{&corev1.SecretList{}, []client.ListOption{in}},
	}
	left := make([]string, 0, len(lists))
	for _, c := range lists {
		left = append(left, loadshedObjects(t, c.list, c.opts...)...)
	}
	return left
}

// loadshedObjects lists the objects of a kind that are loadshed's: named
// loadshed* or sh.helm.release.v1.loadshed.*, or labelled as the release's.
func loadshedObjects(t *testing.T, list client.ObjectList, opts ...client.ListOption) []string {
	t.Helper()
	if err := env.Client.List(context.Background(), list, opts...); err != nil {
		t.Fatal(err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, item := range items {
		o := item.(client.Object)
		name := o.GetName()
		if strings.HasPrefix(name, "loadshed") || strings.HasPrefix(name, "sh.helm.release.v1."+release+".") ||
			o.GetLabels()["app.kubernetes.io/instance"] == release {
			out = append(out, fmt.Sprintf("%T %s/%s", o, o.GetNamespace(), name))
		}
	}
	return out
}
