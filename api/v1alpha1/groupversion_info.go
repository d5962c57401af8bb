// Package v1alpha1 contains the API types of the loadshed.io v1alpha1 group.
//
// It holds the types and nothing else: validation that the schema and CEL
// cannot express lives beside them in validation.go, and the decision logic
// lives under internal/.
//
// +kubebuilder:object:generate=true
// +groupName=loadshed.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "loadshed.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this group and version to a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this group and version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
