package replay

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

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
	// ProxyURL is the proxy the operator reaches the cluster through
	// (localcluster.Cluster.ProxyURL): its sampler follows the addresses
	// default/kubernetes publishes, which only the cluster's dialer reaches.
	ProxyURL string
}

// StartOperator builds cmd/manager, applies the generated RBAC and the
// admission policies of config/admission, and runs the operator as its own
// process, authenticated as its ServiceAccount with a TokenRequest token:
// exactly the permissions it ships with, and the limits beyond them. Call
// stop to end it.
func StartOperator(ctx context.Context, admin client.Client, base *rest.Config, opts OperatorOptions) (*Operator, error) {
	bin := filepath.Join(opts.Dir, "loadshed-operator")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	build.Dir = opts.Root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the operator: %w: %s", err, out)
	}
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
	cs, err := kubernetes.NewForConfig(base)
	if err != nil {
		return nil, err
	}
	tr, err := cs.CoreV1().ServiceAccounts(opts.Namespace).CreateToken(ctx, opts.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting the operator's token: %w", err)
	}
	kubeconfig := filepath.Join(opts.Dir, "operator.kubeconfig")
	if err := writeKubeconfig(kubeconfig, base, tr.Status.Token, opts.ProxyURL); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(opts.Dir, "loadshed-operator.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--namespace="+opts.Namespace, "--service-account="+opts.ServiceAccount,
		"--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0", "--log-format=console")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting the operator: %w", err)
	}
	return &Operator{cmd: cmd, log: log, Log: log.Name()}, nil
}

// Operator is the operator's running process.
type Operator struct {
	// Log is the path of its log.
	Log string
	cmd *exec.Cmd
	log *os.File
}

// Stop ends the process.
func (o *Operator) Stop() {
	localcluster.StopProcess(o.cmd)
	_ = o.log.Close()
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

// writeKubeconfig writes a kubeconfig for base's server and CA with a token,
// through proxyURL when it is set.
func writeKubeconfig(path string, base *rest.Config, token, proxyURL string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: base.Host, CertificateAuthorityData: base.CAData, ProxyURL: proxyURL}
	cfg.AuthInfos["operator"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "operator"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, path)
}
