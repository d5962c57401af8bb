// Package attribution knows how API Priority and Fairness (APF) sees a
// ServiceAccount: the user name and groups its tokens authenticate as, and
// which FlowSchema matches its requests, so that a throttle can go just
// ahead of it. Who loads the API servers is measured elsewhere (package
// apfdump, from APF's own dump of the requests it holds); earlier versions
// kept an "attribution" FlowSchema per ServiceAccount for it, and IsAttribution
// recognises those, for their cleanup.
//
// The package is pure: it works on plain values, reads no cluster and
// mirrors APF's matching (k8s.io/apiserver/pkg/util/flowcontrol, rule.go).
package attribution

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

// DefaultServiceAccountName is the ServiceAccount a pod runs as when its spec
// names none.
const DefaultServiceAccountName = "default"

// ServiceAccount names a ServiceAccount. It converts to and from
// types.NamespacedName, which the planner keys its maps by.
type ServiceAccount types.NamespacedName

// String returns "namespace/name".
func (sa ServiceAccount) String() string {
	return sa.Namespace + "/" + sa.Name
}

// UserName returns the user name the API server authenticates the
// ServiceAccount's tokens as: "system:serviceaccount:<namespace>:<name>".
func (sa ServiceAccount) UserName() string {
	return serviceaccount.MakeUsername(sa.Namespace, sa.Name)
}

// Groups returns the groups the API server puts the ServiceAccount's tokens
// in: "system:serviceaccounts", "system:serviceaccounts:<namespace>" (from
// the ServiceAccount token authenticator) and "system:authenticated" (added
// to every authenticated user by the authenticated-group adder that wraps the
// API server's authenticators).
func (sa ServiceAccount) Groups() []string {
	return append(serviceaccount.MakeGroupNames(sa.Namespace), user.AllAuthenticated)
}

// ServiceAccountOf returns the ServiceAccount a DaemonSet's pods run as: the
// pod template's serviceAccountName, else its deprecated serviceAccount
// alias (which the API server copies into serviceAccountName), else
// "default". It returns the zero ServiceAccount for a nil DaemonSet.
func ServiceAccountOf(ds *appsv1.DaemonSet) ServiceAccount {
	if ds == nil {
		return ServiceAccount{}
	}
	spec := ds.Spec.Template.Spec
	name := spec.ServiceAccountName
	if name == "" {
		name = spec.DeprecatedServiceAccount //nolint:staticcheck // SA1019: older objects may set only the alias.
	}
	if name == "" {
		name = DefaultServiceAccountName
	}
	return ServiceAccount{Namespace: ds.Namespace, Name: name}
}
