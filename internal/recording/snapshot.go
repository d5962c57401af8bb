package recording

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/attribution"
)

// ReadSnapshot lists the cluster's DaemonSets, namespaces and FlowSchemas
// and trims them (see Snapshot). It needs list on daemonsets.apps,
// namespaces and flowschemas.flowcontrol.apiserver.k8s.io.
func ReadSnapshot(ctx context.Context, c client.Reader) (Snapshot, error) {
	var dss appsv1.DaemonSetList
	if err := c.List(ctx, &dss); err != nil {
		return Snapshot{}, fmt.Errorf("listing DaemonSets: %w", err)
	}
	var nss corev1.NamespaceList
	if err := c.List(ctx, &nss); err != nil {
		return Snapshot{}, fmt.Errorf("listing namespaces: %w", err)
	}
	var fss flowcontrolv1.FlowSchemaList
	if err := c.List(ctx, &fss); err != nil {
		return Snapshot{}, fmt.Errorf("listing FlowSchemas: %w", err)
	}
	return NewSnapshot(dss.Items, nss.Items, fss.Items), nil
}

// NewSnapshot trims the objects into a Snapshot, sorted by namespace and
// name.
func NewSnapshot(dss []appsv1.DaemonSet, nss []corev1.Namespace, fss []flowcontrolv1.FlowSchema) Snapshot {
	s := Snapshot{DaemonSets: make([]appsv1.DaemonSet, 0, len(dss)), Namespaces: make(map[string]labels.Set, len(nss)),
		FlowSchemas: make([]flowcontrolv1.FlowSchema, 0, len(fss))}
	for i := range dss {
		s.DaemonSets = append(s.DaemonSets, TrimDaemonSet(&dss[i]))
	}
	slices.SortFunc(s.DaemonSets, func(a, b appsv1.DaemonSet) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, ns := range nss {
		s.Namespaces[ns.Name] = labels.Set(ns.Labels)
	}
	for i := range fss {
		s.FlowSchemas = append(s.FlowSchemas, TrimFlowSchema(&fss[i]))
	}
	slices.SortFunc(s.FlowSchemas, func(a, b flowcontrolv1.FlowSchema) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// TrimDaemonSet keeps what a policy's targets read of a DaemonSet: its
// namespace, name and labels, and the ServiceAccount (as
// attribution.ServiceAccountOf resolves it) and priority class of its
// pods.
func TrimDaemonSet(ds *appsv1.DaemonSet) appsv1.DaemonSet {
	out := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Name: ds.Name, Labels: ds.Labels}}
	out.Spec.Template.Spec.ServiceAccountName = attribution.ServiceAccountOf(ds).Name
	out.Spec.Template.Spec.PriorityClassName = ds.Spec.Template.Spec.PriorityClassName
	return out
}

// TrimFlowSchema keeps what attribution.Match and shed.ThrottlePrecedence
// read of a FlowSchema (name, labels, matching precedence, rules), its
// annotations (a throttle's names its ServiceAccount) and its priority
// level.
func TrimFlowSchema(fs *flowcontrolv1.FlowSchema) flowcontrolv1.FlowSchema {
	return flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: fs.Name, Labels: fs.Labels, Annotations: fs.Annotations},
		Spec:       fs.Spec,
	}
}
