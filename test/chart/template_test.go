// Package chart tests charts/loadshed with the pinned Helm: lint, the
// rendered objects against `kustomize build config/default`, and install,
// upgrade and uninstall on a local kube-apiserver with the operator's
// binary running beside it as the chart's ServiceAccount.
package chart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/test/helmtest"
	"github.com/loadshed/loadshed/test/testenv"
)

const (
	release   = "loadshed"
	namespace = "loadshed-system"
)

func chartDir() string { return filepath.Join(testenv.RepoRoot(), "charts", "loadshed") }

func TestLintIsClean(t *testing.T) {
	h := newHelm(t, false)
	for _, set := range []string{"", "serviceMonitor.enabled=true,prometheusRule.enabled=true"} {
		args := []string{"lint", "--strict", chartDir()}
		if set != "" {
			args = append(args, "--set", set)
		}
		if out, err := h.Run(context.Background(), args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// objectKey names an object: kind, namespace, name.
type objectKey struct{ kind, namespace, name string }

func (k objectKey) String() string { return k.kind + " " + k.namespace + "/" + k.name }

func TestTemplateRendersConfigDefault(t *testing.T) {
	chart := render(t, helmTemplate(t))
	kust := render(t, kustomizeBuild(t, "config/default"))

	// Exception 1: the chart runs `loadshed-operator uninstall` as a
	// pre-delete hook (a Job, its ServiceAccount, ClusterRole and binding);
	// kustomize has no hooks. They are checked in TestUninstallHook.
	for k, o := range chart {
		if _, ok := o.GetAnnotations()["helm.sh/hook"]; ok {
			delete(chart, k)
		}
	}
	// Exception 2: the chart does not create its namespace: Helm's is the
	// release namespace (`helm install --create-namespace`), which holds
	// Helm's own record of the release; a chart that owned it would delete
	// that record with it on uninstall.
	delete(kust, objectKey{"Namespace", "", namespace})

	compareObjects(t, chart, kust)
}

// compareObjects checks that the chart renders the same objects as
// kustomize, with the same fields, but for the exceptions normalise applies.
func compareObjects(t *testing.T, chart, kust map[objectKey]*unstructured.Unstructured) {
	t.Helper()
	var missing, extra []string
	for k := range kust {
		if _, ok := chart[k]; !ok {
			missing = append(missing, k.String())
		}
	}
	for k := range chart {
		if _, ok := kust[k]; !ok {
			extra = append(extra, k.String())
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("objects of config/default missing from the chart: %v; objects of the chart not in config/default: %v",
			missing, extra)
	}
	for k, want := range kust {
		got := chart[k]
		if err := normalise(k, got.Object, want.Object); err != nil {
			t.Errorf("%s: %v", k, err)
			continue
		}
		for _, d := range diff("", want.Object, got.Object) {
			t.Errorf("%s: %s (kustomize, then the chart)", k, d)
		}
	}
}

// normalise applies the exceptions of fields the chart parameterises or
// adds, after checking that the chart's side is what it should be.
func normalise(k objectKey, chart, kust map[string]any) error {
	// Exception 3: the chart labels every object as Helm's and the
	// release's; config/ labels its objects as kustomize's (and the
	// generated config/rbac/role.yaml not at all).
	labels, _, _ := unstructured.NestedStringMap(chart, "metadata", "labels")
	want := map[string]string{"app.kubernetes.io/name": "loadshed", "app.kubernetes.io/instance": release,
		"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "", "app.kubernetes.io/version": ""}
	for key, value := range want {
		got, ok := labels[key]
		if !ok || (value != "" && got != value) {
			return fmt.Errorf("label %s is %q, not %q", key, got, value)
		}
		delete(labels, key)
	}
	kustLabels, _, _ := unstructured.NestedStringMap(kust, "metadata", "labels")
	if v, ok := kustLabels["app.kubernetes.io/name"]; ok {
		labels["app.kubernetes.io/name"] = v
	}
	delete(kustLabels, "app.kubernetes.io/managed-by")
	setOrDropLabels(chart, labels)
	setOrDropLabels(kust, kustLabels)
	// Exception 4: the image is a value (image.repository, image.tag
	// defaulting to the chart's appVersion); config/manager names
	// ghcr.io/loadshed/loadshed untagged, which `make deploy` replaces.
	if k.kind == "Deployment" {
		return normaliseImage(chart, kust)
	}
	return nil
}

func setOrDropLabels(obj map[string]any, labels map[string]string) {
	if len(labels) == 0 {
		unstructured.RemoveNestedField(obj, "metadata", "labels")
		return
	}
	_ = unstructured.SetNestedStringMap(obj, labels, "metadata", "labels")
}

func normaliseImage(chart, kust map[string]any) error {
	image, err := dropImage(chart)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(image, "ghcr.io/loadshed/loadshed:") {
		return fmt.Errorf("the chart's image is %s, not ghcr.io/loadshed/loadshed:<appVersion>", image)
	}
	_, err = dropImage(kust)
	return err
}

// dropImage removes the image of a Deployment's first container and
// returns it.
func dropImage(obj map[string]any) (string, error) {
	containers, _, err := unstructured.NestedSlice(obj, "spec", "template", "spec", "containers")
	if err != nil {
		return "", fmt.Errorf("reading the containers: %w", err)
	}
	if len(containers) == 0 {
		return "", errors.New("no containers")
	}
	c, ok := containers[0].(map[string]any)
	if !ok {
		return "", errors.New("the first container is not an object")
	}
	image := fmt.Sprint(c["image"])
	delete(c, "image")
	return image, unstructured.SetNestedSlice(obj, containers, "spec", "template", "spec", "containers")
}

// diff lists the paths where a and b differ.
func diff(path string, a, b any) []string {
	am, aIsMap := a.(map[string]any)
	bm, bIsMap := b.(map[string]any)
	if aIsMap && bIsMap {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		out := make([]string, 0, len(keys))
		for k := range keys {
			out = append(out, diff(path+"."+k, am[k], bm[k])...)
		}
		sort.Strings(out)
		return out
	}
	as, aIsSlice := a.([]any)
	bs, bIsSlice := b.([]any)
	if aIsSlice && bIsSlice && len(as) == len(bs) {
		var out []string
		for i := range as {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) || sameCEL(path, a, b) {
		return nil
	}
	return []string{fmt.Sprintf("%s: %s != %s", path, brief(a), brief(b))}
}

// sameCEL says whether a and b are the same CEL expression but for
// whitespace, which CEL ignores. Exception 5: kustomize reads a folded YAML
// scalar's more-indented lines (config/admission's long expressions) with
// one more line break than Helm does (go-yaml v3 against v2).
func sameCEL(path string, a, b any) bool {
	as, aok := a.(string)
	bs, bok := b.(string)
	return aok && bok && strings.HasSuffix(path, ".expression") &&
		strings.Join(strings.Fields(as), " ") == strings.Join(strings.Fields(bs), " ")
}

func brief(v any) string {
	if v == nil {
		return "(absent)"
	}
	b, _ := yaml.Marshal(v)
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// render reads every object of a multi-document YAML stream, by key.
func render(t *testing.T, stream string) map[objectKey]*unstructured.Unstructured {
	t.Helper()
	out := map[objectKey]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(stream), 4096)
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading rendered objects: %v", err)
		}
		if obj == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		k := objectKey{u.GetKind(), u.GetNamespace(), u.GetName()}
		if _, dup := out[k]; dup {
			t.Fatalf("%s twice", k)
		}
		out[k] = u
	}
}

// helmTemplate renders the chart as `helm install loadshed -n
// loadshed-system` would, with the values given as --set.
func helmTemplate(t *testing.T, set ...string) string {
	t.Helper()
	args := make([]string, 0, 5+2*len(set))
	args = append(args, "template", release, chartDir(), "--namespace", namespace)
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := newHelm(t, false).Run(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kustomizeBuild renders a kustomization of the repository, e.g. config/default.
func kustomizeBuild(t *testing.T, dir string) string {
	t.Helper()
	kustomize := helmtest.Tool(t, helmtest.KustomizeEnv)
	cmd := exec.Command(kustomize, "build", filepath.Join(testenv.RepoRoot(), dir))
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("kustomize build %s: %v: %s", dir, err, exit.Stderr)
		}
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return string(out)
}

// newHelm returns the pinned Helm, with files in a temporary directory,
// reaching the package's cluster when withCluster is set.
func newHelm(t *testing.T, withCluster bool) *helmtest.Helm {
	t.Helper()
	bin := helmtest.Tool(t, helmtest.HelmEnv)
	cfg := env.Config
	if !withCluster {
		cfg = nil
	}
	h, err := helmtest.New(bin, cfg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return h
}
