// Package manifests reads the repository's YAML manifests (config/) and
// applies them with server-side apply, for the tests and the replay.
package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Read reads every object of a multi-document YAML file.
func Read(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// Apply applies each object with server-side apply under fieldOwner.
func Apply(ctx context.Context, c client.Client, fieldOwner string, objs ...*unstructured.Unstructured) error {
	for _, o := range objs {
		ac := client.ApplyConfigurationFromUnstructured(o)
		if err := c.Apply(ctx, ac, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// ApplyRBAC applies the operator's ServiceAccount and RBAC from a
// checkout's config/rbac, in namespace, as config/default would.
func ApplyRBAC(ctx context.Context, c client.Client, root, namespace, fieldOwner string) error {
	for _, file := range []string{"service_account.yaml", "role.yaml", "role_binding.yaml",
		"leader_election_role.yaml", "leader_election_role_binding.yaml"} {
		objs, err := Read(root + "/config/rbac/" + file)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" {
				o.SetNamespace(namespace)
			}
		}
		if err := Apply(ctx, c, fieldOwner, objs...); err != nil {
			return err
		}
	}
	return nil
}

// ApplyAdmission applies the admission policies that hold the operator's
// ServiceAccount (loadshed-system/loadshed-controller-manager, as the file
// names it) to what loadshed does, from a checkout's config/admission.
func ApplyAdmission(ctx context.Context, c client.Client, root, fieldOwner string) error {
	objs, err := Read(root + "/config/admission/operator_limits.yaml")
	if err != nil {
		return err
	}
	return Apply(ctx, c, fieldOwner, objs...)
}
