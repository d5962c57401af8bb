package scale

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// NodeName is the name of the i-th Node: as long as a cloud provider's
// (28 to 40 characters), since names are what restore waves list.
func NodeName(i int) string {
	return fmt.Sprintf("ip-10-%d-%d-%d.eu-west-1.compute.internal", 16+i/65536, i/256%256, i%256)
}

// zones are the Nodes' availability zones.
var zones = []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}

// Node is the i-th Node as a kubelet on a cloud VM reports it: the labels
// cloud providers and node pools set, and a status with conditions,
// capacity, addresses, system info and an image list; about 8 KB as JSON,
// most of it status, as on a real cluster.
func Node(i int) *corev1.Node {
	name := NodeName(i)
	zone := zones[i%len(zones)]
	const arch, os = "amd64", "linux" // also in nodeStatus
	labels := map[string]string{
		"kubernetes.io/arch": arch, "kubernetes.io/os": os, "kubernetes.io/hostname": name,
		"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": os,
		"beta.kubernetes.io/instance-type": "m6i.4xlarge", "node.kubernetes.io/instance-type": "m6i.4xlarge",
		"topology.kubernetes.io/region": "eu-west-1", "topology.kubernetes.io/zone": zone,
		"failure-domain.beta.kubernetes.io/region": "eu-west-1", "failure-domain.beta.kubernetes.io/zone": zone,
		"eks.amazonaws.com/nodegroup": fmt.Sprintf("general-%d", i%8), "eks.amazonaws.com/capacityType": "ON_DEMAND",
		"eks.amazonaws.com/nodegroup-image": "ami-0a1b2c3d4e5f67890", "k8s.io/cloud-provider-aws": "7c4e1f0b9d2a",
		"node-pool": fmt.Sprintf("general-%d", i%8), "team": "platform",
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{
			"alpha.kubernetes.io/provided-node-ip":                   fmt.Sprintf("10.%d.%d.%d", 16+i/65536, i/256%256, i%256),
			"node.alpha.kubernetes.io/ttl":                           "0",
			"volumes.kubernetes.io/controller-managed-attach-detach": "true",
		}},
		Spec:   corev1.NodeSpec{ProviderID: fmt.Sprintf("aws:///%s/i-%017x", zone, i+0x0abc), PodCIDR: fmt.Sprintf("10.200.%d.0/24", i%256)},
		Status: nodeStatus(i, name),
	}
}

// nodeStatus is the status a kubelet reports for the i-th Node.
func nodeStatus(i int, name string) corev1.NodeStatus {
	resources := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("63950372Ki"),
		corev1.ResourcePods: resource.MustParse("234"), corev1.ResourceEphemeralStorage: resource.MustParse("104845292Ki"),
		"hugepages-1Gi": resource.MustParse("0"), "hugepages-2Mi": resource.MustParse("0"),
	}
	beat := metav1.Now()
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: beat, LastTransitionTime: beat}
	}
	images := make([]corev1.ContainerImage, 0, 24)
	for k := range cap(images) {
		repo := fmt.Sprintf("602401143452.dkr.ecr.eu-west-1.amazonaws.com/platform/component-%02d", k)
		images = append(images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("%s@sha256:%064x", repo, k*7919+1), fmt.Sprintf("%s:v1.%d.%d", repo, k, k%5)},
			SizeBytes: int64(12_000_000 + k*1_000_003),
		})
	}
	return corev1.NodeStatus{
		Capacity: resources, Allocatable: resources,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.%d", 16+i/65536, i/256%256, i%256)},
			{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalDNS, Address: name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID: fmt.Sprintf("ec2%029x", i), SystemUUID: fmt.Sprintf("ec2%05x-0000-4000-8000-%012x", i, i),
			BootID: fmt.Sprintf("%08x-1111-4222-8333-%012x", i, i), KernelVersion: "6.1.112-124.190.amzn2023.x86_64",
			OSImage: "Amazon Linux 2023.6.20241010", ContainerRuntimeVersion: "containerd://1.7.22",
			KubeletVersion: "v1.37.2", OperatingSystem: "linux", Architecture: "amd64",
		},
		Images: images,
	}
}

// Namespace is the name of the i-th namespace of DaemonSets.
func Namespace(i int) string { return fmt.Sprintf("team-%03d", i) }

// GroupLabel groups the DaemonSets: policy i selects group i.
const GroupLabel = "scale.loadshed.io/group"

// DaemonSet is the j-th DaemonSet of namespace ns, in group g: a node agent
// with its own ServiceAccount, a realistic container (probes, resources,
// mounts, environment) and tolerations; its pod template is what a pause
// rewrites.
func DaemonSet(ns string, j, g int) *appsv1.DaemonSet {
	name := fmt.Sprintf("agent-%02d", j)
	labels := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "node-agents", GroupLabel: fmt.Sprint(g)}
	env := []corev1.EnvVar{
		{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "LOG_LEVEL", Value: "info"}, {Name: "SCRAPE_INTERVAL", Value: "30s"},
	}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 10, TimeoutSeconds: 2}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": name}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"prometheus.io/scrape": "true"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					Tolerations:        []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name: "agent", Image: fmt.Sprintf("registry.example.com/%s/%s:v2.%d.0", ns, name, j),
						Args: []string{"--config=/etc/agent/config.yaml", "--listen=:8080"}, Env: env,
						Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8080}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						LivenessProbe: probe, ReadinessProbe: probe,
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/agent"}, {Name: "host-var-log", MountPath: "/var/log", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
						{Name: "host-var-log", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}},
					},
				},
			},
		},
	}
}

// Populate creates nodes Nodes, namespaces namespaces and daemonSets
// DaemonSets spread over them in groups (one per policy), 16 requests at a
// time.
func Populate(ctx context.Context, cs kubernetes.Interface, nodes, namespaces, daemonSets, groups int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range nodes {
		g.Go(func() error {
			_, err := cs.CoreV1().Nodes().Create(gctx, Node(i), metav1.CreateOptions{})
			return err
		})
	}
	for n := range namespaces {
		g.Go(func() error {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace(n), Labels: map[string]string{"team": Namespace(n)}}}
			_, err := cs.CoreV1().Namespaces().Create(gctx, ns, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("creating Nodes and namespaces: %w", err)
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(16)
	for k := range daemonSets {
		n, j := k%namespaces, k/namespaces
		g.Go(func() error {
			ds := DaemonSet(Namespace(n), j, k%max(groups, 1))
			_, err := cs.AppsV1().DaemonSets(ds.Namespace).Create(gctx, ds, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("creating DaemonSets: %w", err)
	}
	return nil
}
