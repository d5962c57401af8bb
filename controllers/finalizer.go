package controllers

import (
	"context"
	"fmt"
	"strings"

	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// ensureFinalizer adds the finalizer first and alone: what the policy does
// later must be undone when it is deleted, even if this process dies in
// between. The patch carries the object's resourceVersion: a merge patch
// replaces the whole finalizer list, and without the lock it could drop a
// finalizer someone else added meanwhile.
func (r *LoadShedPolicyReconciler) ensureFinalizer(ctx context.Context, obj *v1alpha1.LoadShedPolicy) error {
	if controllerutil.ContainsFinalizer(obj, v1alpha1.Finalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(obj, v1alpha1.Finalizer)
	if err := r.Patch(ctx, obj, patch, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Added finalizer", "policy", klog.KObj(obj))
	return nil
}

// reconcileDelete undoes what the policy did, then removes the finalizer.
// Status says so all along: Ready False and Reconciling True with reason
// Deleting, and what is being undone or why the undo failed, written before
// the finalizer goes.
func (r *LoadShedPolicyReconciler) reconcileDelete(ctx context.Context, obj *v1alpha1.LoadShedPolicy) error {
	if !controllerutil.ContainsFinalizer(obj, v1alpha1.Finalizer) {
		return nil
	}
	r.Sampler.Unregister(obj.Name)
	r.forgetMetrics(obj.Name)
	r.statuses.forget(obj.Name)
	r.reported.forget(obj.Name)
	r.cadence.forget(obj.Name)

	err := r.undoAll(ctx, obj)
	if err != nil {
		return kerrors.NewAggregate([]error{err, r.writeDeleting(ctx, obj, "", err)})
	}
	patch := client.MergeFromWithOptions(obj.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(obj, v1alpha1.Finalizer)
	if err := r.Patch(ctx, obj, patch, client.FieldOwner(FieldOwner)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	ctrl.LoggerFrom(ctx).Info("Removed finalizer", "policy", klog.KObj(obj))
	return nil
}

// undoAll reads what the policy has in place, says in status what it is
// about to undo, and undoes it.
func (r *LoadShedPolicyReconciler) undoAll(ctx context.Context, obj *v1alpha1.LoadShedPolicy) error {
	st, err := r.readShedState(ctx, obj.Name)
	if err != nil {
		return err
	}
	cur, err := inPlaceFrom(obj.Name, st)
	if err != nil {
		return err
	}
	if err := r.writeDeleting(ctx, obj, describeUndo(cur), nil); err != nil {
		return err
	}
	return r.undo(ctx, obj.Name, cur)
}

// writeDeleting writes the status of a policy being deleted.
func (r *LoadShedPolicyReconciler) writeDeleting(ctx context.Context, obj *v1alpha1.LoadShedPolicy, undoing string, undoErr error) error {
	base := obj.DeepCopy()
	setDeletingStatus(obj, undoing, undoErr)
	return r.patchStatus(ctx, obj, base)
}

// describeUndo says what the finalizer undoes.
func describeUndo(cur *inPlace) string {
	var parts []string
	if n := len(cur.paused); n > 0 {
		parts = append(parts, plural(n, "DaemonSet", "DaemonSets")+" to restore")
	}
	if n := len(cur.throttles); n > 0 {
		parts = append(parts, plural(n, "throttle", "throttles")+" to remove")
	}
	if cur.level != nil {
		parts = append(parts, "the throttling priority level to remove")
	}
	if len(parts) == 0 {
		return "nothing to undo"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
