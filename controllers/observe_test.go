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
