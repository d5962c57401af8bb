package policy

import (
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
)

// The operator, kubectl loadshed and its back-test decide with these what
// a policy may act on, so that what `why` and `evaluate` say is what the
// operator does.

// criticalPriorities are the priority classes of the pods a node or the
// cluster cannot do without.
var criticalPriorities = []string{"system-node-critical", "system-cluster-critical"}

// Selects reports whether a policy with targets t may act on ds. nsLabels
// holds every namespace's labels; it is read only when the policy selects
// namespaces by label.
func (t Targets) Selects(ds *appsv1.DaemonSet, nsLabels map[string]labels.Set, operatorNamespace string) bool {
	return t.Exclusion(ds, nsLabels, operatorNamespace) == ""
}

// Exclusion says why a policy with targets t may not act on ds, or "" when
// it selects it (Selects): its labels or its namespace are not selected,
// the policy excludes it, or its namespace is protected.
func (t Targets) Exclusion(ds *appsv1.DaemonSet, nsLabels map[string]labels.Set, operatorNamespace string) string {
	switch {
	case !t.Selector.Matches(labels.Set(ds.Labels)):
		return "its labels are not ones spec.targets.selector selects"
	case !t.NamespaceSelector.Empty() && !t.NamespaceSelector.Matches(nsLabels[ds.Namespace]):
		return fmt.Sprintf("its namespace %s is not one spec.targets.namespaceSelector selects", ds.Namespace)
	case t.Exclude[types.NamespacedName{Namespace: ds.Namespace, Name: ds.Name}]:
		return "spec.targets.exclude names it"
	case !t.AllowProtectedNamespaces && (ds.Namespace == metav1.NamespaceSystem || ds.Namespace == operatorNamespace):
		return fmt.Sprintf("its namespace %s is protected (spec.targets.allowProtectedNamespaces)", ds.Namespace)
	}
	return ""
}

// Protection says why a selected DaemonSet must never be acted on, or "":
// labelled loadshed.io/protected, running as the operator, or its pods at a
// system-*-critical priority and the policy does not name it in
// allowCritical. Such a DaemonSet is still attributed, so that status can
// say it is the offender and that nothing is done about it.
func (t Targets) Protection(ds *appsv1.DaemonSet, operator types.NamespacedName) string {
	spec := &ds.Spec.Template.Spec
	switch {
	case ds.Labels[v1alpha1.LabelProtected] == "true":
		return "labelled " + v1alpha1.LabelProtected
	case ds.Namespace == operator.Namespace && attribution.ServiceAccountOf(ds).Name == operator.Name:
		return "it runs as the operator"
	case slices.Contains(criticalPriorities, spec.PriorityClassName) &&
		!t.AllowCritical[types.NamespacedName{Namespace: ds.Namespace, Name: ds.Name}]:
		return "its pods run at " + spec.PriorityClassName + "; spec.targets.allowCritical may name it"
	}
	return ""
}

// Protected maps each of the DaemonSets dss that must never be acted on to
// why (see Protection).
func (t Targets) Protected(dss []appsv1.DaemonSet, operator types.NamespacedName) map[types.NamespacedName]string {
	out := map[types.NamespacedName]string{}
	for i := range dss {
		if why := t.Protection(&dss[i], operator); why != "" {
			out[types.NamespacedName{Namespace: dss[i].Namespace, Name: dss[i].Name}] = why
		}
	}
	return out
}

// ThrottleRefusal says why the policy may not throttle a ServiceAccount
// whatever the FlowSchemas, or "": it is the operator's own; its namespace
// is protected (kube-system, the operator's) and the policy does not allow
// it; or its namespace is one the namespaceSelector leaves out.
func (t Targets) ThrottleRefusal(sa, operator types.NamespacedName, nsLabels map[string]labels.Set) string {
	switch {
	case sa == operator:
		return "it is the operator"
	case !t.AllowProtectedNamespaces && (sa.Namespace == metav1.NamespaceSystem || sa.Namespace == operator.Namespace):
		return fmt.Sprintf("its namespace %s is protected (spec.targets.allowProtectedNamespaces)", sa.Namespace)
	case !t.NamespaceSelector.Empty() && !t.NamespaceSelector.Matches(nsLabels[sa.Namespace]):
		return fmt.Sprintf("its namespace %s is not one spec.targets.namespaceSelector selects", sa.Namespace)
	}
	return ""
}
