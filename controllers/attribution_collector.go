package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/policy"
)

// AttributionCollector deletes the attribution FlowSchemas that no policy
// needs any more. Attribution FlowSchemas are shared: one per ServiceAccount,
// whichever policies select its DaemonSets. So no policy's loop may delete
// one, and none has to resolve every other policy (a policy's Ready never
// depends on the others); this controller does it for all of them. It runs
// when a policy is created, changes or goes, when an attribution FlowSchema
// changes, and every collectEvery (a DaemonSet that moves to another
// ServiceAccount or out of every policy's selection leaves its old one).
type AttributionCollector struct {
	client.Client
	// Namespace is the operator's own namespace, protected like kube-system.
	Namespace string
}

// collectEvery is how often the collector runs without an event.
const collectEvery = time.Minute

// collectorKey is the one request the collector reconciles: the whole set.
var collectorKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "attribution-flowschemas"}}

// Reconcile deletes the attribution FlowSchemas no policy needs.
func (c *AttributionCollector) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	needed, err := c.needed(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := c.List(ctx, schemas, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleAttribution}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing FlowSchemas: %w", err)
	}
	for i := range schemas.Items {
		fs := &schemas.Items[i]
		if !attribution.IsAttribution(fs) || needed[fs.Name] {
			continue
		}
		if err := c.Delete(ctx, fs); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("deleting attribution FlowSchema %s: %w", fs.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted an attribution FlowSchema no policy needs", "flowSchema", klog.KObj(fs))
	}
	return ctrl.Result{RequeueAfter: collectEvery}, nil
}

// needed returns the names of the attribution FlowSchemas the policies that
// are not being deleted need. A policy whose spec does not resolve needs
// none: it acts on nothing.
func (c *AttributionCollector) needed(ctx context.Context) (map[string]bool, error) {
	policies := &v1alpha1.LoadShedPolicyList{}
	if err := c.List(ctx, policies); err != nil {
		return nil, fmt.Errorf("listing policies: %w", err)
	}
	dss := &appsv1.DaemonSetList{}
	if err := c.List(ctx, dss); err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	needed := map[string]bool{}
	var nsLabels map[string]labels.Set
	for i := range policies.Items {
		p := &policies.Items[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		cfg, err := policy.Resolve(&p.Spec)
		if err != nil {
			continue
		}
		if nsLabels == nil {
			if nsLabels, err = namespaceLabels(ctx, c.Client, cfg); err != nil {
				return nil, err
			}
		}
		for _, ds := range selectDaemonSets(dss.Items, nsLabels, cfg, c.Namespace) {
			needed[attribution.Name(attribution.ServiceAccountOf(&ds))] = true
		}
	}
	return needed, nil
}

// SetupWithManager registers the collector with a manager.
func (c *AttributionCollector) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{collectorKey}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("attribution-collector").
		// Status updates do not change what a policy selects.
		Watches(&v1alpha1.LoadShedPolicy{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&flowcontrolv1.FlowSchema{}, all, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return attribution.IsAttribution(o)
		}))).
		Complete(c)
}
