package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/manifests"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/helmtest"
	"github.com/loadshed/loadshed/test/testenv"
)

// uninstallProbation is each wave's probation in the uninstall tests: long
// enough that the first DaemonSet is still mid-restore, and the other
// still paused, when the uninstall deletes the policy.
const uninstallProbation = 60 * time.Second

// kubectlPath is the kubectl the control plane build made beside
// kube-apiserver.
func kubectlPath(t *testing.T) string {
	t.Helper()
	assets := os.Getenv("LOADSHED_ASSETS")
	bin := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(bin); assets == "" || err != nil {
		t.Fatalf("no kubectl in LOADSHED_ASSETS=%q: run `make test` (it builds kubectl with the control plane)", assets)
	}
	return bin
}

// runMake runs a make target of the repository as a person would, with
// kubectl and the kubeconfig pointed at the test's control plane.
func runMake(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig(), "KUBECTL="+kubectlPath(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// midRestore starts the crash test's flood and operator process with a
// long probation, and waits until one DaemonSet is in a restore wave while
// the other is still paused; it returns the crash test and a description
// of that state.
func midRestore(t *testing.T, name string, procs *processes) *crashTest {
	t.Helper()
	s := startCrashTestWith(t, name, procs, "agent-b")
	// The operator writes the policy too (its finalizer, its status).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := env.GetPolicy(t, name)
		p.Spec.Restore.Probation = &metav1.Duration{Duration: uninstallProbation}
		return env.Client.Update(context.Background(), p)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.waitAllPaused()
	env.Eventually(t, "one DaemonSet is mid-restore and the other paused", func() error {
		var waves []int
		for _, a := range s.agents {
			r := s.history.latest(a)
			if r.pausedBy != name {
				return fmt.Errorf("%s is %s", a, r)
			}
			waves = append(waves, r.wave)
		}
		slices.Sort(waves)
		if waves[0] != 0 || waves[1] == 0 {
			return fmt.Errorf("waves %v: %s", waves, s.describe())
		}
		return nil
	})
	t.Logf("before the uninstall: %s", s.describe())
	return s
}

// loadshedObjects counts what of loadshed's is in the cluster: the objects
// the install put there (rendered, each looked up), the policies, and what
// the policies made (FlowSchemas and priority levels labelled as
// loadshed's, DaemonSets carrying a loadshed.io annotation or the pause).
func loadshedObjects(t *testing.T, installed []*unstructured.Unstructured) map[string]int {
	t.Helper()
	ctx := context.Background()
	counts := map[string]int{}
	for _, o := range installed {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(o.GroupVersionKind())
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(o), u)
		switch {
		case err == nil:
			counts["installed "+o.GetKind()]++
		case !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err):
			t.Fatal(err)
		}
	}
	var policies v1alpha1.LoadShedPolicyList
	if err := env.Client.List(ctx, &policies); err == nil {
		counts["LoadShedPolicy"] = len(policies.Items)
	}
	mine := client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	fss, plcs := &flowcontrolv1.FlowSchemaList{}, &flowcontrolv1.PriorityLevelConfigurationList{}
	dss := &appsv1.DaemonSetList{}
	for _, l := range []client.ObjectList{fss, plcs, dss} {
		opts := []client.ListOption{mine}
		if l == dss {
			opts = nil
		}
		if err := env.Client.List(ctx, l, opts...); err != nil {
			t.Fatal(err)
		}
	}
	counts["FlowSchema of loadshed's"] = len(fss.Items)
	counts["PriorityLevelConfiguration of loadshed's"] = len(plcs.Items)
	for i := range dss.Items {
		ds := &dss.Items[i]
		_, paused := ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]
		if paused || hasLoadshedAnnotation(ds) {
			counts["DaemonSet carrying loadshed's record"]++
		}
	}
	for k, v := range counts {
		if v == 0 {
			delete(counts, k)
		}
	}
	return counts
}

func hasLoadshedAnnotation(ds *appsv1.DaemonSet) bool {
	for k := range ds.Annotations {
		if strings.HasPrefix(k, "loadshed.io/") {
			return true
		}
	}
	return false
}

// reinstallCRDs puts back the CRDs an uninstall removed, for the tests that
// run after it on this control plane.
func reinstallCRDs(t *testing.T) {
	t.Helper()
	crd := filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "loadshed.io_loadshedpolicies.yaml")
	objs, err := manifests.Read(crd)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	env.Eventually(t, "the LoadShedPolicy CRD serves again", func() error {
		return env.Client.List(context.Background(), &v1alpha1.LoadShedPolicyList{})
	})
}

// checkUninstalled checks that nothing of loadshed's is left and that each
// DaemonSet has its original pod template.
func checkUninstalled(t *testing.T, s *crashTest, before, after map[string]int) {
	t.Helper()
	t.Logf("loadshed's objects before the uninstall: %v", before)
	t.Logf("loadshed's objects after the uninstall: %v", after)
	if len(after) > 0 {
		t.Errorf("left after the uninstall: %v", after)
	}
	for name, original := range s.originals {
		got := &appsv1.DaemonSet{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(original), got); err != nil {
			t.Fatal(err)
		}
		checkTemplate(t, original, got)
		env.Eventually(t, name+" has all its pods back", podsOf(name, harness.NodeCount))
	}
}

// TestMakeUndeployGivesEverythingBackWhilePausedAndMidRestore deploys the
// operator with `make deploy`, runs the shipped binary as the deployed
// ServiceAccount (there is no kubelet to run the Deployment's pod), floods
// until it pauses two DaemonSets and restores one of them in waves, and
// runs `make undeploy` while one is mid-restore and the other paused.
// Afterwards both DaemonSets have their original pod template and nothing
// of loadshed's is left: no policy, no FlowSchema or priority level
// (self-protection included), no annotation, no CRD, no namespace.
func TestMakeUndeployGivesEverythingBackWhilePausedAndMidRestore(t *testing.T) {
	runMake(t, "deploy", "IMG=ghcr.io/loadshed/loadshed:test")
	out, err := exec.Command(kubectlPath(t), "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default")).Output()
	if err != nil {
		t.Fatal(err)
	}
	installed, err := readYAML(out)
	if err != nil {
		t.Fatal(err)
	}
	s := midRestore(t, "undeploy", runProcesses(t, nil))
	// Runs before the crash test's cleanups, which need the CRD.
	t.Cleanup(func() { reinstallCRDs(t) })
	before := loadshedObjects(t, installed)
	for _, want := range []string{"LoadShedPolicy", "FlowSchema of loadshed's", "DaemonSet carrying loadshed's record",
		"installed CustomResourceDefinition", "installed Namespace", "installed Deployment"} {
		if before[want] == 0 {
			t.Fatalf("before the uninstall, no %s: %v", want, before)
		}
	}
	t.Logf("make undeploy:\n%s", runMake(t, "undeploy"))
	checkUninstalled(t, s, before, loadshedObjects(t, installed))
}

// readYAML reads the objects of a multi-document YAML stream.
func readYAML(data []byte) ([]*unstructured.Unstructured, error) {
	f, err := os.CreateTemp("", "rendered-*.yaml")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return manifests.Read(f.Name())
}

// The release the Helm uninstall test installs, and where.
const (
	helmRelease   = "loadshed"
	helmNamespace = "loadshed-system"
)

// renderedKustomize renders config/default as `make deploy` would (with
// kubectl's kustomize: same objects, the image aside).
func renderedKustomize(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out, err := exec.Command(kubectlPath(t), "kustomize", filepath.Join(testenv.RepoRoot(), "config", "default")).Output()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := readYAML(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// removeInstalled deletes what config/default installs, the CRD and the
// namespace included, and waits until they are gone: the tests before
// this one applied its RBAC and admission policies, which a Helm install
// would refuse to take over.
func removeInstalled(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		if err := env.Client.Delete(ctx, o.DeepCopy()); client.IgnoreNotFound(err) != nil && !meta.IsNoMatchError(err) {
			t.Fatal(err)
		}
	}
	env.Eventually(t, "config/default's objects are gone", func() error {
		if left := loadshedObjects(t, objs); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
}

// TestHelmUninstallGivesEverythingBackWhilePausedAndMidRestore installs the
// chart with the pinned Helm, runs the shipped binary as the chart's
// Deployment would (its ServiceAccount and arguments; there is no kubelet),
// floods until it pauses two DaemonSets and restores one of them in waves,
// and runs `helm uninstall` while one is mid-restore and the other paused.
// The chart's pre-delete hook Job (run here as the kubelet would, with the
// same binary) gives everything back before Helm deletes the operator; then
// the namespace, which Helm does not delete, is deleted as docs/install.md
// says. Afterwards both DaemonSets have their original pod template and
// nothing of loadshed's is left.
func TestHelmUninstallGivesEverythingBackWhilePausedAndMidRestore(t *testing.T) {
	ctx := context.Background()
	removeInstalled(t, renderedKustomize(t))
	h, err := helmtest.New(helmtest.Tool(t, helmtest.HelmEnv), env.Config, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(testenv.RepoRoot(), "charts", "loadshed")
	out, err := h.Run(ctx, "template", helmRelease, chart, "--namespace", helmNamespace)
	if err != nil {
		t.Fatal(err)
	}
	installed, err := readYAML([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	installed = append(installed, namespaceObject(helmNamespace))
	if _, err = h.Run(ctx, "install", helmRelease, chart, "--namespace", helmNamespace, "--create-namespace"); err != nil {
		t.Fatal(err)
	}
	bin, err := operatorBinary()
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := helmtest.RunHookJobs(env.Config, helmtest.HookJobOptions{Namespace: helmNamespace,
		Binaries: map[string]string{"/loadshed-operator": bin}, Dir: t.TempDir(), ProxyURL: env.ProxyURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hooks.Stop() }()
	procs := runProcesses(t, nil)
	deployment := client.ObjectKey{Namespace: helmNamespace, Name: "loadshed-controller-manager"}
	procs.launch = func(opts replay.OperatorOptions) (*replay.Operator, error) {
		return helmtest.StartLikeDeployment(ctx, env.Client, env.Config, deployment, opts)
	}
	s := midRestore(t, "helm-uninstall", procs)
	t.Cleanup(func() { reinstallCRDs(t) })
	before := loadshedObjects(t, installed)
	for _, want := range []string{"LoadShedPolicy", "FlowSchema of loadshed's", "DaemonSet carrying loadshed's record",
		"installed CustomResourceDefinition", "installed Deployment", "installed ValidatingAdmissionPolicy"} {
		if before[want] == 0 {
			t.Fatalf("before the uninstall, no %s: %v", want, before)
		}
	}
	if out, err = h.Run(ctx, "uninstall", helmRelease, "--namespace", helmNamespace, "--wait"); err != nil {
		t.Fatalf("%v\nhook runs: %+v", err, hooks.Runs())
	}
	t.Logf("helm uninstall:\n%s", out)
	for _, r := range hooks.Runs() {
		t.Logf("hook Job %s %v:\n%s", r.Job, r.Args, r.Output)
	}
	if err := env.Client.Delete(ctx, namespaceObject(helmNamespace)); err != nil {
		t.Fatal(err)
	}
	env.Eventually(t, "the namespace is gone", func() error {
		err := env.Client.Get(ctx, client.ObjectKey{Name: helmNamespace}, &corev1.Namespace{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
	checkUninstalled(t, s, before, loadshedObjects(t, installed))
}

func namespaceObject(name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName(name)
	return u
}

// TestTheSelfProtectionFlowSchemaGoesWithTheCRD removes the CRD without
// `loadshed-operator uninstall`, as `kubectl delete -f install.yaml` would,
// while the shipped binary runs: kube-controller-manager's garbage collector
// deletes the exempt self-protection FlowSchema, which names the CRD as its
// owner, so that it exempts no later owner of the ServiceAccount's name.
func TestTheSelfProtectionFlowSchemaGoesWithTheCRD(t *testing.T) {
	ctx := context.Background()
	procs := runProcesses(t, nil)
	procs.start("operator-gc")
	fs := &flowcontrolv1.FlowSchema{}
	key := client.ObjectKey{Name: shed.SelfProtectionName}
	env.Eventually(t, "the self-protection FlowSchema is owned by the CRD", func() error {
		if err := env.Client.Get(ctx, key, fs); err != nil {
			return err
		}
		if len(fs.OwnerReferences) != 1 || fs.OwnerReferences[0].Name != operator.CRDName {
			return fmt.Errorf("owners %+v", fs.OwnerReferences)
		}
		return nil
	})
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	crd.SetName(operator.CRDName)
	if err := env.Client.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reinstallCRDs(t) })
	env.Eventually(t, "the garbage collector deletes the self-protection FlowSchema", func() error {
		if err := env.Client.Get(ctx, key, &flowcontrolv1.FlowSchema{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
}
