package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

// applyThrottles makes the policy's throttles what the plan says: the
// throttling priority level while anything is throttled or paused, a
// throttle FlowSchema per throttled ServiceAccount, nothing else. It
// returns the throttles the API server refused; any other error stops it.
func (r *LoadShedPolicyReconciler) applyThrottles(ctx context.Context, policyName string, state *reconcileState,
	w *world, p plan.Plan) ([]plan.Block, error) {
	cur := w.inPlace
	if len(p.Throttled) > 0 || len(cur.throttles) > 0 {
		if err := r.applyThrottleLevel(ctx, policyName, state, cur.level, len(p.Restored) > 0); err != nil {
			return nil, err
		}
	}
	var refusals []plan.Block
	for _, sa := range slices.SortedFunc(maps.Keys(p.Throttled), plan.CompareNames) {
		matched := w.matched[sa]
		if cur.throttles[sa] != nil || matched == nil {
			continue
		}
		err := r.applyThrottle(ctx, policyName, attribution.ServiceAccount(sa), matched, p.Throttled[sa])
		if b, refused := refusal(err, plan.Throttled, sa); refused {
			refusals = append(refusals, b)
		} else if err != nil {
			return nil, err
		}
	}
	for sa, fs := range cur.throttles {
		if _, keep := p.Throttled[sa]; keep {
			continue
		}
		if err := r.Delete(ctx, fs); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("removing the throttle of %s: %w", sa, err)
		}
		ctrl.LoggerFrom(ctx).Info("Unthrottled a ServiceAccount", "serviceAccount", sa.String())
	}
	if len(p.Throttled) == 0 && len(p.Paused) == 0 && cur.level != nil {
		if err := r.Delete(ctx, cur.level); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("removing the throttling priority level: %w", err)
		}
	}
	return refusals, nil
}

// applyThrottleLevel applies the throttling priority level when it is
// missing, differs from the policy's spec, or a restore just finished (the
// level records when, in an annotation).
func (r *LoadShedPolicyReconciler) applyThrottleLevel(ctx context.Context, policyName string, state *reconcileState,
	cur *flowcontrolv1.PriorityLevelConfiguration, restored bool) error {
	if cur != nil && !restored && !throttleLevelChanged(cur, state.config.Throttle) {
		return nil
	}
	level := shed.ThrottleLevel(policyName, state.config.Throttle)
	last := ""
	if cur != nil {
		last = cur.Annotations[v1alpha1.AnnotationLastRestored]
	}
	if restored {
		last = state.evaluated.UTC().Format(time.RFC3339)
	}
	if last != "" {
		level.WithAnnotations(map[string]string{v1alpha1.AnnotationLastRestored: last})
	}
	if err := r.Apply(ctx, level, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the throttling priority level: %w", err)
	}
	return nil
}

// applyThrottle routes a ServiceAccount to the throttling priority level,
// just ahead of the FlowSchema that matches it. A ServiceAccount matched too
// early for that is left alone, and the log says why.
func (r *LoadShedPolicyReconciler) applyThrottle(ctx context.Context, policyName string, sa attribution.ServiceAccount,
	matched *flowcontrolv1.FlowSchema, since time.Time) error {
	log := ctrl.LoggerFrom(ctx)
	fs, err := shed.ThrottleFlowSchema(policyName, sa, matched, since)
	if err != nil {
		log.Info("Could not throttle a ServiceAccount", "serviceAccount", sa.String(), "reason", err.Error())
		return nil
	}
	if err := r.Apply(ctx, fs, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the throttle of %s: %w", sa, err)
	}
	log.Info("Throttled a ServiceAccount", "serviceAccount", sa.String())
	return nil
}

// throttleLevelChanged reports whether the level in the cluster differs from
// what the policy's throttle asks for.
func throttleLevelChanged(level *flowcontrolv1.PriorityLevelConfiguration, t policy.Throttle) bool {
	l := level.Spec.Limited
	if l == nil || l.NominalConcurrencyShares == nil || *l.NominalConcurrencyShares != t.NominalConcurrencyShares {
		return true
	}
	wantReject := t.LimitResponse == v1alpha1.LimitResponseReject
	return wantReject != (l.LimitResponse.Type == flowcontrolv1.LimitResponseTypeReject)
}

// undo restores every DaemonSet the policy paused, forgets its restores,
// and removes its throttles and priority level: the finalizer's work.
func (r *LoadShedPolicyReconciler) undo(ctx context.Context, policyName string, cur *inPlace) error {
	for _, ds := range cur.paused {
		if err := r.restore(ctx, ds, nil); err != nil {
			return err
		}
	}
	for _, ds := range cur.remembered {
		want, changed := shed.Forget(ds, policyName)
		if !changed {
			continue
		}
		if err := r.Update(ctx, want, client.FieldOwner(FieldOwner)); err != nil {
			return fmt.Errorf("removing the record of the last restore from DaemonSet %s: %w", klog.KObj(ds), err)
		}
	}
	for _, fs := range cur.throttles {
		if err := r.Delete(ctx, fs); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing throttle FlowSchema %s: %w", fs.Name, err)
		}
	}
	if cur.level != nil {
		if err := r.Delete(ctx, cur.level); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the throttling priority level: %w", err)
		}
	}
	return nil
}
