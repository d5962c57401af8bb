package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

func TestSelectDaemonSets(t *testing.T) {
	withLabels := func(ds appsv1.DaemonSet, l map[string]string) appsv1.DaemonSet {
		ds.Labels = l
		return ds
	}
	all := []appsv1.DaemonSet{
		withLabels(daemonSet("telemetry", "agent", "agent"), map[string]string{"app": "telemetry"}),
		withLabels(daemonSet("telemetry", "agent-canary", "agent"), map[string]string{"app": "telemetry", v1alpha1.LabelProtected: "true"}),
		withLabels(daemonSet("logging", "shipper", "shipper"), map[string]string{"app": "logging"}),
		daemonSet(metav1.NamespaceSystem, "kube-proxy", "kube-proxy"),
		daemonSet("loadshed-system", "own", "own"),
	}
	nsLabels := map[string]labels.Set{"telemetry": {"team": "obs"}, "logging": {"team": "obs"}, metav1.NamespaceSystem: {}}
	tests := []struct {
		name    string
		targets policy.Targets
		want    []string
	}{
		{"everything but the protected namespaces (a DaemonSet labelled protected is seen, and protected)",
			policy.Targets{Selector: labels.Everything(), NamespaceSelector: labels.Everything()},
			[]string{"telemetry/agent", "telemetry/agent-canary", "logging/shipper"}},
		{"the protected namespaces when the policy allows them",
			policy.Targets{Selector: labels.Everything(), NamespaceSelector: labels.Everything(), AllowProtectedNamespaces: true},
			[]string{"telemetry/agent", "telemetry/agent-canary", "logging/shipper", "kube-system/kube-proxy", "loadshed-system/own"}},
		{"by label",
			policy.Targets{Selector: labels.SelectorFromSet(labels.Set{"app": "logging"}), NamespaceSelector: labels.Everything()},
			[]string{"logging/shipper"}},
		{"by namespace label",
			policy.Targets{Selector: labels.Everything(), NamespaceSelector: labels.SelectorFromSet(labels.Set{"team": "obs"})},
			[]string{"telemetry/agent", "telemetry/agent-canary", "logging/shipper"}},
		{"not what the policy excludes",
			policy.Targets{Selector: labels.Everything(), NamespaceSelector: labels.Everything(),
				Exclude: map[types.NamespacedName]bool{{Namespace: "telemetry", Name: "agent"}: true}},
			[]string{"telemetry/agent-canary", "logging/shipper"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &policy.Config{Targets: tt.targets}
			var got []string
			for _, ds := range selectDaemonSets(all, nsLabels, cfg, "loadshed-system") {
				got = append(got, ds.Namespace+"/"+ds.Name)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("selected %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("selected %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestProtection(t *testing.T) {
	at := func(ds appsv1.DaemonSet, priority string) *appsv1.DaemonSet {
		ds.Spec.Template.Spec.PriorityClassName = priority
		return &ds
	}
	labelled := daemonSet("telemetry", "canary", "agent")
	labelled.Labels = map[string]string{v1alpha1.LabelProtected: "true"}
	operator := types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed-controller-manager"}
	targets := policy.Targets{AllowCritical: map[types.NamespacedName]bool{{Namespace: "kube-system", Name: "named"}: true}}
	tests := []struct {
		name string
		ds   *appsv1.DaemonSet
		want string
	}{
		{"an ordinary agent", at(daemonSet("telemetry", "agent", "agent"), ""), ""},
		{"an agent at its own priority", at(daemonSet("telemetry", "agent", "agent"), "high"), ""},
		{"a CNI at system-node-critical", at(daemonSet("kube-system", "cni", "cni"), "system-node-critical"),
			"its pods run at system-node-critical; spec.targets.allowCritical may name it"},
		{"node-local DNS at system-cluster-critical", at(daemonSet("kube-system", "dns", "dns"), "system-cluster-critical"),
			"its pods run at system-cluster-critical; spec.targets.allowCritical may name it"},
		{"a critical one the policy names", at(daemonSet("kube-system", "named", "named"), "system-node-critical"), ""},
		{"one running as the operator", at(daemonSet("loadshed-system", "x", "loadshed-controller-manager"), ""),
			"it runs as the operator"},
		{"the operator's name in another namespace", at(daemonSet("other", "x", "loadshed-controller-manager"), ""), ""},
		{"labelled protected", &labelled, "labelled loadshed.io/protected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protection(tt.ds, targets, operator); got != tt.want {
				t.Errorf("protection = %q, want %q", got, tt.want)
			}
		})
	}
}
