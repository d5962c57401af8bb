package replay

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/prometheus/procfs"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/localcluster"
	"github.com/loadshed/loadshed/internal/manifests"
)

// OperatorOptions say how to run the operator as its own process.
type OperatorOptions struct {
	// Root is the repository checkout: cmd/manager is built from it and
	// config/rbac and config/admission applied from it.
	Root string
	// Namespace and ServiceAccount are the operator's.
	Namespace, ServiceAccount string
	// Dir holds the binary, the kubeconfig and the log.
	Dir string
	// Binary is the operator's binary, from BuildOperator; empty builds
	// cmd/manager into Dir.
	Binary string
	// Name tells processes apart (replicas, or one started after another
	// was killed): the log is Dir/Name.log, appended to. Empty is
	// "loadshed-operator".
	Name string
	// LeaderElection, when set, runs the operator with leader election on,
	// as it ships; nil runs it alone, without.
	LeaderElection *LeaderElection
	// Args are more flags for the operator, after the others: they
	// override them (e.g. --metrics-bind-address to read its metrics).
	Args []string
	// ProxyURL is the proxy the operator reaches the cluster through
	// (localcluster.Cluster.ProxyURL): its sampler follows the addresses
	// default/kubernetes publishes, which only the cluster's dialer reaches.
	ProxyURL string
}

// LeaderElection configures the operator's leader election.
type LeaderElection struct {
	// ID names the Lease, in the operator's namespace; empty is the binary's default.
	ID string
	// LeaseDuration, RenewDeadline and RetryPeriod time the election; zero
	// leaves the binary's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// BuildOperator builds cmd/manager from the checkout at root into dir, and
// returns the binary's path. Build once, start many. It builds with
// hack/build.sh, as make build and make image do: the binary the tests run
// is the one that ships (and its packages are built once for both).
func BuildOperator(ctx context.Context, root, dir string) (string, error) {
	return Build(ctx, root, dir, "./cmd/manager", "loadshed-operator")
}

// BuildPlugin builds the kubectl plugin, cmd/kubectl-loadshed, as
// BuildOperator builds the operator.
func BuildPlugin(ctx context.Context, root, dir string) (string, error) {
	return Build(ctx, root, dir, "./cmd/kubectl-loadshed", "kubectl-loadshed")
}

// Build builds the command pkg of the checkout at root into dir/name with
// hack/build.sh, and returns the binary's path.
func Build(ctx context.Context, root, dir, pkg, name string) (string, error) {
	bin := filepath.Join(dir, name)
	build := exec.CommandContext(ctx, filepath.Join(root, "hack", "build.sh"), "-o", bin, pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w: %s", name, err, out)
	}
	return bin, nil
}

// StartOperator builds cmd/manager (unless opts.Binary is set), applies
// the generated RBAC and the admission policies of config/admission, and
// runs the operator as its own process, authenticated as its
// ServiceAccount with a TokenRequest token: exactly the permissions it
// ships with, and the limits beyond them. Call Stop or Kill to end it.
func StartOperator(ctx context.Context, admin client.Client, base *rest.Config, opts OperatorOptions) (*Operator, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}}
	if err := admin.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", opts.Namespace, err)
	}
	if err := manifests.ApplyRBAC(ctx, admin, opts.Root, opts.Namespace, "loadshed-replay"); err != nil {
		return nil, err
	}
	if err := manifests.ApplyAdmission(ctx, admin, opts.Root, "loadshed-replay"); err != nil {
		return nil, err
	}
	return StartOperatorAs(ctx, base, opts)
}

// StartOperatorAs is StartOperator without applying anything: it runs the
// operator as opts.ServiceAccount, which must exist in opts.Namespace with
// its permissions already granted (by a Helm release, say). base reaches
// the API server with the rights to request that ServiceAccount's token.
func StartOperatorAs(ctx context.Context, base *rest.Config, opts OperatorOptions) (*Operator, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = BuildOperator(ctx, opts.Root, opts.Dir); err != nil {
			return nil, err
		}
	}
	name := cmp.Or(opts.Name, "loadshed-operator")
	token, err := ServiceAccountToken(ctx, base, opts.Namespace, opts.ServiceAccount)
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(opts.Dir, name+".kubeconfig")
	if err := WriteKubeconfig(kubeconfig, base, token, opts.ProxyURL); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(opts.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, operatorArgs(kubeconfig, opts)...)
	cmd.Stdout, cmd.Stderr = log, log
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting the operator: %w", err)
	}
	return &Operator{cmd: cmd, log: log, Log: log.Name()}, nil
}

// ServiceAccountToken requests a token for a ServiceAccount (TokenRequest,
// valid for a day), as the kubelet does for its pods.
func ServiceAccountToken(ctx context.Context, base *rest.Config, namespace, name string) (string, error) {
	cs, err := kubernetes.NewForConfig(base)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// operatorArgs are the operator's flags: no metrics or probe server (the
// replicas of a test would compete for their ports), and leader election
// as opts say.
func operatorArgs(kubeconfig string, opts OperatorOptions) []string {
	args := []string{"--kubeconfig=" + kubeconfig, "--namespace=" + opts.Namespace, "--service-account=" + opts.ServiceAccount,
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--log-format=console"}
	le := opts.LeaderElection
	if le == nil {
		return append(append(args, "--leader-elect=false"), opts.Args...)
	}
	args = append(args, "--leader-elect=true")
	if le.ID != "" {
		args = append(args, "--leader-election-id="+le.ID)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"lease-duration", le.LeaseDuration}, {"renew-deadline", le.RenewDeadline}, {"retry-period", le.RetryPeriod}} {
		if f.d > 0 {
			args = append(args, "--leader-election-"+f.name+"="+f.d.String())
		}
	}
	return append(args, opts.Args...)
}

// Operator is the operator's running process.
type Operator struct {
	// Log is the path of its log.
	Log string
	cmd *exec.Cmd
	log *os.File
}

// Stop ends the process gracefully (SIGINT: a leader releases its Lease),
// killing it if it has not ended within 10s.
func (o *Operator) Stop() {
	localcluster.StopProcess(o.cmd)
	_ = o.log.Close()
}

// Pid is the process's ID.
func (o *Operator) Pid() int { return o.cmd.Process.Pid }

// Kill ends the process with SIGKILL, as a crash or an OOM kill would:
// nothing of it runs after, no Lease is released. It returns once the
// process is gone.
func (o *Operator) Kill() error {
	if err := o.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing the operator: %w", err)
	}
	_ = o.cmd.Wait() // "signal: killed"
	_ = o.log.Close()
	return nil
}

// PeakRSS is the most memory the running process has held so far (VmHWM,
// from /proc through procfs: Linux only).
func (o *Operator) PeakRSS() (int64, error) {
	proc, err := procfs.NewProc(o.cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	status, err := proc.NewStatus()
	if err != nil {
		return 0, err
	}
	return int64(status.VmHWM), nil
}

// WriteKubeconfig writes a kubeconfig for base's server and CA with a token,
// through proxyURL when it is set.
func WriteKubeconfig(path string, base *rest.Config, token, proxyURL string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: base.Host, CertificateAuthorityData: base.CAData, ProxyURL: proxyURL}
	cfg.AuthInfos["operator"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "operator"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}
