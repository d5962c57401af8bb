// Package localcluster runs a small but real Kubernetes control plane on
// loopback from the binaries hack/controlplane/ensure.sh builds: etcd and
// kube-apiserver (through controller-runtime's envtest, which makes the
// certificates), kube-controller-manager, kube-scheduler, and kwok, which
// keeps fake Nodes Ready with leases and moves their bound pods to Running.
// DaemonSets therefore really get Running pods on every Node, and pausing
// one really removes them.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KwokNodeAnnotation marks the Nodes kwok manages.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// Options configure a local cluster.
type Options struct {
	// Assets is the directory of the binaries (and kwok-stages/).
	Assets string
	// CRDs are directories of CRDs to install.
	CRDs []string
	// Components are the processes to run besides etcd and kube-apiserver:
	// any of kube-controller-manager, kube-scheduler, kwok.
	Components []string
	// Logs is where the components' logs go; a temporary directory when empty.
	Logs string
	// APIServerFlags are extra kube-apiserver flags, by name without "--"
	// (e.g. the audit log's, for the scale test).
	APIServerFlags map[string]string
}

// Cluster is a running local cluster.
type Cluster struct {
	// Config reaches kube-apiserver as a cluster admin.
	Config     *rest.Config
	env        *envtest.Environment
	dir        string
	kubeconfig string
	procs      []*component
	// apiserverLog is kube-apiserver's output.
	apiserverLog *os.File
}

// component is a process the cluster runs besides etcd and kube-apiserver.
type component struct {
	name, bin, log string
	args           []string
	cmd            *exec.Cmd
}

// Start starts the control plane and the components, and waits until
// kube-apiserver answers. Stop it when done, also on error paths.
//
// kube-apiserver keeps its certificates and service-account keys in the
// cluster's own directory, not in one that envtest makes and removes when
// the server stops, so that RestartAPIServer brings it back with the same
// port, serving certificate and keys: clients, and the tokens they hold,
// go on working.
func Start(opts Options) (*Cluster, error) {
	if opts.Assets == "" {
		return nil, errors.New("the control plane's binaries are not known: run hack/controlplane/ensure.sh")
	}
	dir, err := os.MkdirTemp("", "loadshed-cluster-")
	if err != nil {
		return nil, err
	}
	certs := filepath.Join(dir, "kube-apiserver")
	if err := os.Mkdir(certs, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	logs := opts.Logs
	if logs == "" {
		logs = dir
	}
	apiserverLog, err := os.OpenFile(filepath.Join(logs, "kube-apiserver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: opts.Assets, CRDDirectoryPaths: opts.CRDs, ErrorIfCRDPathMissing: len(opts.CRDs) > 0}
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certs, Out: apiserverLog, Err: apiserverLog}
	// Without it, a stopping kube-apiserver waits for its clients' watches
	// (kube-controller-manager's, the scheduler's, kwok's) to end, which
	// they do not: it is killed after envtest's 20 seconds.
	env.ControlPlane.APIServer.Configure().Set("shutdown-watch-termination-grace-period", "5s")
	for name, value := range opts.APIServerFlags {
		env.ControlPlane.APIServer.Configure().Set(name, value)
	}
	c := &Cluster{env: env, dir: dir, apiserverLog: apiserverLog}
	if c.Config, err = env.Start(); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	user, err := env.AddUser(envtest.User{Name: "local-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("adding an admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, kubeconfig, 0o600); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := c.startComponents(opts.Components, opts.Assets, logs); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startComponents(names []string, assets, logs string) error {
	for _, name := range names {
		args, err := c.argsFor(name, assets)
		if err != nil {
			return err
		}
		p := &component{name: name, bin: filepath.Join(assets, name), args: args, log: filepath.Join(logs, name+".log")}
		if err := p.start(); err != nil {
			return err
		}
		c.procs = append(c.procs, p)
	}
	return nil
}

// Kubeconfig is the path of an admin kubeconfig for the cluster.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

func (c *Cluster) argsFor(name, assets string) ([]string, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	switch name {
	case "kube-controller-manager":
		return []string{"--kubeconfig=" + c.kubeconfig, "--controllers=*", "--leader-elect=false",
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port), "--cert-dir=" + c.dir}, nil
	case "kube-scheduler":
		return []string{"--kubeconfig=" + c.kubeconfig, "--leader-elect=false",
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port), "--cert-dir=" + c.dir}, nil
	case "kwok":
		stages, err := filepath.Glob(filepath.Join(assets, "kwok-stages", "*.yaml"))
		if err != nil || len(stages) == 0 {
			return nil, fmt.Errorf("kwok's stages are missing from %s/kwok-stages: run hack/controlplane/ensure.sh kwok", assets)
		}
		args := []string{"--kubeconfig=" + c.kubeconfig, "--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + KwokNodeAnnotation + "=fake",
			"--server-address=127.0.0.1:" + strconv.Itoa(port), "--cidr=10.64.0.0/16", "--node-ip=127.0.0.1"}
		for _, s := range stages {
			args = append(args, "--config="+s)
		}
		return args, nil
	}
	return nil, fmt.Errorf("unknown component %q", name)
}

// start starts the component, appending to its log.
func (p *component) start() error {
	if _, err := os.Stat(p.bin); err != nil {
		return fmt.Errorf("%s is missing (run hack/controlplane/ensure.sh): %w", p.name, err)
	}
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The process gets its own copy of the log's descriptor.
	defer func() { _ = log.Close() }()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd = cmd
	return nil
}

// Restart stops a component (interrupting it, as a rolling update of its
// Pod would) and starts it again with the same flags. It returns once the
// new process has started, not once it is ready.
func (c *Cluster) Restart(name string) error {
	for _, p := range c.procs {
		if p.name == name {
			StopProcess(p.cmd)
			return p.start()
		}
	}
	return fmt.Errorf("the cluster does not run %s", name)
}

// RestartAPIServer stops kube-apiserver and starts it again on the same
// port, with the same etcd, certificates and service-account keys, and
// waits until it reports healthy. Its clients see their connections
// dropped and relist; its metrics start again from zero.
//
// Stopping is envtest's: SIGTERM, and SIGKILL if the server has not
// finished its graceful shutdown within 20 seconds, as a kubelet does
// after a static pod's grace period. It reports how the server stopped.
func (c *Cluster) RestartAPIServer() (stopped string, err error) {
	return c.RestartAPIServerAfter(0)
}

// RestartAPIServerAfter is RestartAPIServer with the server kept down for
// down once it has stopped, as a crash-looping or rescheduled one is.
func (c *Cluster) RestartAPIServerAfter(down time.Duration) (stopped string, err error) {
	s := c.env.ControlPlane.GetAPIServer()
	began := time.Now()
	stopped = "stopped"
	if err := s.Stop(); err != nil {
		// Killed after the grace period (or gone already): it is down
		// once its port is free.
		stopped = fmt.Sprintf("killed (%v)", err)
	}
	if err := waitForFreePort(s.Address, s.Port, 15*time.Second); err != nil {
		return stopped, err
	}
	stopped += fmt.Sprintf(" in %v", time.Since(began).Round(100*time.Millisecond))
	time.Sleep(down)
	if err := s.Start(); err != nil {
		return stopped, fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return stopped, nil
}

// waitForFreePort waits until nothing listens on host:port any more.
func waitForFreePort(host, port string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver's port %s is still taken %v after it was stopped: %w", port, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the components, then kube-apiserver and etcd, and removes the
// temporary files.
func (c *Cluster) Stop() error {
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].cmd != nil {
			StopProcess(c.procs[i].cmd)
		}
	}
	c.procs = nil
	err := c.env.Stop()
	if c.apiserverLog != nil {
		_ = c.apiserverLog.Close()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	return err
}

// StopProcess interrupts a started process and waits for it, killing it
// when it has not stopped within 10 seconds.
func StopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// AddNodes creates n fake Nodes for kwok (node-000, node-001, ...) and waits
// until they are Ready.
func (c *Cluster) AddNodes(ctx context.Context, n int) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        fmt.Sprintf("node-%03d", i),
				Annotations: map[string]string{KwokNodeAnnotation: "fake"},
				Labels:      map[string]string{"kubernetes.io/os": "linux", "type": "kwok"},
			},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("110")}},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", node.Name, err)
		}
	}
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, nd := range nodes.Items {
			for _, cond := range nd.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= n, nil
	})
}

// RunningPods counts the pods in namespace that are Running and not being
// deleted, and all of its pods.
func RunningPods(ctx context.Context, cs kubernetes.Interface, namespace string) (running, total int, err error) {
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running++
		}
	}
	return running, len(pods.Items), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
