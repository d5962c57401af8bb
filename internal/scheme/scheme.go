// Package scheme builds the runtime.Scheme that loadshed's clients use: the
// built-in Kubernetes types and loadshed's own. It is apart from the
// operator's wiring so that the replay and the tests can use it without
// linking the controllers.
package scheme

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// New returns a scheme with the built-in types and loadshed's.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding built-in types: %w", err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding loadshed types: %w", err)
	}
	return s, nil
}
