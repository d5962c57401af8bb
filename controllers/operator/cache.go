package operator

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

// nameAndLabels is the cache transform of Nodes and Namespaces: the
// operator reads their names and labels only (restore waves match the
// DaemonSet's node affinity against a Node's name and labels; a policy's
// namespaceSelector against a Namespace's labels). A Node's status and
// image list are most of its size, and at thousands of Nodes most of the
// cache. Anything else passes unchanged.
func nameAndLabels(obj any) (any, error) {
	meta := func(m metav1.ObjectMeta) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion, Generation: m.Generation,
			Labels: m.Labels}
	}
	switch o := obj.(type) {
	case *corev1.Node:
		return &corev1.Node{TypeMeta: o.TypeMeta, ObjectMeta: meta(o.ObjectMeta)}, nil
	case *corev1.Namespace:
		return &corev1.Namespace{TypeMeta: o.TypeMeta, ObjectMeta: meta(o.ObjectMeta)}, nil
	}
	return obj, nil
}

var _ toolscache.TransformFunc = nameAndLabels
