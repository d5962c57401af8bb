package plan

import (
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/policy"
)

// InputFrom starts the planner's input from an evaluation of the policy
// cfg at now: what its triggers say. The caller adds what is in place and
// the offenders. The operator and kubectl loadshed's back-test both start
// with it.
func InputFrom(now time.Time, cfg *policy.Config, readings []detection.Reading) Input {
	return Input{
		Now:         now,
		Config:      cfg,
		Firing:      detection.Firing(readings),
		FiringSince: detection.FiringSince(readings),
		ClearSince:  detection.ClearSince(readings),
		Throttled:   map[types.NamespacedName]time.Time{},
	}
}

// OffendersOf is the planner's view of measured offenders (OffenderOf):
// cannotThrottle says why a ServiceAccount cannot be throttled; it is asked
// only of the offenders that are ServiceAccounts.
func OffendersOf(offenders []detection.Offender, protected map[types.NamespacedName]string,
	cannotThrottle func(types.NamespacedName) string) []Offender {
	out := make([]Offender, 0, len(offenders))
	for _, o := range offenders {
		var cannot string
		if o.ServiceAccount != (types.NamespacedName{}) {
			cannot = cannotThrottle(o.ServiceAccount)
		}
		out = append(out, OffenderOf(o, protected, cannot))
	}
	return out
}

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
