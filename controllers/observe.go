package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=flowcontrol.apiserver.k8s.io,resources=flowschemas,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=flowcontrol.apiserver.k8s.io,resources=prioritylevelconfigurations,verbs=get;list;watch;create;patch;delete

// world is what one loop of a policy reads from the cache, each kind once.
type world struct {
	// selected are the DaemonSets the policy may act on.
	selected []appsv1.DaemonSet
	// schemas are all the FlowSchemas of the cluster.
	schemas []flowcontrolv1.FlowSchema
	// nsLabels holds every namespace's labels when the policy selects
	// namespaces by label, else nil.
	nsLabels map[string]labels.Set
	// inPlace is what the policy has in place now.
	inPlace *inPlace
	// matched maps each offending ServiceAccount to the FlowSchema that
	// matches it without loadshed's own (attribution.Match); set by
	// cannotThrottle, read by the throttles.
	matched map[types.NamespacedName]*flowcontrolv1.FlowSchema
}

// observe reads what a loop of a policy needs.
func (r *LoadShedPolicyReconciler) observe(ctx context.Context, name string, cfg *policy.Config) (*world, error) {
	st, err := r.readShedState(ctx, name)
	if err != nil {
		return nil, err
	}
	nsLabels, err := namespaceLabels(ctx, r.Client, cfg)
	if err != nil {
		return nil, err
	}
	cur, err := inPlaceFrom(name, st)
	if err != nil {
		return nil, err
	}
	return &world{
		selected: selectDaemonSets(st.daemonSets, nsLabels, cfg, r.Namespace),
		schemas:  st.schemas,
		nsLabels: nsLabels,
		inPlace:  cur,
		matched:  map[types.NamespacedName]*flowcontrolv1.FlowSchema{},
	}, nil
}

// shedState is the cluster as loadshed acts on it: every DaemonSet, every
// FlowSchema, and the policy's throttling priority level if it has one.
type shedState struct {
	daemonSets []appsv1.DaemonSet
	schemas    []flowcontrolv1.FlowSchema
	level      *flowcontrolv1.PriorityLevelConfiguration
}

// readShedState reads the shed state of a policy from the cache.
//
// The DaemonSets and FlowSchemas are the cache's own objects, not copies:
// at thousands of DaemonSets, copying them all at every loop of every
// policy was most of the operator's CPU and allocations. Nothing may modify
// them; what writes one (shed.Apply, shed.Restore, shed.Forget) changes a
// deep copy.
func (r *LoadShedPolicyReconciler) readShedState(ctx context.Context, name string) (*shedState, error) {
	dss := &appsv1.DaemonSetList{}
	if err := r.List(ctx, dss, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := r.List(ctx, schemas, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing FlowSchemas: %w", err)
	}
	out := &shedState{daemonSets: dss.Items, schemas: schemas.Items}
	level := &flowcontrolv1.PriorityLevelConfiguration{}
	switch err := r.Get(ctx, client.ObjectKey{Name: shed.ThrottleLevelName(name)}, level); {
	case err == nil && attribution.IsOwned(level):
		out.level = level
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading the throttling priority level: %w", err)
	}
	return out, nil
}

// namespaceLabels returns every namespace's labels when the policy selects
// namespaces by label, else nil.
func namespaceLabels(ctx context.Context, c client.Reader, cfg *policy.Config) (map[string]labels.Set, error) {
	if cfg.Targets.NamespaceSelector.Empty() {
		return nil, nil
	}
	nsList := &corev1.NamespaceList{}
	// Only read, never modified: no copies (see readShedState).
	if err := c.List(ctx, nsList, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	out := make(map[string]labels.Set, len(nsList.Items))
	for _, ns := range nsList.Items {
		out[ns.Name] = ns.Labels
	}
	return out, nil
}

// selectDaemonSets returns the DaemonSets a policy may act on: selected by
// its label and namespace selectors (nsLabels holds every namespace's
// labels when it has one), not excluded, not labelled protected, and
// outside the protected namespaces (kube-system and the operator's own)
// unless the policy allows them.
func selectDaemonSets(all []appsv1.DaemonSet, nsLabels map[string]labels.Set, cfg *policy.Config,
	operatorNamespace string) []appsv1.DaemonSet {
	var out []appsv1.DaemonSet
	for _, ds := range all {
		if !cfg.Targets.Selects(&ds, nsLabels, operatorNamespace) {
			continue
		}
		out = append(out, ds)
	}
	return out
}
