package operator

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/shed"
)

// selfProtection applies, when the operator starts, the FlowSchema that
// routes the operator's own requests to a level no throttle touches, so
// that it can act while the API servers are saturated (see
// shed.SelfProtection). Every replica applies it: the apply is idempotent.
type selfProtection struct {
	client client.Client
	sa     attribution.ServiceAccount
}

// NeedLeaderElection is false: a standby replica needs its requests through too.
func (s *selfProtection) NeedLeaderElection() bool { return false }

// Start applies the FlowSchema, retrying with backoff until it succeeds or
// the operator stops.
func (s *selfProtection) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("self-protection")
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: time.Minute}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		err := s.client.Apply(ctx, shed.SelfProtection(s.sa), client.FieldOwner(controllers.FieldOwner), client.ForceOwnership)
		if err != nil {
			log.Error(err, "Failed to apply the self-protection FlowSchema, will retry")
			return false, nil
		}
		log.Info("Applied the self-protection FlowSchema", "flowSchema", shed.SelfProtectionName, "serviceAccount", s.sa.String())
		return true, nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}
