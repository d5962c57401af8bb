package controllers

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

// scopeOf is what a policy's offenders are measured against: the DaemonSets
// it targets, by ServiceAccount, and the throttle FlowSchemas it has.
func scopeOf(w *world) detection.Scope {
	s := detection.Scope{DaemonSets: detection.DaemonSetsByServiceAccount(w.selected), Throttles: map[types.NamespacedName]string{}}
	for sa, fs := range w.inPlace.throttles {
		s.Throttles[sa] = fs.Name
	}
	return s
}

// cannotThrottle says why the policy may not or cannot throttle a
// ServiceAccount, or "" when it can (see shed.CannotThrottle). It records
// what matches the ServiceAccount in w.matched, for the throttle.
func (r *LoadShedPolicyReconciler) cannotThrottle(sa types.NamespacedName, cfg *policy.Config, w *world) string {
	operator := types.NamespacedName{Namespace: r.Namespace, Name: r.ServiceAccount}
	matched, why := shed.CannotThrottle(cfg.Targets, sa, operator, w.nsLabels, w.schemas)
	if matched != nil {
		w.matched[sa] = matched
	}
	return why
}
