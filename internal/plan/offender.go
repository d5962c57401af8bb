package plan

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/detection"
)

// OffenderOf is the planner's view of a measured offender: its share is
// the larger of its share of the requests held and, while it is throttled,
// of all requests APF saw; protected says why each of the DaemonSets the
// policy targets must not be acted on (none for most); cannotThrottle why
// its ServiceAccount cannot be throttled, or "". The operator and kubectl
// loadshed's back-test both decide on what this returns.
func OffenderOf(o detection.Offender, protected map[types.NamespacedName]string, cannotThrottle string) Offender {
	po := Offender{
		User:              o.User,
		ServiceAccount:    o.ServiceAccount,
		Share:             max(o.InFlightShare, o.RequestShare),
		SeatShare:         o.SeatShare,
		RequestsPerSecond: o.RequestsPerSecond,
		CannotThrottle:    cannotThrottle,
	}
	for _, ds := range o.DaemonSets {
		po.DaemonSets = append(po.DaemonSets, DaemonSet{Key: ds, Protected: protected[ds]})
	}
	return po
}
