package chart

import (
	"reflect"
	"strconv"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestUninstallHook checks the pre-delete hook's objects: what they are,
// that each exists before the Job runs, that they go when it succeeds, and
// that the Job's pod runs as the operator's does.
func TestUninstallHook(t *testing.T) {
	objs := render(t, helmTemplate(t, "uninstall.timeout=7m"))
	want := map[objectKey]int{
		{"ServiceAccount", namespace, "loadshed-uninstall"}: -10,
		{"ClusterRole", "", "loadshed-uninstall"}:           -10,
		{"ClusterRoleBinding", "", "loadshed-uninstall"}:    -5,
		{"Job", namespace, "loadshed-uninstall"}:            0,
	}
	for k, o := range objs {
		a := o.GetAnnotations()
		if _, ok := a["helm.sh/hook"]; !ok {
			continue
		}
		weight, ok := want[k]
		if !ok {
			t.Errorf("unexpected hook %s", k)
			continue
		}
		delete(want, k)
		if a["helm.sh/hook"] != "pre-delete" || a["helm.sh/hook-weight"] != strconv.Itoa(weight) ||
			a["helm.sh/hook-delete-policy"] != "before-hook-creation,hook-succeeded" {
			t.Errorf("%s: hook annotations %v, want pre-delete, weight %d, before-hook-creation,hook-succeeded", k, a, weight)
		}
	}
	if len(want) > 0 {
		t.Fatalf("hooks missing: %v", want)
	}
	job := objs[objectKey{"Job", namespace, "loadshed-uninstall"}].Object
	pod := objs[objectKey{"Deployment", namespace, deploymentName}].Object
	for _, f := range [][]string{{"priorityClassName"}, {"securityContext"}} {
		got, _, _ := unstructured.NestedFieldCopy(job, append([]string{"spec", "template", "spec"}, f...)...)
		wantField, _, _ := unstructured.NestedFieldCopy(pod, append([]string{"spec", "template", "spec"}, f...)...)
		if got == nil || !reflect.DeepEqual(got, wantField) {
			t.Errorf("the Job's pod %v is %v, the operator's %v", f, got, wantField)
		}
	}
	containers, _, _ := unstructured.NestedSlice(job, "spec", "template", "spec", "containers")
	c := containers[0].(map[string]any)
	operator, _, _ := unstructured.NestedSlice(pod, "spec", "template", "spec", "containers")
	oc := operator[0].(map[string]any)
	if !reflect.DeepEqual(c["command"], oc["command"]) || !reflect.DeepEqual(c["image"], oc["image"]) ||
		!reflect.DeepEqual(c["securityContext"], oc["securityContext"]) {
		t.Errorf("the Job's container %v does not run the operator's image and command as the operator does (%v)", c, oc)
	}
	if !reflect.DeepEqual(c["args"], []any{"uninstall", "--timeout=7m"}) {
		t.Errorf("the Job runs %v, want [uninstall --timeout=7m]", c["args"])
	}
}

// TestMonitoring checks the opt-in ServiceMonitor, PrometheusRule and
// Prometheus's metrics-reader binding: off by default; on, they are
// config/prometheus's objects, field by field, with the exceptions of
// TestTemplateRendersConfigDefault, and the ServiceMonitor scrapes the
// metrics Service's https port with a bearer token.
func TestMonitoring(t *testing.T) {
	base := render(t, helmTemplate(t))
	on := render(t, helmTemplate(t, "serviceMonitor.enabled=true", "prometheusRule.enabled=true"))
	added := map[objectKey]*unstructured.Unstructured{}
	for k, o := range on {
		if base[k] == nil {
			added[k] = o
		}
	}
	compareObjects(t, added, render(t, kustomizeBuild(t, "config/prometheus")))

	sm := on[objectKey{"ServiceMonitor", namespace, "loadshed-controller-manager-metrics-monitor"}]
	svc := on[objectKey{"Service", namespace, "loadshed-controller-manager-metrics-service"}]
	if sm == nil || svc == nil {
		t.Fatal("enabled, the chart renders no ServiceMonitor or no metrics Service")
	}
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range selector {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service's labels %v lack", k, v, svc.GetLabels())
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ep := endpoints[0].(map[string]any)
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if ep["port"] != ports[0].(map[string]any)["name"] || ep["scheme"] != "https" || ep["path"] != "/metrics" ||
		ep["bearerTokenFile"] != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("the ServiceMonitor's endpoint %v does not scrape the Service's port %v over https with a token",
			ep, ports[0])
	}
}
