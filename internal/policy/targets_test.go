package policy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func daemonSet(namespace, name, serviceAccount string) appsv1.DaemonSet {
	ds := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	ds.Spec.Template.Spec.ServiceAccountName = serviceAccount
	return ds
}

func TestProtection(t *testing.T) {
	at := func(ds appsv1.DaemonSet, priority string) *appsv1.DaemonSet {
		ds.Spec.Template.Spec.PriorityClassName = priority
		return &ds
	}
	labelled := daemonSet("telemetry", "canary", "agent")
	labelled.Labels = map[string]string{v1alpha1.LabelProtected: "true"}
	operator := types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed-controller-manager"}
	targets := Targets{AllowCritical: map[types.NamespacedName]bool{{Namespace: "kube-system", Name: "named"}: true}}
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
			if got := targets.Protection(tt.ds, operator); got != tt.want {
				t.Errorf("protection = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestThrottleRefusal(t *testing.T) {
	operator := types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed-controller-manager"}
	selector, err := labels.Parse("team=web")
	if err != nil {
		t.Fatal(err)
	}
	nsLabels := map[string]labels.Set{"web": {"team": "web"}, "batch": {"team": "batch"}}
	tests := []struct {
		name    string
		targets Targets
		sa      types.NamespacedName
		want    string
	}{
		{"an ordinary ServiceAccount", Targets{NamespaceSelector: labels.Everything()},
			types.NamespacedName{Namespace: "web", Name: "agent"}, ""},
		{"the operator", Targets{AllowProtectedNamespaces: true, NamespaceSelector: labels.Everything()}, operator,
			"it is the operator"},
		{"in kube-system", Targets{NamespaceSelector: labels.Everything()},
			types.NamespacedName{Namespace: "kube-system", Name: "cni"},
			"its namespace kube-system is protected (spec.targets.allowProtectedNamespaces)"},
		{"in kube-system, allowed", Targets{AllowProtectedNamespaces: true, NamespaceSelector: labels.Everything()},
			types.NamespacedName{Namespace: "kube-system", Name: "cni"}, ""},
		{"beside the operator", Targets{NamespaceSelector: labels.Everything()},
			types.NamespacedName{Namespace: "loadshed-system", Name: "other"},
			"its namespace loadshed-system is protected (spec.targets.allowProtectedNamespaces)"},
		{"in a namespace the selector leaves out", Targets{NamespaceSelector: selector},
			types.NamespacedName{Namespace: "batch", Name: "agent"},
			"its namespace batch is not one spec.targets.namespaceSelector selects"},
		{"in a namespace the selector selects", Targets{NamespaceSelector: selector},
			types.NamespacedName{Namespace: "web", Name: "agent"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.targets.ThrottleRefusal(tt.sa, operator, nsLabels); got != tt.want {
				t.Errorf("ThrottleRefusal = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExclusion(t *testing.T) {
	web, err := labels.Parse("team=web")
	if err != nil {
		t.Fatal(err)
	}
	agents, err := labels.Parse("app=agent")
	if err != nil {
		t.Fatal(err)
	}
	nsLabels := map[string]labels.Set{"web": {"team": "web"}, "batch": {"team": "batch"}}
	all := Targets{NamespaceSelector: labels.Everything(), Selector: labels.Everything()}
	labelled := func(ds appsv1.DaemonSet) *appsv1.DaemonSet {
		ds.Labels = map[string]string{"app": "agent"}
		return &ds
	}
	tests := []struct {
		name    string
		targets Targets
		ds      *appsv1.DaemonSet
		want    string
	}{
		{"everything selected", all, labelled(daemonSet("web", "agent", "agent")), ""},
		{"labels the selector leaves out", Targets{NamespaceSelector: labels.Everything(), Selector: agents},
			dsPtr(daemonSet("web", "agent", "agent")), "its labels are not ones spec.targets.selector selects"},
		{"a namespace the selector leaves out", Targets{NamespaceSelector: web, Selector: labels.Everything()},
			labelled(daemonSet("batch", "agent", "agent")), "its namespace batch is not one spec.targets.namespaceSelector selects"},
		{"excluded", Targets{NamespaceSelector: labels.Everything(), Selector: labels.Everything(),
			Exclude: map[types.NamespacedName]bool{{Namespace: "web", Name: "agent"}: true}},
			labelled(daemonSet("web", "agent", "agent")), "spec.targets.exclude names it"},
		{"in kube-system", all, labelled(daemonSet("kube-system", "cni", "cni")),
			"its namespace kube-system is protected (spec.targets.allowProtectedNamespaces)"},
		{"in the operator's namespace", all, labelled(daemonSet("loadshed-system", "x", "x")),
			"its namespace loadshed-system is protected (spec.targets.allowProtectedNamespaces)"},
		{"in kube-system, allowed", Targets{NamespaceSelector: labels.Everything(), Selector: labels.Everything(),
			AllowProtectedNamespaces: true}, labelled(daemonSet("kube-system", "cni", "cni")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.targets.Exclusion(tt.ds, nsLabels, "loadshed-system")
			if got != tt.want {
				t.Errorf("Exclusion = %q, want %q", got, tt.want)
			}
			if selects := tt.targets.Selects(tt.ds, nsLabels, "loadshed-system"); selects != (tt.want == "") {
				t.Errorf("Selects = %v while Exclusion says %q", selects, got)
			}
		})
	}
}

func dsPtr(ds appsv1.DaemonSet) *appsv1.DaemonSet { return &ds }
