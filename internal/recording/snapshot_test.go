package recording

import (
	"context"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/shed"
)

// cluster is a DaemonSet, a namespace and a FlowSchema carrying more than a
// snapshot keeps.
func cluster() (*appsv1.DaemonSet, *corev1.Namespace, *flowcontrolv1.FlowSchema) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent",
		Labels: map[string]string{"app": "agent"}, Annotations: map[string]string{"secret-ish": "x"}}}
	ds.Spec.Template.Spec = corev1.PodSpec{DeprecatedServiceAccount: "agent-sa", PriorityClassName: "system-node-critical",
		Containers: []corev1.Container{{Name: "agent", Image: "agent:1", Env: []corev1.EnvVar{{Name: "TOKEN", Value: "t"}}}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry", Labels: map[string]string{"team": "obs"}}}
	fs := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "service-accounts", Labels: map[string]string{"x": "y"}},
		Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 9000,
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindGroup,
					Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"},
					Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}}}}}}
	return ds, ns, fs
}

// TestASnapshotKeepsWhatABackTestReads: read from a cluster, written and
// read back, the snapshot keeps what attribution and the throttle read, and
// nothing of the pods' containers.
func TestASnapshotKeepsWhatABackTestReads(t *testing.T) {
	ds, ns, fs := cluster()
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(ds, ns, fs).Build()
	snap, err := ReadSnapshot(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	w, f := newWriterOf(t, snap)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	dss, fss := rec.DaemonSets(), rec.FlowSchemas()
	if len(dss) != 1 || len(fss) != 1 {
		t.Fatalf("read back %d DaemonSets and %d FlowSchemas, want 1 and 1", len(dss), len(fss))
	}
	if got := attribution.ServiceAccountOf(&dss[0]); got != (attribution.ServiceAccount{Namespace: "telemetry", Name: "agent-sa"}) {
		t.Errorf("the DaemonSet runs as %v, want telemetry/agent-sa", got)
	}
	spec := dss[0].Spec.Template.Spec
	if spec.PriorityClassName != "system-node-critical" || len(spec.Containers) != 0 || dss[0].Annotations != nil ||
		!reflect.DeepEqual(dss[0].Labels, ds.Labels) {
		t.Errorf("the DaemonSet kept %+v", dss[0])
	}
	if got := rec.Namespaces(); !reflect.DeepEqual(got, map[string]labels.Set{"telemetry": {"team": "obs"}}) {
		t.Errorf("namespaces %v", got)
	}
	sa := attribution.ServiceAccount{Namespace: "telemetry", Name: "agent-sa"}
	matched, ok := attribution.Match(sa, attribution.FloodRequest, fss)
	if !ok || matched.Name != fs.Name || !reflect.DeepEqual(matched.Spec, fs.Spec) {
		t.Fatalf("the recorded FlowSchemas match %v (%v), want %s with its spec", matched, ok, fs.Name)
	}
	if p, err := shed.ThrottlePrecedence(matched); err != nil || p != 8998 {
		t.Errorf("a throttle would go at %d (%v), want 8998", p, err)
	}
}
