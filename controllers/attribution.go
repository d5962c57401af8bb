package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/shed"
)

// daemonSetsByServiceAccount groups DaemonSets by the ServiceAccount they
// run as, each group sorted.
func daemonSetsByServiceAccount(dss []appsv1.DaemonSet) map[types.NamespacedName][]types.NamespacedName {
	out := map[types.NamespacedName][]types.NamespacedName{}
	for i := range dss {
		sa := types.NamespacedName(attribution.ServiceAccountOf(&dss[i]))
		out[sa] = append(out[sa], client.ObjectKeyFromObject(&dss[i]))
	}
	for sa := range out {
		slices.SortFunc(out[sa], plan.CompareNames)
	}
	return out
}

// applyAttribution keeps an attribution FlowSchema for the ServiceAccount of
// each DaemonSet the policy selects, and returns them, by ServiceAccount.
// Writes are server-side applies of only the fields loadshed owns, made only
// when the FlowSchema differs from what it should be.
func (r *LoadShedPolicyReconciler) applyAttribution(ctx context.Context, w *world) ([]detection.Attributed, error) {
	existing := make(map[string]*flowcontrolv1.FlowSchema, len(w.schemas))
	for i := range w.schemas {
		existing[w.schemas[i].Name] = &w.schemas[i]
	}
	groups := daemonSetsByServiceAccount(w.selected)
	var out []detection.Attributed
	for _, sa := range slices.SortedFunc(maps.Keys(groups), plan.CompareNames) {
		matched, ok := attribution.Match(attribution.ServiceAccount(sa), attribution.FloodRequest, w.schemas)
		if !ok {
			continue // nothing to go ahead of: APF's catch-all would take it
		}
		w.matched[sa] = matched
		applied, err := r.applyAttributionFor(ctx, attribution.ServiceAccount(sa), matched, existing)
		if err != nil {
			return nil, err
		}
		if !applied {
			continue
		}
		name := attribution.Name(attribution.ServiceAccount(sa))
		out = append(out, detection.Attributed{ServiceAccount: sa, DaemonSets: groups[sa],
			FlowSchemas: []string{name, shed.ThrottleName(attribution.ServiceAccount(sa))}})
	}
	return out, nil
}

// applyAttributionFor applies one ServiceAccount's attribution FlowSchema
// when it is missing or out of date. It returns false when the
// ServiceAccount cannot be attributed, and says why in the log.
func (r *LoadShedPolicyReconciler) applyAttributionFor(ctx context.Context, sa attribution.ServiceAccount,
	matched *flowcontrolv1.FlowSchema, existing map[string]*flowcontrolv1.FlowSchema) (bool, error) {
	log := ctrl.LoggerFrom(ctx)
	desired, err := attribution.FlowSchemaFor(sa, matched)
	if err != nil {
		log.Info("Could not attribute a ServiceAccount", "serviceAccount", sa.String(), "reason", err.Error())
		return false, nil
	}
	name := attribution.Name(sa)
	cur := existing[name]
	switch {
	case cur != nil && !attribution.IsOwned(cur):
		// Never take over a FlowSchema someone else made, even with our name.
		log.Info("Skipped attribution: a FlowSchema loadshed does not own has its name",
			"flowSchema", name, "serviceAccount", sa.String())
		return false, nil
	case cur != nil && attributionUpToDate(cur, matched):
		return true, nil
	}
	if err := r.Apply(ctx, desired, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("applying attribution FlowSchema %s: %w", name, err)
	}
	log.Info("Applied an attribution FlowSchema", "flowSchema", name, "serviceAccount", sa.String(), "attributedFrom", matched.Name)
	return true, nil
}

// attributionUpToDate reports whether an attribution FlowSchema still goes
// just ahead of the schema that matches its ServiceAccount, to the same
// priority level with the same distinguisher.
func attributionUpToDate(cur, matched *flowcontrolv1.FlowSchema) bool {
	return attribution.IsAttribution(cur) &&
		cur.Annotations[v1alpha1.AnnotationAttributedFrom] == matched.Name &&
		cur.Spec.PriorityLevelConfiguration.Name == matched.Spec.PriorityLevelConfiguration.Name &&
		cur.Spec.MatchingPrecedence == matched.Spec.MatchingPrecedence-1 &&
		equality.Semantic.DeepEqual(cur.Spec.DistinguisherMethod, matched.Spec.DistinguisherMethod)
}
