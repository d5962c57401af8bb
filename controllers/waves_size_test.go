package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

const (
	// waveNodes is how many Nodes the size test creates.
	waveNodes = 5000
	// waveTestLabel marks the size test's Nodes, for their removal.
	waveTestLabel = "loadshed.io/test-waves-size"
	// perHostname is what a wave's node costs beyond its hostname: a
	// protobuf string's tag and length, a byte each (hostnames are shorter
	// than 128 bytes), and one byte of slack.
	perHostname = 3
	// maxStoredBytes bounds every state of the DaemonSet at 5,000 nodes,
	// protobuf (what etcd holds) and JSON (what most watchers read): 64 KB,
	// as issue 11 asks, read as 64,000 bytes rather than 64 KiB. A partial
	// wave lists no more nodes than fit in shed.MaxWaveBytes.
	maxStoredBytes = 64_000
)

// waveSizes are the sizes of a DaemonSet as the API server stores it: the
// protobuf it encodes built-in objects in (what etcd holds) and the JSON a
// client reads.
type waveSizes struct{ proto, json int }

// TestAWaveCostsItsHostnamesAtFiveThousandNodes writes a DaemonSet's pause and each
// default restore wave, as shed.Apply makes them, to a real API server that
// holds 5,000 Nodes with cloud-like names, for an agent's template with no,
// one and three required node affinity terms; and measures each as stored.
// Every state is under 64 KB: a partial wave costs its hostnames, no more
// than fit in the wave size limit, and nothing per original term; the 100%
// wave is the original template, under the pause record.
func TestAWaveCostsItsHostnamesAtFiveThousandNodes(t *testing.T) {
	ctx := context.Background()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	nodes := createNodes(t, cs, waveNodes)
	length := 0
	for i := range nodes {
		length += len(nodes[i].Name)
	}
	t.Logf("created %d Nodes in %v; their hostnames are %.1f bytes long on average", len(nodes),
		time.Since(started).Round(time.Millisecond), float64(length)/float64(len(nodes)))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "waves-size"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, ns) })

	linux := corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"linux"}},
		{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64", "arm64"}}}}
	gpu := corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: "nvidia.com/gpu.present", Operator: corev1.NodeSelectorOpIn, Values: []string{"true"}}}}
	pool := corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: "eks.amazonaws.com/nodegroup", Operator: corev1.NodeSelectorOpExists}}}
	templates := []struct {
		name  string
		terms []corev1.NodeSelectorTerm
	}{{"no-terms", nil}, {"one-term", []corev1.NodeSelectorTerm{linux}}, {"three-terms", []corev1.NodeSelectorTerm{linux, gpu, pool}}}
	waves := policy.DefaultWavePercents()
	sizes := make([][]waveSizes, len(templates))
	for i, tmpl := range templates {
		sizes[i] = writeWaves(t, cs, nodeAgent(ns.Name, tmpl.name, tmpl.terms), waves, nodes)
		for w, s := range sizes[i] {
			t.Logf("%-11s %-10s %7d bytes protobuf, %7d bytes JSON", tmpl.name, waveName(w, waves), s.proto, s.json)
		}
	}

	paused := sizes[0][0].proto
	for w := 1; w <= len(waves); w++ {
		if waves[w-1] == 100 {
			continue
		}
		wave, err := shed.WaveNodes(shed.Scheduling{}, nodes, waves[w-1])
		if err != nil {
			t.Fatal(err)
		}
		budget, values := paused+512, 0
		for _, n := range wave.Nodes {
			budget += len(n) + perHostname
			values += len(n)
		}
		got := sizes[0][w].proto
		if got > budget {
			t.Errorf("the %d%% wave of %d nodes is %d bytes, more than the pause and its hostnames (%d)",
				waves[w-1], len(wave.Nodes), got, budget)
		}
		// At 40 bytes a name, the wave size limit holds about 950 nodes:
		// the 10% wave's 500 fit, the 25% and 50% waves are capped.
		if wave.Capped != (waves[w-1] > 10) || values > shed.MaxWaveBytes {
			t.Errorf("the %d%% wave names %d nodes, %d bytes of hostnames (capped: %v)", waves[w-1], len(wave.Nodes), values,
				wave.Capped)
		}
		t.Logf("the %d%% wave names %d of %d nodes (capped: %v), %d bytes of hostnames: %.1f bytes a node over the pause",
			waves[w-1], len(wave.Nodes), wave.Eligible, wave.Capped, values, float64(got-paused)/float64(len(wave.Nodes)))
	}
	for i, tmpl := range templates {
		affinity, err := json.Marshal(nodeAgent("", "", tmpl.terms).Spec.Template.Spec.Affinity)
		if err != nil {
			t.Fatal(err)
		}
		for w, s := range sizes[i] {
			if s.proto >= maxStoredBytes || s.json >= maxStoredBytes {
				t.Errorf("%s, %s: %d bytes stored, %d bytes of JSON, not under %d", tmpl.name, waveName(w, waves), s.proto,
					s.json, maxStoredBytes)
			}
			// The terms cost the same in every wave as in the pause: in the
			// pause record, in the template (except during a partial wave),
			// and where managedFields name the affinity's fields.
			extra, pausedExtra := s.proto-sizes[0][w].proto, sizes[i][0].proto-sizes[0][0].proto
			if extra > pausedExtra || extra > 2*len(affinity)+256 {
				t.Errorf("%s, %s: %d bytes more than with no terms (paused: %d), for %d bytes of affinity",
					tmpl.name, waveName(w, waves), extra, pausedExtra, len(affinity))
			}
		}
	}
}

func waveName(w int, waves []int32) string {
	if w == 0 {
		return "paused"
	}
	return fmt.Sprintf("wave %d%%", waves[w-1])
}

// createNodes creates n small Nodes named as EC2 names them, each with its
// hostname label, from 32 clients at once, and removes them when the test
// ends.
func createNodes(t *testing.T, cs kubernetes.Interface, n int) []corev1.Node {
	t.Helper()
	ctx := context.Background()
	nodes := make([]corev1.Node, n)
	for i := range nodes {
		name := fmt.Sprintf("ip-10-%d-%d-%d.eu-west-1.compute.internal", i/65536, i/256%256, i%256)
		nodes[i] = corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", waveTestLabel: "true"}}}
	}
	t.Cleanup(func() {
		if err := env.Client.DeleteAllOf(ctx, &corev1.Node{}, client.MatchingLabels{waveTestLabel: "true"}); err != nil {
			t.Errorf("removing the Nodes: %v", err)
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if _, err := cs.CoreV1().Nodes().Create(ctx, &nodes[i], metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range nodes {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("creating Nodes: %v", err)
	}
	return nodes
}

// nodeAgent returns a DaemonSet of a log shipper, its template as a Helm
// chart writes one (labels, a config checksum, probes, resources, host
// paths, tolerations), requiring terms (none: no node affinity).
func nodeAgent(namespace, name string, terms []corev1.NodeSelectorTerm) *appsv1.DaemonSet {
	selector := map[string]string{"app.kubernetes.io/name": "log-shipper", "app.kubernetes.io/instance": name}
	labels := map[string]string{"app.kubernetes.io/version": "3.1.9", "app.kubernetes.io/managed-by": "Helm",
		"helm.sh/chart": "log-shipper-0.47.10"}
	for k, v := range selector {
		labels[k] = v
	}
	hostPath := func(volume, path string) corev1.Volume {
		return corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: path}}}
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path,
			Port: intstr.FromString("http")}}, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3}
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels,
			Annotations: map[string]string{"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": namespace}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"checksum/config": "5d41402abc4b2a76b9719d911017c592e1a5e6e9c1f2b7a3e0c9a4e1e7c0b6d2"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					PriorityClassName:  "node-agents",
					Containers: []corev1.Container{{
						Name:  "log-shipper",
						Image: "registry.example/observability/log-shipper:3.1.9",
						Args:  []string{"--workdir=/fluent-bit/etc", "--config=/fluent-bit/etc/conf/fluent-bit.conf"},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 2020, Protocol: corev1.ProtocolTCP}},
						Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"),
								corev1.ResourceMemory: resource.MustParse("128Mi")},
							Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
						LivenessProbe:  probe("/"),
						ReadinessProbe: probe("/api/v1/health"),
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/fluent-bit/etc/conf"},
							{Name: "varlog", MountPath: "/var/log"},
							{Name: "containers", MountPath: "/var/lib/docker/containers", ReadOnly: true},
							{Name: "machine-id", MountPath: "/etc/machine-id", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
						hostPath("varlog", "/var/log"), hostPath("containers", "/var/lib/docker/containers"),
						hostPath("machine-id", "/etc/machine-id")},
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
	if terms != nil {
		ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	return ds
}

// writeWaves creates ds, then writes its pause and each wave as the
// operator does (shed.Apply, then an update), and returns the size of each
// as stored: paused first, then wave by wave.
func writeWaves(t *testing.T, cs kubernetes.Interface, ds *appsv1.DaemonSet, waves []int32, nodes []corev1.Node) []waveSizes {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, ds); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	out := make([]waveSizes, 0, len(waves)+1)
	for w := 0; w <= len(waves); w++ {
		cur := &appsv1.DaemonSet{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ds), cur); err != nil {
			t.Fatal(err)
		}
		rec := plan.Pause{Since: now, Load: 900, Wave: w}
		if w > 0 {
			rec.WaveStarted = now.Add(time.Duration(w) * time.Minute)
		}
		want, err := shed.Apply(cur, "flood", "it floods", rec, waves, nodes)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Update(ctx, want); err != nil {
			t.Fatalf("%s, %s: %v", ds.Name, waveName(w, waves), err)
		}
		out = append(out, storedSize(t, cs, ds))
	}
	return out
}

// storedSize reads a DaemonSet back as protobuf, the encoding etcd holds
// for built-in kinds (with the same 4-byte magic and envelope), and as JSON.
func storedSize(t *testing.T, cs kubernetes.Interface, ds *appsv1.DaemonSet) waveSizes {
	t.Helper()
	ctx := context.Background()
	raw, err := cs.AppsV1().RESTClient().Get().Namespace(ds.Namespace).Resource("daemonsets").Name(ds.Name).
		SetHeader("Accept", "application/vnd.kubernetes.protobuf").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	js, err := cs.AppsV1().RESTClient().Get().Namespace(ds.Namespace).Resource("daemonsets").Name(ds.Name).
		SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return waveSizes{proto: len(raw), json: len(js)}
}
