// Package localcluster runs a small but real Kubernetes control plane on
// loopback from the binaries hack/controlplane/ensure.sh builds: etcd and
// one or more kube-apiservers on it (through controller-runtime's envtest),
// kube-controller-manager, kube-scheduler, and kwok, which keeps fake Nodes
// Ready with leases and moves their bound pods to Running. DaemonSets
// therefore really get Running pods on every Node, and pausing one really
// removes them.
//
// Every kube-apiserver publishes itself in default/kubernetes, as in a real
// cluster, at an address that the cluster's dialer maps to the loopback one
// it listens on (see network.go): clients that follow those endpoints reach
// each instance, and nothing leaves loopback.
package localcluster

import (
	"cmp"
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
	// DisabledControllers are kube-controller-manager's controllers not to
	// run (e.g. "job-controller", when a test plays the Job controller
	// itself, as test/helmtest does for Helm's hook Jobs).
	DisabledControllers []string
	// APIServerFlags are extra kube-apiserver flags, by name without "--"
	// (e.g. the audit log's, for the scale test).
	APIServerFlags map[string]string
	// APIServers is how many kube-apiservers run on the cluster's etcd: one
	// when zero, at most 8. They share the serving certificate, the client
	// CA and the service-account keys, so that clients and tokens work
	// against any of them, and each publishes itself in default/kubernetes
	// (the lease endpoint reconciler). Config reaches the first.
	APIServers int
}

// Cluster is a running local cluster.
type Cluster struct {
	// Config reaches the first kube-apiserver as a cluster admin, at its
	// loopback address. A client that follows the endpoints of
	// default/kubernetes needs WithDialer (or, as a process of its own,
	// ProxyURL).
	Config     *rest.Config
	env        *envtest.Environment
	dir        string
	kubeconfig string
	procs      []*component
	// apiservers are the kube-apiservers; the first is env's.
	apiservers []*envtest.APIServer
	// stopped are those StopAPIServer stopped.
	stopped map[int]bool
	// port is the secure port every kube-apiserver listens on, each on its
	// loopback address.
	port int
	// logs are the kube-apiservers' outputs.
	logs     []*os.File
	proxy    *proxy
	proxyURL string
	// flags are Options.APIServerFlags, for every kube-apiserver.
	flags map[string]string
	// controllers is kube-controller-manager's --controllers.
	controllers string
}

// component is a process the cluster runs besides etcd and kube-apiserver.
type component struct {
	name, bin, log string
	args           []string
	cmd            *exec.Cmd
}

// Start starts the control plane and the components, and waits until
// every kube-apiserver answers. Stop it when done, also on error paths.
//
// The kube-apiservers keep their certificates and service-account keys in
// the cluster's own directory, made here, not in one that envtest makes and
// removes when a server stops, so that StartAPIServer brings one back with
// the same port, serving certificate and keys: clients, and the tokens they
// hold, go on working.
func Start(opts Options) (*Cluster, error) {
	if opts.Assets == "" {
		return nil, errors.New("the control plane's binaries are not known: run hack/controlplane/ensure.sh")
	}
	n := max(opts.APIServers, 1)
	if n > maxAPIServers {
		return nil, fmt.Errorf("%d kube-apiservers asked for, at most %d", n, maxAPIServers)
	}
	dir, err := os.MkdirTemp("", "loadshed-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, flags: opts.APIServerFlags, controllers: "*"}
	for _, name := range opts.DisabledControllers {
		c.controllers += ",-" + name
	}
	if err := c.startControlPlane(opts, n); err != nil {
		_ = c.Stop()
		return nil, err
	}
	user, err := c.env.AddUser(envtest.User{Name: "local-admin", Groups: []string{"system:masters"}}, nil)
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
	logs := cmp.Or(opts.Logs, dir)
	if err := c.startComponents(opts.Components, opts.Assets, logs); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// startControlPlane starts etcd and n kube-apiservers on it, and the proxy.
func (c *Cluster) startControlPlane(opts Options, n int) error {
	certs := filepath.Join(c.dir, "kube-apiserver")
	if err := os.Mkdir(certs, 0o700); err != nil {
		return err
	}
	var listen, ips []net.IP
	for i := range n {
		listen = append(listen, loopbackIP(i))
		ips = append(ips, loopbackIP(i), advertisedIP(i))
	}
	ca, err := writeCerts(certs, ips)
	if err != nil {
		return fmt.Errorf("making kube-apiserver's certificates: %w", err)
	}
	if c.port, err = freePortOnAll(listen); err != nil {
		return err
	}
	logs := cmp.Or(opts.Logs, c.dir)
	c.env = &envtest.Environment{BinaryAssetsDirectory: opts.Assets, CRDDirectoryPaths: opts.CRDs, ErrorIfCRDPathMissing: len(opts.CRDs) > 0}
	first, err := c.newAPIServer(0, certs, logs)
	if err != nil {
		return err
	}
	// envtest finds the serving pair in the directory and leaves it, and
	// with it the CA, to us.
	first.CA = ca
	c.env.ControlPlane.APIServer = first
	if c.Config, err = c.env.Start(); err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	for i := 1; i < n; i++ {
		s, err := c.newAPIServer(i, certs, logs)
		if err != nil {
			return err
		}
		s.EtcdURL = first.EtcdURL
		s.Path = first.Path
		s.Authn = first.Authn
		s.CA = ca
		s.StartTimeout, s.StopTimeout = first.StartTimeout, first.StopTimeout
		if err := s.Start(); err != nil {
			return fmt.Errorf("starting kube-apiserver %d: %w", i, err)
		}
	}
	c.proxy, c.proxyURL, err = startProxy(c.Dial)
	return err
}

// newAPIServer configures kube-apiserver i (not yet started): it listens on
// its loopback address and advertises its published one, with the cluster's
// certificates and the first instance's service-account issuer.
func (c *Cluster) newAPIServer(i int, certs, logs string) (*envtest.APIServer, error) {
	name := "kube-apiserver.log"
	if i > 0 {
		name = fmt.Sprintf("kube-apiserver-%d.log", i)
	}
	log, err := os.OpenFile(filepath.Join(logs, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c.logs = append(c.logs, log)
	port := strconv.Itoa(c.port)
	s := &envtest.APIServer{CertDir: certs, Out: log, Err: log}
	s.ListenAddr = envtest.ListenAddr{Address: loopbackIP(i).String(), Port: port}
	args := s.Configure()
	args.Set("advertise-address", advertisedIP(i).String())
	args.Set("endpoint-reconciler-type", "lease")
	args.Set("service-account-issuer", "https://"+net.JoinHostPort(loopbackIP(0).String(), port)+"/")
	// Without it, a stopping kube-apiserver waits for its clients' watches
	// (kube-controller-manager's, the scheduler's, kwok's) to end, which
	// they do not: it is killed after envtest's 20 seconds.
	args.Set("shutdown-watch-termination-grace-period", "5s")
	for name, value := range c.flags {
		args.Set(name, value)
	}
	c.apiservers = append(c.apiservers, s)
	return s, nil
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
		return []string{"--kubeconfig=" + c.kubeconfig, "--controllers=" + c.controllers, "--leader-elect=false",
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

// RestartAPIServer stops the first kube-apiserver and starts it again on
// the same port, with the same etcd, certificates and service-account keys,
// and waits until it reports healthy. Its clients see their connections
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
	if stopped, err = c.StopAPIServer(0); err != nil {
		return stopped, err
	}
	time.Sleep(down)
	return stopped, c.StartAPIServer(0)
}

// APIServers is how many kube-apiservers the cluster runs.
func (c *Cluster) APIServers() int { return len(c.apiservers) }

// StopAPIServer stops kube-apiserver i (0 is the first) and waits until its
// port is free; it reports how the server stopped (see RestartAPIServer).
// A graceful stop removes the instance from default/kubernetes at once; the
// others publish themselves still.
func (c *Cluster) StopAPIServer(i int) (stopped string, err error) {
	if i < 0 || i >= len(c.apiservers) {
		return "", fmt.Errorf("the cluster runs %d kube-apiservers, not one numbered %d", len(c.apiservers), i)
	}
	if c.stopped[i] {
		return "", fmt.Errorf("kube-apiserver %d is stopped already", i)
	}
	s := c.apiservers[i]
	if c.stopped == nil {
		c.stopped = map[int]bool{}
	}
	c.stopped[i] = true
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
	return stopped + fmt.Sprintf(" in %v", time.Since(began).Round(100*time.Millisecond)), nil
}

// StartAPIServer starts kube-apiserver i again after StopAPIServer, on its
// address and port, and waits until it reports healthy.
func (c *Cluster) StartAPIServer(i int) error {
	if i < 0 || i >= len(c.apiservers) {
		return fmt.Errorf("the cluster runs %d kube-apiservers, not one numbered %d", len(c.apiservers), i)
	}
	if !c.stopped[i] {
		return fmt.Errorf("kube-apiserver %d is running: StopAPIServer it first", i)
	}
	if err := c.apiservers[i].Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver %d again: %w", i, err)
	}
	delete(c.stopped, i)
	return nil
}

// APIServerConfig is a copy of Config that reaches kube-apiserver i at the
// loopback address it listens on.
func (c *Cluster) APIServerConfig(i int) *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	cfg.Host = "https://" + net.JoinHostPort(loopbackIP(i).String(), strconv.Itoa(c.port))
	return cfg
}

// AdvertisedURL is the base URL kube-apiserver i publishes in
// default/kubernetes: what a client that follows its endpoints, such as the
// operator's sampler, reaches it at (through Dial).
func (c *Cluster) AdvertisedURL(i int) string {
	return "https://" + net.JoinHostPort(advertisedIP(i).String(), strconv.Itoa(c.port))
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

// Stop stops the components, then the kube-apiservers and etcd, and
// removes the temporary files.
func (c *Cluster) Stop() error {
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i].cmd != nil {
			StopProcess(c.procs[i].cmd)
		}
	}
	c.procs = nil
	var errs []error
	// The first kube-apiserver, with etcd, is env's.
	for i := len(c.apiservers) - 1; i >= 1; i-- {
		if c.stopped[i] {
			continue
		}
		if err := c.apiservers[i].Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping kube-apiserver %d: %w", i, err))
		}
	}
	if c.env != nil {
		errs = append(errs, c.env.Stop())
	}
	if c.proxy != nil {
		c.proxy.close()
	}
	for _, l := range c.logs {
		_ = l.Close()
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	return errors.Join(errs...)
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
