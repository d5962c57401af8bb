// Package gitops tests what a GitOps tool's sync does to a DaemonSet that
// loadshed paused or is restoring, against a real kube-apiserver: the
// DaemonSet's manifest "from Git" is sent again, during the pause and during
// a restore wave, as Argo CD and Flux send it, with their defaults and with
// the settings docs/gitops.md gives; the test asserts what happens to the
// pause and counts the operator's writes to the DaemonSet.
//
// Neither tool runs here. Each request is the one the tool makes (the
// sources are cited in docs/gitops.md):
//   - Argo CD by default: `kubectl apply`, client-side, a three-way strategic
//     merge patch from the kubectl.kubernetes.io/last-applied-configuration
//     annotation, under the field manager argocd-controller;
//   - Argo CD with ServerSideApply=true, and Flux's kustomize-controller:
//     server-side apply with force (--force-conflicts), under argocd-controller
//     or kustomize-controller;
//   - with the documented settings (Argo CD's ignoreDifferences with
//     RespectIgnoreDifferences=true, Flux's .spec.ignore), the ignored paths
//     carry their live values, which is what both tools put in the request.
package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

const (
	namespace = "telemetry"
	name      = "node-agent"
	timeout   = 60 * time.Second
	// backoff is the policy's first backoff step; each next one doubles.
	backoff = 4 * time.Second
	// slack: overridden-at, from which a put-back's step is counted, is
	// written to the second.
	slack = time.Second
)

// manifest is the DaemonSet as a Git repository holds it: a node agent that
// runs on every Linux node of two architectures, whatever their taints.
const manifest = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
  namespace: telemetry
  labels:
    app.kubernetes.io/name: node-agent
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: node-agent
  template:
    metadata:
      labels:
        app.kubernetes.io/name: node-agent
    spec:
      serviceAccountName: agent
      nodeSelector:
        kubernetes.io/os: linux
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - key: kubernetes.io/arch
                operator: In
                values: [amd64, arm64]
      tolerations:
      - operator: Exists
      containers:
      - name: agent
        image: registry.example/node-agent:1.4.2
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {memory: 128Mi}
`

// The field managers of the tools.
const (
	argoCD = "argocd-controller"
	flux   = "kustomize-controller"
	// plainSSA is a tool applying without forcing (kubectl apply
	// --server-side without --force-conflicts).
	plainSSA = "gitops-tool"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{})
}

// TestAGitOpsSyncDuringAPauseAndAWave re-applies the DaemonSet's manifest as
// each tool would during a pause, then during a restore wave, and checks
// what survives and that the operator puts an overridden pause or wave back
// at most once per backoff step, never in a loop.
func TestAGitOpsSyncDuringAPauseAndAWave(t *testing.T) {
	g := setUp(t)

	// The pause.
	g.waitFor("the DaemonSet is paused", func(ds *appsv1.DaemonSet) error {
		if ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] == "" {
			return errors.New("not paused")
		}
		return nil
	})
	g.load.Stop()
	g.pauseOutcomes()

	// The restore: every trigger clears, the first wave (50%) starts and
	// is held on probation long enough for the syncs below.
	g.inflight.Store(0)
	g.waitFor("the first restore wave runs", func(ds *appsv1.DaemonSet) error {
		if ds.Annotations[v1alpha1.AnnotationWave] != "1" || !isWave(ds) {
			return fmt.Errorf("wave %q", ds.Annotations[v1alpha1.AnnotationWave])
		}
		return nil
	})
	g.waveOutcomes()

	// Four put-backs in all, each at least a step longer than the one
	// before; the pause record was never lost: deleting the policy gives
	// the DaemonSet back its scheduling exactly as in Git.
	g.checkPutBacks()
	g.deletePolicy()
	ds := g.get()
	want := parse(t, manifest)
	if !equality.Semantic.DeepEqual(ds.Spec.Template.Spec.NodeSelector, want.Spec.Template.Spec.NodeSelector) ||
		!equality.Semantic.DeepEqual(ds.Spec.Template.Spec.Affinity, want.Spec.Template.Spec.Affinity) {
		t.Errorf("after the policy's deletion the scheduling is %v / %+v, want as in Git", ds.Spec.Template.Spec.NodeSelector,
			ds.Spec.Template.Spec.Affinity)
	}
	for k := range ds.Annotations {
		if strings.HasPrefix(k, "loadshed.io/") {
			t.Errorf("annotation %s left after the policy's deletion", k)
		}
	}
}

// pauseOutcomes: during the pause, Argo CD's default sync, every tool with
// the documented settings, and a tool that does not force leave the pause
// as it is, and the operator writes nothing; a forced apply of the manifest
// (Flux, Argo CD with ServerSideApply=true) removes it, and the operator puts
// it back at once the first time, a backoff step later the second time.
func (g *gitops) pauseOutcomes() {
	t := g.t
	g.survives("Argo CD's default sync (client-side apply)", func() error { return g.clientSideApply(g.manifest()) })
	if g.result != nil {
		t.Errorf("Argo CD's default sync during the pause sent a patch, want none: the pause key is not in the " +
			"last-applied configuration")
	}
	g.survives("Argo CD with ignoreDifferences and RespectIgnoreDifferences, client-side",
		func() error { return g.clientSideApply(g.withLive()) })
	g.survives("Argo CD with ignoreDifferences and RespectIgnoreDifferences, ServerSideApply=true",
		func() error { return g.apply(argoCD, g.withLive(), true) })
	g.survives("Flux with .spec.ignore", func() error { return g.apply(flux, g.withLive(), true) })
	g.survives("a server-side apply without force", func() error {
		err := g.apply(plainSSA, g.manifest(), false)
		if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), controllers.FieldOwner) ||
			!strings.Contains(err.Error(), ".spec.template.spec.nodeSelector") {
			return fmt.Errorf("got %w, want a conflict with %s on .spec.template.spec.nodeSelector", err, controllers.FieldOwner)
		}
		t.Logf("a server-side apply without force: %v", err)
		return nil
	})

	g.overrides("Flux's default sync", flux, 1, 0)
	g.overrides("Flux's sync again at once", flux, 2, backoff)
}

// waveOutcomes: during a partial wave, the documented settings leave it as
// it is; Argo CD's default sync (the manifest sets a required node affinity,
// which a three-way patch puts back) and Flux's remove it, and each time the
// operator puts it back one backoff step after the last put-back at the
// earliest.
func (g *gitops) waveOutcomes() {
	g.survives("Argo CD with ignoreDifferences and RespectIgnoreDifferences, client-side",
		func() error { return g.clientSideApply(g.withLive()) })
	g.survives("Argo CD with ignoreDifferences and RespectIgnoreDifferences, ServerSideApply=true",
		func() error { return g.apply(argoCD, g.withLive(), true) })
	g.survives("Flux with .spec.ignore", func() error { return g.apply(flux, g.withLive(), true) })
	g.overrides("Argo CD's default sync (client-side apply)", "", 3, 2*backoff)
	g.overrides("Flux's default sync", flux, 4, 4*backoff)
}

// gitops is the running test: the cluster, the operator, the trigger's
// value and the operator's writes to the DaemonSet.
type gitops struct {
	t        *testing.T
	cs       *kubernetes.Clientset
	inflight *atomic.Int64
	load     *load
	writes   *writes
	policy   *v1alpha1.LoadShedPolicy
	// result is the DaemonSet as the last sync's request left it.
	result *appsv1.DaemonSet
	// putBacks are the operator's writes that put back an overridden
	// pause or wave, in order.
	putBacks []time.Time
}

// setUp creates the nodes and the DaemonSet as Argo CD first syncs it,
// starts the operator (counting its writes to the DaemonSet), a policy
// reading a trigger the test sets, and a flood from the DaemonSet's
// ServiceAccount, which the policy attributes and pauses.
func setUp(t *testing.T) *gitops {
	ctx := context.Background()
	g := &gitops{t: t, cs: kubernetes.NewForConfigOrDie(env.Config), inflight: &atomic.Int64{}, writes: &writes{}}
	create(t, objects()...)
	g.createAsArgoCD()

	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return counter{next: rt, writes: g.writes} }
	stop, err := env.StartOperator(cfg, operator.Options{Namespace: "loadshed-system", MetricsAddr: "0", ProbeAddr: "0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("the operator stopped with an error: %v", err)
		}
	})
	g.inflight.Store(512)
	g.policy = policy(fakePrometheus(t, g.inflight).URL)
	if err := env.Client.Create(ctx, g.policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.deletePolicy)
	g.load = startLoad(t)
	t.Cleanup(g.load.Stop)
	return g
}

// survives sends a sync and checks that the pause or wave in place stays,
// with its record, and that the operator writes nothing to the DaemonSet in
// the next three evaluations.
func (g *gitops) survives(what string, send func() error) {
	t := g.t
	before := g.get()
	n := g.writes.count()
	g.result = nil
	if err := send(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	time.Sleep(3 * time.Second)
	after := g.get()
	if !equality.Semantic.DeepEqual(after.Spec.Template.Spec, before.Spec.Template.Spec) || !sameRecord(before, after) {
		t.Errorf("%s changed the pause: %v / %+v -> %v / %+v", what, before.Spec.Template.Spec.NodeSelector,
			before.Spec.Template.Spec.Affinity, after.Spec.Template.Spec.NodeSelector, after.Spec.Template.Spec.Affinity)
	}
	if w := g.writes.count() - n; w != 0 {
		t.Errorf("%s: the operator wrote the DaemonSet %d times, want 0", what, w)
	}
	t.Logf("%s: the pause (wave %s) stays; the operator wrote the DaemonSet 0 times", what,
		after.Annotations[v1alpha1.AnnotationWave])
}

// overrides sends the manifest as a tool's default sync does (forced
// server-side apply under manager, or Argo CD's client-side apply when
// manager is ""), checks that it removes the pause or wave, and that the
// operator puts it back once, not before step after the last put-back,
// counting it as the n-th override.
func (g *gitops) overrides(what, manager string, n int, step time.Duration) {
	t := g.t
	g.result = nil
	var err error
	if manager == "" {
		err = g.clientSideApply(g.manifest())
	} else {
		err = g.apply(manager, g.manifest(), true)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	ds := g.result
	if ds == nil {
		t.Fatalf("%s sent no request", what)
	}
	if isPaused(ds) {
		t.Fatalf("%s did not remove the pause: %v / %+v", what, ds.Spec.Template.Spec.NodeSelector,
			ds.Spec.Template.Spec.Affinity)
	}
	removed := time.Now()
	before := g.writes.count()
	g.waitFor(what+": the operator puts the pause back", func(ds *appsv1.DaemonSet) error {
		if !isPaused(ds) {
			return errors.New("not put back yet")
		}
		return nil
	})
	ds = g.get()
	at := g.writes.since(before)
	if len(at) != 1 {
		t.Errorf("%s: the operator wrote the DaemonSet %d times to put the pause back, want 1", what, len(at))
	}
	if got := ds.Annotations[v1alpha1.AnnotationOverrides]; got != fmt.Sprint(n) {
		t.Errorf("%s: %s = %q, want %d", what, v1alpha1.AnnotationOverrides, got, n)
	}
	if len(at) > 0 {
		putBack := at[len(at)-1]
		if len(g.putBacks) > 0 {
			if since := putBack.Sub(g.putBacks[len(g.putBacks)-1]); since < step-slack {
				t.Errorf("%s: put back %v after the last put-back, within its backoff step %v", what, since, step)
			}
		}
		g.putBacks = append(g.putBacks, putBack)
		t.Logf("%s: removed the pause (wave %s); the operator put it back %v later, with 1 write (override %d)",
			what, ds.Annotations[v1alpha1.AnnotationWave], putBack.Sub(removed).Round(100*time.Millisecond), n)
	}
}

// checkPutBacks logs the operator's writes to the DaemonSet: the pause, the
// put-backs and the first wave, and nothing else.
func (g *gitops) checkPutBacks() {
	t := g.t
	all := g.writes.since(0)
	// The pause, 2 put-backs, the first wave, 2 put-backs.
	if len(all) != 6 {
		t.Errorf("the operator wrote the DaemonSet %d times, want 6 (pause, 4 put-backs, first wave)", len(all))
	}
	for i := 1; i < len(g.putBacks); i++ {
		gap := g.putBacks[i].Sub(g.putBacks[i-1]).Round(100 * time.Millisecond)
		t.Logf("put-back %d came %v after put-back %d", i+1, gap, i)
	}
	t.Logf("the operator's writes to the DaemonSet over %v: %d", time.Since(all[0]).Round(time.Second), len(all))
}

// isPaused reports whether the template carries the pause or a partial
// wave's node affinity.
func isPaused(ds *appsv1.DaemonSet) bool {
	return ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] != "" || isWave(ds)
}

// isWave reports whether the template's required node affinity names nodes
// by hostname, as a partial wave does (the manifest's selects architectures).
func isWave(ds *appsv1.DaemonSet) bool {
	a := ds.Spec.Template.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, e := range term.MatchExpressions {
			if e.Key == corev1.LabelHostname {
				return true
			}
		}
	}
	return false
}

// sameRecord reports whether two states of the DaemonSet carry the same
// pause record.
func sameRecord(a, b *appsv1.DaemonSet) bool {
	for _, k := range []string{v1alpha1.AnnotationPausedBy, v1alpha1.AnnotationOriginal, v1alpha1.AnnotationWave,
		v1alpha1.AnnotationAttempt, v1alpha1.AnnotationOverrides} {
		if a.Annotations[k] != b.Annotations[k] {
			return false
		}
	}
	return true
}

func (g *gitops) get() *appsv1.DaemonSet {
	g.t.Helper()
	ds, err := g.cs.AppsV1().DaemonSets(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		g.t.Fatal(err)
	}
	return ds
}

func (g *gitops) waitFor(what string, check func(*appsv1.DaemonSet) error) {
	g.t.Helper()
	err := testutil.Poll(timeout, 100*time.Millisecond, func() error {
		ds, err := g.cs.AppsV1().DaemonSets(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return check(ds)
	})
	if err != nil {
		got := &v1alpha1.LoadShedPolicy{}
		_ = env.Client.Get(context.Background(), client.ObjectKeyFromObject(g.policy), got)
		g.t.Fatalf("%s: %v (policy: phase %s, actions %+v, blocked %+v)", what, err, got.Status.Phase, got.Status.Actions,
			got.Status.Blocked)
	}
}

func (g *gitops) deletePolicy() {
	ctx := context.Background()
	if err := env.Client.Delete(ctx, g.policy); client.IgnoreNotFound(err) != nil {
		g.t.Fatal(err)
	}
	err := testutil.Poll(timeout, 200*time.Millisecond, func() error {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(g.policy), &v1alpha1.LoadShedPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("policy still there (%w)", err)
	})
	if err != nil {
		g.t.Fatal(err)
	}
}

// manifest returns the manifest as JSON, as a tool sends it.
func (g *gitops) manifest() map[string]any {
	g.t.Helper()
	var u map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &u); err != nil {
		g.t.Fatal(err)
	}
	return u
}

// withLive returns the manifest with the live values of the paths the
// documented settings ignore, as Argo CD (RespectIgnoreDifferences=true)
// and Flux (.spec.ignore, "adopt": loadshed writes with Update, so the tool
// is the only Apply manager) send it:
//   - the node selector key loadshed.io/paused, always;
//   - the required node affinity, while the DaemonSet has loadshed.io/paused-by.
func (g *gitops) withLive() map[string]any {
	t := g.t
	t.Helper()
	u, live := g.manifest(), g.get()
	if v := live.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]; v != "" {
		err := unstructured.SetNestedField(u, v, "spec", "template", "spec", "nodeSelector", v1alpha1.LabelPaused)
		if err != nil {
			t.Fatal(err)
		}
	}
	if shed.PausedBy(live) == "" {
		return u
	}
	required := any(nil)
	if a := live.Spec.Template.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		required = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	raw, err := json.Marshal(required)
	if err != nil {
		t.Fatal(err)
	}
	var value any
	if err := json.Unmarshal(raw, &value); err != nil {
		t.Fatal(err)
	}
	path := []string{"spec", "template", "spec", "affinity", "nodeAffinity",
		"requiredDuringSchedulingIgnoredDuringExecution"}
	if value == nil {
		unstructured.RemoveNestedField(u, path...)
	} else if err := unstructured.SetNestedField(u, value, path...); err != nil {
		t.Fatal(err)
	}
	return u
}

// apply sends u with server-side apply under manager, forced or not.
func (g *gitops) apply(manager string, u map[string]any, force bool) error {
	body, err := json.Marshal(u)
	if err != nil {
		return err
	}
	g.result, err = g.cs.AppsV1().DaemonSets(namespace).Patch(context.Background(), name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: manager, Force: ptr.To(force)})
	return err
}

// createAsArgoCD creates the DaemonSet as Argo CD's first sync does:
// kubectl apply, client-side, records the manifest in the last-applied
// annotation.
func (g *gitops) createAsArgoCD() {
	t := g.t
	ds := parse(t, manifest)
	raw, err := json.Marshal(g.manifest())
	if err != nil {
		t.Fatal(err)
	}
	ds.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: string(raw)}
	if _, err := g.cs.AppsV1().DaemonSets(namespace).Create(context.Background(), ds,
		metav1.CreateOptions{FieldManager: argoCD}); err != nil {
		t.Fatal(err)
	}
}

// clientSideApply sends u as `kubectl apply` (client-side) does, which is
// Argo CD's default: the three-way strategic merge patch between the
// last-applied annotation, u (with the annotation set to u) and the live
// object, under the manager argocd-controller; nothing when it is empty.
func (g *gitops) clientSideApply(u map[string]any) error {
	raw, err := json.Marshal(u)
	if err != nil {
		return err
	}
	modified := map[string]any{}
	if err := json.Unmarshal(raw, &modified); err != nil {
		return err
	}
	err = unstructured.SetNestedField(modified, string(raw), "metadata", "annotations", corev1.LastAppliedConfigAnnotation)
	if err != nil {
		return err
	}
	live := g.get()
	live.APIVersion, live.Kind = "apps/v1", "DaemonSet" // as kubectl reads it
	current, err := json.Marshal(live)
	if err != nil {
		return err
	}
	modifiedJSON, err := json.Marshal(modified)
	if err != nil {
		return err
	}
	meta, err := strategicpatch.NewPatchMetaFromStruct(&appsv1.DaemonSet{})
	if err != nil {
		return err
	}
	patch, err := strategicpatch.CreateThreeWayMergePatch([]byte(live.Annotations[corev1.LastAppliedConfigAnnotation]),
		modifiedJSON, current, meta, true)
	if err != nil || string(patch) == "{}" {
		return err
	}
	g.t.Logf("client-side apply: patch %s", patch)
	g.result, err = g.cs.AppsV1().DaemonSets(namespace).Patch(context.Background(), name, types.StrategicMergePatchType,
		patch, metav1.PatchOptions{FieldManager: argoCD})
	return err
}

func parse(t *testing.T, doc string) *appsv1.DaemonSet {
	t.Helper()
	ds := &appsv1.DaemonSet{}
	if err := yaml.Unmarshal([]byte(doc), ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// objects are the nodes (four Linux nodes the agent runs on, and a Windows
// node it does not), the namespaces and the agent's ServiceAccount, allowed
// to list pods (its flood).
func objects() []client.Object {
	objs := make([]client.Object, 0, 10)
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "loadshed-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "agent"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "list-pods-agent"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "list-pods"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: "agent"}}},
	)
	for i, os := range []string{"linux", "linux", "linux", "linux", "windows"} {
		n := fmt.Sprintf("node-%d", i)
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{
			corev1.LabelOSStable: os, corev1.LabelArchStable: "amd64", corev1.LabelHostname: n}}})
	}
	return objs
}

// policy pauses the agent as soon as the trigger the test sets fires and
// the agent's flood is attributed, restores it in two waves with a probation
// long enough for the wave's syncs, and backs off 4s, 8s, 16s...
func policy(prometheus string) *v1alpha1.LoadShedPolicy {
	d := func(v time.Duration) *metav1.Duration { return &metav1.Duration{Duration: v} }
	two := resource.MustParse("2")
	return &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "gitops"},
		Spec: v1alpha1.LoadShedPolicySpec{
			Interval: d(time.Second),
			Source: v1alpha1.MetricsSource{Type: v1alpha1.SourcePrometheus,
				Prometheus: &v1alpha1.PrometheusSource{URL: prometheus}},
			Targets: v1alpha1.Targets{NamespaceSelector: &v1alpha1.LabelSelector{
				MatchLabels: map[string]v1alpha1.LabelValue{corev1.LabelMetadataName: namespace}}},
			Triggers: []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests,
				Threshold: resource.MustParse("400"), For: d(0)}},
			Actions: v1alpha1.Actions{
				MinSharePercent: 50,
				Throttle:        v1alpha1.ThrottleAction{LimitResponse: v1alpha1.LimitResponseReject},
				Pause:           v1alpha1.PauseAction{MaxPaused: 1, After: d(0)},
			},
			Restore: v1alpha1.Restore{
				StableFor: d(2 * time.Second), Probation: d(2 * time.Minute), WavePercents: []int32{50, 100},
				Backoff: v1alpha1.Backoff{Initial: d(backoff), Multiplier: &two, Max: d(time.Minute),
					JitterPercent: ptr.To[int32](0)},
			},
		},
	}
}

// fakePrometheus answers every instant query with the value of inflight.
func fakePrometheus(t *testing.T, inflight *atomic.Int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		const answer = `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"%d"]}]}}`
		_, _ = fmt.Fprintf(w, answer, time.Now().Unix(), inflight.Load())
	}))
	t.Cleanup(srv.Close)
	return srv
}

// writes records when the operator wrote the DaemonSet.
type writes struct {
	mu sync.Mutex
	at []time.Time
}

func (w *writes) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.at)
}

// since returns the times of the writes after the first n.
func (w *writes) since(n int) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.at[n:]...)
}

// counter records each write the operator's client makes to the DaemonSet
// that the API server accepts.
type counter struct {
	next   http.RoundTripper
	writes *writes
}

func (c counter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	write := req.Method == http.MethodPut || req.Method == http.MethodPatch
	if err == nil && write && resp.StatusCode < 300 &&
		strings.HasSuffix(req.URL.Path, "/namespaces/"+namespace+"/daemonsets/"+name) {
		c.writes.mu.Lock()
		c.writes.at = append(c.writes.at, time.Now())
		c.writes.mu.Unlock()
	}
	return resp, err
}

// load lists pods as the agent's ServiceAccount from a few goroutines until
// stopped: the flood the policy attributes to the agent.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startLoad(t *testing.T) *load {
	t.Helper()
	cs, err := kubernetes.NewForConfig(testutil.AsServiceAccount(env.Config, namespace, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	l := &load{cancel: cancel}
	for range 4 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return l
}

// Stop stops the load and waits for it; stopping twice is fine.
func (l *load) Stop() {
	l.cancel()
	l.wg.Wait()
}
