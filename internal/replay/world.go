package replay

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Who is who in the replay's cluster.
const (
	// The telemetry DaemonSet of the incident, its ServiceAccount and the
	// ConfigMap its agents read their configuration from.
	TelemetryNamespace = "telemetry"
	TelemetryName      = "agent"
	telemetryConfig    = "agent-config"
	// The innocent clients: a DNS-like one in kube-system, a controller-like
	// one in an application namespace.
	dnsServiceAccount        = "coredns"
	shopNamespace            = "shop"
	controllerServiceAccount = "controller"
	// The operator's namespace and ServiceAccount, as config/ ships them.
	OperatorNamespace      = "loadshed-system"
	OperatorServiceAccount = "loadshed-controller-manager"
	// backgroundNamespace holds the ConfigMaps that make LISTs expensive.
	backgroundNamespace = "background"
)

// RBAC verbs the replay's ServiceAccounts are given.
const (
	verbGet  = "get"
	verbList = "list"
)

// The agents' configurations: what the misconfigured agents do (the
// incident) and what they do before and after it (each agent reads its own
// Node now and then).
const (
	modeNormal       = "normal"
	modeMisconfigure = "list-everything"
	floodPath        = "/api/v1/configmaps"
	normalPath       = "/api/v1/nodes/{node}"
	normalRate       = 0.1
)

// telemetryDaemonSet is the DaemonSet of the incident: one agent per node,
// running as its own ServiceAccount. Like most node agents it tolerates
// every taint.
func telemetryDaemonSet() *appsv1.DaemonSet {
	labels := map[string]string{"app.kubernetes.io/name": "telemetry-agent"}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: TelemetryNamespace, Name: TelemetryName, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: TelemetryName,
					NodeSelector:       map[string]string{corev1.LabelOSStable: "linux"},
					Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name: "agent", Image: "registry.example/telemetry-agent:4.2.0",
						Args:         []string{"--config=/etc/agent/config.yaml"},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/agent"}},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: telemetryConfig}}}}},
				},
			},
		},
	}
}

// worldObjects are everything the replay's clients need: namespaces,
// ServiceAccounts with least-privilege RBAC, the agents' configuration and
// the telemetry DaemonSet.
func worldObjects() []client.Object {
	sa := func(ns, name string) *corev1.ServiceAccount {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	subject := func(ns, name string) []rbacv1.Subject {
		return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}
	}
	clusterRole := func(name string, subjects []rbacv1.Subject, rules ...rbacv1.PolicyRule) []client.Object {
		return []client.Object{
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subjects,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}},
		}
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: TelemetryNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shopNamespace}},
		sa(TelemetryNamespace, TelemetryName),
		sa(metav1.NamespaceSystem, dnsServiceAccount),
		sa(shopNamespace, controllerServiceAccount),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: TelemetryNamespace, Name: telemetryConfig},
			Data: map[string]string{"mode": modeNormal}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: shopNamespace, Name: controllerServiceAccount},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{verbGet, "update"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: shopNamespace, Name: controllerServiceAccount},
			Subjects: subject(shopNamespace, controllerServiceAccount),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: controllerServiceAccount}},
	}
	objs = append(objs, clusterRole("replay:telemetry-agent", subject(TelemetryNamespace, TelemetryName),
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{verbList}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{verbGet}})...)
	objs = append(objs, clusterRole("replay:dns", subject(metav1.NamespaceSystem, dnsServiceAccount),
		rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{verbList, "watch"}})...)
	return append(objs, telemetryDaemonSet())
}

// createAll creates objs, keeping those that exist.
func createAll(ctx context.Context, c client.Client, objs []client.Object) error {
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", o, client.ObjectKeyFromObject(o), err)
		}
	}
	return nil
}
