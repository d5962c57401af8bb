package inspect

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/shed"
)

// The reads of status, why and release. Each is one request (or two); they
// read with the caller's credentials, and docs/kubectl.md lists the
// permissions each command needs.

// Policies reads the policy named name, or every policy when name is "",
// sorted by name. A policy that does not exist, and a cluster without the
// CRD, are errors that say so.
func Policies(ctx context.Context, c client.Reader, name string) ([]v1alpha1.LoadShedPolicy, error) {
	if name != "" {
		p := &v1alpha1.LoadShedPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, p); err != nil {
			return nil, policyError(err, name)
		}
		return []v1alpha1.LoadShedPolicy{*p}, nil
	}
	list := &v1alpha1.LoadShedPolicyList{}
	if err := c.List(ctx, list); err != nil {
		return nil, policyError(err, "")
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.LoadShedPolicy) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return list.Items, nil
}

func policyError(err error, name string) error {
	switch {
	case meta.IsNoMatchError(err):
		return fmt.Errorf("this cluster has no LoadShedPolicy CRD (loadshed.io/v1alpha1): is loadshed installed? (%w)", err)
	case apierrors.IsNotFound(err) && name != "":
		return fmt.Errorf("no LoadShedPolicy named %q (kubectl get loadshedpolicies lists them)", name)
	case name != "":
		return fmt.Errorf("reading LoadShedPolicy %s: %w", name, err)
	}
	return fmt.Errorf("listing LoadShedPolicies: %w", err)
}

// Recorded reads the metadata of every DaemonSet that carries a record of
// loadshed's (a pause, or what a restore left): the records are in
// annotations, so no pod template is downloaded. The DaemonSets returned
// have their metadata only.
func Recorded(ctx context.Context, c client.Reader) ([]appsv1.DaemonSet, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("DaemonSetList"))
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	var out []appsv1.DaemonSet
	for _, m := range list.Items {
		ds := appsv1.DaemonSet{ObjectMeta: m.ObjectMeta}
		if _, restored := ds.Annotations[v1alpha1.AnnotationLastRestore]; restored || shed.PausedBy(&ds) != "" {
			out = append(out, ds)
		}
	}
	return out, nil
}

// DaemonSet reads one DaemonSet; one that does not exist is an error that says so.
func DaemonSet(ctx context.Context, c client.Reader, key types.NamespacedName) (*appsv1.DaemonSet, error) {
	ds := &appsv1.DaemonSet{}
	if err := c.Get(ctx, key, ds); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no DaemonSet %s", key)
		}
		return nil, fmt.Errorf("reading DaemonSet %s: %w", key, err)
	}
	return ds, nil
}

// NamespaceLabels reads every namespace's labels (their metadata only),
// for the policies' namespaceSelectors.
func NamespaceLabels(ctx context.Context, c client.Reader) (map[string]labels.Set, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	out := make(map[string]labels.Set, len(list.Items))
	for _, m := range list.Items {
		out[m.Name] = labels.Set(m.Labels)
	}
	return out, nil
}

// Regarding names the object whose events to read.
type Regarding struct {
	Kind, Namespace, Name string
	// UID, when set, keeps only the events of this very object, not of
	// an earlier one of the same name.
	UID types.UID
	// Reporter, when set, keeps only the events this controller reported
	// (e.g. operatorref.EventReporter: the operator's, not the DaemonSet
	// controller's).
	Reporter string
}

// Events reads the events.k8s.io/v1 events regarding an object, as the
// operator records them: in the object's namespace, or in default for a
// cluster-scoped object (a policy), as client-go's event recorder puts them.
func Events(ctx context.Context, c client.Reader, r Regarding) ([]eventsv1.Event, error) {
	ns := r.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	list := &eventsv1.EventList{}
	sel := fields.SelectorFromSet(fields.Set{"regarding.kind": r.Kind, "regarding.name": r.Name})
	if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing the events of %s %s: %w", r.Kind, r.Name, err)
	}
	out := list.Items[:0]
	for _, e := range list.Items {
		if e.Regarding.Kind == r.Kind && e.Regarding.Name == r.Name && (r.UID == "" || e.Regarding.UID == r.UID) &&
			(r.Reporter == "" || e.ReportingController == r.Reporter) {
			out = append(out, e)
		}
	}
	return out, nil
}
