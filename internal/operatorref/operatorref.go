// Package operatorref names the operator as config/ deploys it, for the
// programs that look at it from outside (kubectl loadshed): its namespace,
// its ServiceAccount and its leader election Lease; and it tells from that
// Lease whether an operator leads now. controllers/operator takes its
// defaults from here, so that the two never disagree.
package operatorref

import (
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The operator as config/manager and config/rbac ship it.
const (
	// Namespace is the operator's namespace.
	Namespace = "loadshed-system"
	// ServiceAccount is the operator's ServiceAccount, in Namespace.
	ServiceAccount = "loadshed-controller-manager"
	// LeaderElectionID names the leader election Lease, in Namespace.
	LeaderElectionID = "loadshed.io"
	// EventReporter is the reportingController of the operator's events.
	EventReporter = "loadshed-operator"
)

// Default is the operator's ServiceAccount as shipped.
func Default() types.NamespacedName {
	return types.NamespacedName{Namespace: Namespace, Name: ServiceAccount}
}

// Leader is who holds a leader election Lease, as the Lease says.
type Leader struct {
	// Holder is the holder's identity (the operator's pod name and a UID).
	Holder string
	// RenewedAt is when the holder last renewed the Lease.
	RenewedAt time.Time
	// Until is when the Lease expires unless it is renewed again:
	// RenewedAt plus the lease duration.
	Until time.Time
}

// Leading reads a leader election Lease: the holder, and whether it leads
// at now, having renewed the Lease within its lease duration. A Lease with
// no holder (released: a leader stopped gracefully clears it), never
// renewed, or expired has no leader. now is this machine's clock and the
// renew time the leader's: a skew between them shifts the answer by as much.
func Leading(l *coordinationv1.Lease, now time.Time) (Leader, bool) {
	if l == nil {
		return Leader{}, false
	}
	var out Leader
	if l.Spec.HolderIdentity != nil {
		out.Holder = *l.Spec.HolderIdentity
	}
	if l.Spec.RenewTime != nil {
		out.RenewedAt = l.Spec.RenewTime.Time
	}
	if l.Spec.LeaseDurationSeconds != nil && !out.RenewedAt.IsZero() {
		out.Until = out.RenewedAt.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second)
	}
	return out, out.Holder != "" && now.Before(out.Until)
}
