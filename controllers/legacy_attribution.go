package controllers

import (
	"context"
	"fmt"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
)

// LegacyAttributionCleanup deletes the attribution FlowSchemas that earlier
// versions of loadshed kept, one per ServiceAccount of every targeted
// DaemonSet, to measure each one's load. loadshed now reads who loads the
// API servers from APF's own dump of the requests it holds, and makes no
// object for it; the old ones would only cost APF matching time on every
// request. It runs once each time this replica becomes the leader (an older
// operator cannot run beside it then), retrying until it has deleted them.
type LegacyAttributionCleanup struct {
	Client client.Client
}

// NeedLeaderElection makes the cleanup run on the leader only.
func (c *LegacyAttributionCleanup) NeedLeaderElection() bool { return true }

// Start deletes the legacy attribution FlowSchemas, then returns.
func (c *LegacyAttributionCleanup) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("legacy-attribution-cleanup")
	err := wait.PollUntilContextCancel(ctx, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := c.deleteAll(ctx); err != nil {
			log.Error(err, "Could not delete the attribution FlowSchemas of an earlier version; will try again")
			return false, nil
		}
		return true, nil
	})
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func (c *LegacyAttributionCleanup) deleteAll(ctx context.Context) error {
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := c.Client.List(ctx, schemas, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleAttribution}); err != nil {
		return fmt.Errorf("listing FlowSchemas: %w", err)
	}
	for i := range schemas.Items {
		fs := &schemas.Items[i]
		if !attribution.IsAttribution(fs) {
			continue
		}
		if err := c.Client.Delete(ctx, fs); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting attribution FlowSchema %s: %w", fs.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted an attribution FlowSchema of an earlier version", "flowSchema", klog.KObj(fs))
	}
	return nil
}
