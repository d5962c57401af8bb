// Package helmtest installs Helm charts on a local cluster as on a real
// one: it runs the pinned Helm with an admin kubeconfig, and plays the
// kubelet for what a chart runs there, its hook Jobs (RunHookJobs), with
// the operator's binary built from the checkout and each Job's own
// ServiceAccount token. test/chart uses it; so can any test that installs
// or removes loadshed with Helm.
package helmtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// HelmEnv names the variable that holds the pinned Helm's path; `make test`
// exports it (bin/helm-<version>, built by `make helm`).
const HelmEnv = "LOADSHED_HELM"

// KustomizeEnv names the variable that holds the pinned kustomize's path;
// `make test` exports it.
const KustomizeEnv = "LOADSHED_KUSTOMIZE"

// Tool returns the path in the environment variable env, or fails the test
// saying how to get it.
func Tool(tb testing.TB, env string) string {
	tb.Helper()
	path := os.Getenv(env)
	if path == "" {
		tb.Fatalf("%s is not set: run `make test`, which builds the pinned tools and exports it "+
			"(or `make tools` and export %s=$PWD/bin/<tool>-<version>)", env, env)
	}
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("%s=%s: %v (run `make tools`)", env, path, err)
	}
	return path
}

// Helm runs one Helm binary against one cluster, with its own cache,
// configuration and data directories (nothing of the user's ~/.config/helm
// is read or written).
type Helm struct {
	// Bin is Helm's path.
	Bin string
	// Kubeconfig is the kubeconfig it uses (an admin's).
	Kubeconfig string
	dir        string
}

// New returns a Helm that keeps its files in dir and reaches the cluster
// with cfg, which it writes into dir/kubeconfig.
func New(bin string, cfg *rest.Config, dir string) (*Helm, error) {
	h := &Helm{Bin: bin, Kubeconfig: filepath.Join(dir, "kubeconfig"), dir: dir}
	if cfg == nil {
		return h, nil
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
	}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin"}
	kc.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*kc, h.Kubeconfig); err != nil {
		return nil, fmt.Errorf("writing Helm's kubeconfig: %w", err)
	}
	return h, nil
}

// Run runs Helm with args and returns its standard output; an error
// carries its standard error.
func (h *Helm) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.Bin, args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+h.Kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(h.dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.dir, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(h.dir, "helm", "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w: %s%s",
			strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}
