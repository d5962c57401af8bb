package attribution

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// IsOwned reports whether an object was made by loadshed: its LabelManagedBy
// label is ManagedByValue. It is false for nil.
func IsOwned(obj metav1.Object) bool {
	if obj == nil {
		return false
	}
	return obj.GetLabels()[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue
}

// IsAttribution reports whether an object is one of the attribution
// FlowSchemas earlier versions of loadshed kept: owned by loadshed, with
// role v1alpha1.RoleAttribution. This version makes none, and deletes
// those it finds.
func IsAttribution(obj metav1.Object) bool {
	return IsOwned(obj) && obj.GetLabels()[v1alpha1.LabelRole] == v1alpha1.RoleAttribution
}
