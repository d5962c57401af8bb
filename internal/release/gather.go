package release

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/inspect"
	"github.com/loadshed/loadshed/internal/uninstall"
)

// Gather reads what Decide needs: the DaemonSet named (if one is), the
// metadata of every DaemonSet with a record of loadshed's, loadshed's
// throttles, every policy, and the operator's leader election Lease at
// leaseKey. A cluster without the CRD has no policy (release gives back
// what a removed CRD left); a Lease that cannot be read is Input.LeaseErr,
// which Decide refuses on unless forced.
func Gather(ctx context.Context, c client.Reader, scope Scope, leaseKey types.NamespacedName, force bool,
	now time.Time) (Input, error) {
	in := Input{Scope: scope, LeaseKey: leaseKey, Force: force, Now: now}
	var err error
	if scope.DaemonSet != nil {
		if in.DaemonSet, err = inspect.DaemonSet(ctx, c, *scope.DaemonSet); err != nil {
			return in, err
		}
	}
	if in.Recorded, err = inspect.Recorded(ctx, c); err != nil {
		return in, err
	}
	if in.Throttles, err = uninstall.ListAPF(ctx, c, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleThrottle}); err != nil {
		return in, err
	}
	list := &v1alpha1.LoadShedPolicyList{}
	if err := c.List(ctx, list); err != nil && !meta.IsNoMatchError(err) {
		return in, fmt.Errorf("listing LoadShedPolicies: %w", err)
	}
	in.Policies = list.Items
	lease := &coordinationv1.Lease{}
	switch err := c.Get(ctx, leaseKey, lease); {
	case err == nil:
		in.Lease = lease
	case apierrors.IsNotFound(err):
	default:
		in.LeaseErr = err
	}
	return in, nil
}
