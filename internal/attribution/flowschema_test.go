package attribution

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func TestIsOwnedAndIsAttribution(t *testing.T) {
	tests := []struct {
		name            string
		labels          map[string]string
		wantOwned       bool
		wantAttribution bool
	}{
		{name: "a schema without labels is neither", labels: nil},
		{name: "a schema managed by someone else is neither", labels: map[string]string{v1alpha1.LabelManagedBy: "helm", v1alpha1.LabelRole: v1alpha1.RoleAttribution}},
		{name: "a schema managed by loadshed without a role is owned only", labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}, wantOwned: true},
		{name: "a schema managed by loadshed with another role is owned only", labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: "shed"}, wantOwned: true},
		{name: "an attribution schema is both", labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: v1alpha1.RoleAttribution}, wantOwned: true, wantAttribution: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: tt.labels}}
			if got := IsOwned(fs); got != tt.wantOwned {
				t.Errorf("IsOwned() = %v, want %v", got, tt.wantOwned)
			}
			if got := IsAttribution(fs); got != tt.wantAttribution {
				t.Errorf("IsAttribution() = %v, want %v", got, tt.wantAttribution)
			}
		})
	}
	if IsOwned(nil) || IsAttribution(nil) {
		t.Error("nil is owned")
	}
}

func TestServiceAccountOf(t *testing.T) {
	tests := []struct {
		name string
		spec corev1.PodSpec
		want ServiceAccount
	}{
		{"a DaemonSet naming a ServiceAccount runs as it", corev1.PodSpec{ServiceAccountName: "agent"}, ServiceAccount{"telemetry", "agent"}},
		{"the deprecated field counts when the new one is empty", corev1.PodSpec{DeprecatedServiceAccount: "old"}, ServiceAccount{"telemetry", "old"}},
		{"a DaemonSet naming none runs as default", corev1.PodSpec{}, ServiceAccount{"telemetry", "default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
			ds.Spec.Template.Spec = tt.spec
			if got := ServiceAccountOf(ds); got != tt.want {
				t.Errorf("ServiceAccountOf = %v, want %v", got, tt.want)
			}
		})
	}
}
