// Package testenv starts a real etcd and kube-apiserver (controller-runtime's
// envtest) with loadshed's CRDs installed, for the tests that claim
// Kubernetes behaviour. The binaries come from KUBEBUILDER_ASSETS, which
// `make test` sets to what hack/controlplane/ensure.sh built or found.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/localcluster"
	"github.com/loadshed/loadshed/internal/logging"
	"github.com/loadshed/loadshed/internal/manifests"
	"github.com/loadshed/loadshed/internal/operator"
)

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is a cluster-admin client with loadshed's scheme.
	Client  client.Client
	cluster *localcluster.Cluster
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Start starts etcd and kube-apiserver and installs the CRDs, plus the
// components named (kube-controller-manager, kube-scheduler, kwok; see
// internal/localcluster). Call it from TestMain and Stop the result when the
// tests are done.
func Start(components ...string) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test`, " +
			"or export KUBEBUILDER_ASSETS=\"$(hack/controlplane/ensure.sh)\"")
	}
	// The operator's errors show in the test output; set
	// LOADSHED_TEST_LOG_LEVEL=info (or debug) for everything it logs.
	log, err := logging.New(envOr("LOADSHED_TEST_LOG_LEVEL", "error"), logging.FormatConsole)
	if err != nil {
		return nil, err
	}
	ctrl.SetLogger(log)

	cluster, err := localcluster.Start(localcluster.Options{
		Assets:     os.Getenv("KUBEBUILDER_ASSETS"),
		CRDs:       []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		Components: components,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	scheme, err := operator.Scheme()
	if err != nil {
		_ = cluster.Stop()
		return nil, err
	}
	c, err := client.New(cluster.Config, client.Options{Scheme: scheme})
	if err != nil {
		_ = cluster.Stop()
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return &Env{Config: cluster.Config, Client: c, cluster: cluster}, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Stop stops the control plane.
func (e *Env) Stop() error {
	return e.cluster.Stop()
}

// Main runs a package's tests against a control plane started for them, and
// exits with their result. Use it as the body of TestMain.
func Main(m *testing.M, env **Env) {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
	}
	os.Exit(code)
}

// ReadObjects reads every object of a multi-document YAML file, relative to
// the repository's top directory.
func ReadObjects(path string) ([]*unstructured.Unstructured, error) {
	return manifests.Read(filepath.Join(RepoRoot(), path))
}

// Apply creates each object (or updates it when it exists) as cluster admin.
func (e *Env) Apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	return manifests.Apply(ctx, e.Client, "loadshed-tests", objs...)
}
