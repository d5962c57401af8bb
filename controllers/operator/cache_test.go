package operator

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

func TestTheNodeCacheKeepsWhatWavesMatch(t *testing.T) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-7", UID: "u", ResourceVersion: "42",
			Labels:        map[string]string{"kubernetes.io/os": "linux", "pool": "a"},
			Annotations:   map[string]string{"big": "annotation"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: corev1.NodeSpec{PodCIDR: "10.0.0.0/24"},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"registry.example/a:1"}, SizeBytes: 1 << 30}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	out, err := nameAndLabels(node)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Node)
	want := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-7", UID: "u", ResourceVersion: "42",
		Labels: map[string]string{"kubernetes.io/os": "linux", "pool": "a"}}}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("cached %+v, want name, UID, version and labels only", got)
	}
	// What a wave matches reads the same on the cached Node as on the full one.
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeSelector: map[string]string{"pool": "a"}, Affinity: &corev1.Affinity{
		NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
				Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-7"}}}}}}}}}}
	required := nodeaffinity.GetRequiredNodeAffinity(pod)
	full, _ := required.Match(node)
	cached, _ := required.Match(got)
	if !full || !cached {
		t.Errorf("the wave matches the full Node: %v, the cached one: %v; want both", full, cached)
	}
	if node.Status.Images == nil {
		t.Error("the transform changed the object it was given")
	}
	ns, _ := nameAndLabels(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry",
		Labels: map[string]string{"team": "obs"}}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}})
	if n := ns.(*corev1.Namespace); n.Name != "telemetry" || n.Labels["team"] != "obs" || n.Status.Phase != "" {
		t.Errorf("cached namespace %+v", n)
	}
	ds := &appsv1.DaemonSet{}
	if out, _ := nameAndLabels(ds); out != ds {
		t.Error("a DaemonSet was transformed")
	}
}
