// Package v1alpha1 contains the API types of the loadshed.io v1alpha1 group.
//
// It holds the types, their documented constants and nothing else: it
// depends only on k8s.io/apimachinery, so that any client can import it.
//
// +kubebuilder:object:generate=true
// +groupName=loadshed.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "loadshed.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this group and version to a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this group and version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &LoadShedPolicy{}, &LoadShedPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
