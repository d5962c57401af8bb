package controllers

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=flowcontrol.apiserver.k8s.io,resources=flowschemas,verbs=get;list;watch;create;patch;delete

// selectedDaemonSets returns the DaemonSets a policy may act on, from the
// cache: selected by its namespace and label selectors, not excluded, not
// labelled protected, and outside the protected namespaces unless allowed.
func (r *LoadShedPolicyReconciler) selectedDaemonSets(ctx context.Context, cfg *policy.Config) ([]appsv1.DaemonSet, error) {
	dsList := &appsv1.DaemonSetList{}
	if err := r.List(ctx, dsList, client.MatchingLabelsSelector{Selector: cfg.Targets.Selector}); err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	nsLabels := map[string]labels.Set{}
	if !cfg.Targets.NamespaceSelector.Empty() {
		nsList := &corev1.NamespaceList{}
		if err := r.List(ctx, nsList); err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		for _, ns := range nsList.Items {
			nsLabels[ns.Name] = ns.Labels
		}
	}
	var out []appsv1.DaemonSet
	for _, ds := range dsList.Items {
		if !cfg.Targets.NamespaceSelector.Empty() && !cfg.Targets.NamespaceSelector.Matches(nsLabels[ds.Namespace]) {
			continue
		}
		if cfg.Targets.Exclude[types.NamespacedName{Namespace: ds.Namespace, Name: ds.Name}] {
			continue
		}
		if ds.Labels[v1alpha1.LabelProtected] == "true" {
			continue
		}
		if !cfg.Targets.AllowProtectedNamespaces && (ds.Namespace == metav1.NamespaceSystem || ds.Namespace == r.Namespace) {
			continue
		}
		out = append(out, ds)
	}
	return out, nil
}

// attributedFor groups DaemonSets by the ServiceAccount they run as.
func attributedFor(dss []appsv1.DaemonSet) map[attribution.ServiceAccount][]string {
	out := map[attribution.ServiceAccount][]string{}
	for i := range dss {
		sa := attribution.ServiceAccountOf(&dss[i])
		out[sa] = append(out[sa], dss[i].Namespace+"/"+dss[i].Name)
	}
	for sa := range out {
		sort.Strings(out[sa])
	}
	return out
}

// reconcileAttribution keeps an attribution FlowSchema for the
// ServiceAccount of each DaemonSet the policy selects, and returns them.
// Writes are server-side applies of only the fields loadshed owns, made only
// when the FlowSchema differs from what it should be.
func (r *LoadShedPolicyReconciler) reconcileAttribution(ctx context.Context, cfg *policy.Config) ([]detection.Attributed, error) {
	dss, err := r.selectedDaemonSets(ctx, cfg)
	if err != nil {
		return nil, err
	}
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := r.List(ctx, schemas); err != nil {
		return nil, fmt.Errorf("listing FlowSchemas: %w", err)
	}
	existing := map[string]*flowcontrolv1.FlowSchema{}
	for i := range schemas.Items {
		existing[schemas.Items[i].Name] = &schemas.Items[i]
	}

	var out []detection.Attributed
	for sa, daemonSets := range attributedFor(dss) {
		matched, ok := attribution.Match(sa, attribution.FloodRequest, schemas.Items)
		if !ok {
			continue // nothing to go ahead of: APF's catch-all would take it
		}
		desired, err := attribution.FlowSchemaFor(sa, matched)
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("Could not attribute a ServiceAccount", "serviceAccount", sa.String(), "reason", err.Error())
			continue
		}
		name := attribution.Name(sa)
		if cur := existing[name]; cur != nil && !attribution.IsOwned(cur) {
			// Never take over a FlowSchema someone else made, even with our name.
			ctrl.LoggerFrom(ctx).Info("Skipped attribution: a FlowSchema loadshed does not own has its name",
				"flowSchema", name, "serviceAccount", sa.String())
			continue
		}
		if cur := existing[name]; cur == nil || !attributionUpToDate(cur, matched) {
			if err := r.Apply(ctx, desired, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
				return nil, fmt.Errorf("applying attribution FlowSchema %s: %w", name, err)
			}
			ctrl.LoggerFrom(ctx).Info("Applied an attribution FlowSchema", "flowSchema", name,
				"serviceAccount", sa.String(), "attributedFrom", matched.Name)
		}
		out = append(out, detection.Attributed{ServiceAccount: sa.String(), DaemonSets: daemonSets,
			FlowSchemas: []string{name, shed.ThrottleName(sa)}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServiceAccount < out[j].ServiceAccount })
	return out, nil
}

// attributionUpToDate reports whether an attribution FlowSchema still goes
// just ahead of the schema that matches its ServiceAccount, to the same
// priority level with the same distinguisher.
func attributionUpToDate(cur, matched *flowcontrolv1.FlowSchema) bool {
	return attribution.IsAttribution(cur) &&
		cur.Annotations[attribution.AnnotationAttributedFrom] == matched.Name &&
		cur.Spec.PriorityLevelConfiguration.Name == matched.Spec.PriorityLevelConfiguration.Name &&
		cur.Spec.MatchingPrecedence == matched.Spec.MatchingPrecedence-1 &&
		equality.Semantic.DeepEqual(cur.Spec.DistinguisherMethod, matched.Spec.DistinguisherMethod)
}

// collectAttribution deletes the attribution FlowSchemas that no policy
// needs any more. except names a policy being deleted.
func (r *LoadShedPolicyReconciler) collectAttribution(ctx context.Context, except string) error {
	policies := &v1alpha1.LoadShedPolicyList{}
	if err := r.List(ctx, policies); err != nil {
		return fmt.Errorf("listing policies: %w", err)
	}
	needed := map[string]bool{}
	for i := range policies.Items {
		p := &policies.Items[i]
		if p.Name == except || !p.DeletionTimestamp.IsZero() {
			continue
		}
		cfg, err := policy.Resolve(&p.Spec)
		if err != nil {
			continue
		}
		dss, err := r.selectedDaemonSets(ctx, cfg)
		if err != nil {
			return err
		}
		for sa := range attributedFor(dss) {
			needed[attribution.Name(sa)] = true
		}
	}
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := r.List(ctx, schemas, client.MatchingLabels{attribution.LabelRole: attribution.RoleAttribution}); err != nil {
		return fmt.Errorf("listing FlowSchemas: %w", err)
	}
	for i := range schemas.Items {
		fs := &schemas.Items[i]
		if !attribution.IsAttribution(fs) || needed[fs.Name] {
			continue
		}
		if err := r.Delete(ctx, fs); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting attribution FlowSchema %s: %w", fs.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted an attribution FlowSchema no policy needs", "flowSchema", klog.KObj(fs))
	}
	return nil
}
