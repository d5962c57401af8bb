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
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/localcluster"
	"github.com/loadshed/loadshed/internal/logging"
	"github.com/loadshed/loadshed/internal/manifests"
	loadshedscheme "github.com/loadshed/loadshed/internal/scheme"
)

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is a cluster-admin client with loadshed's scheme.
	Client       client.Client
	cluster      *localcluster.Cluster
	stopOperator func() error
	dir          string
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Options say what a test package's control plane runs.
type Options struct {
	// Components are started beside etcd and kube-apiserver:
	// kube-controller-manager, kube-scheduler, kwok (see internal/localcluster).
	Components []string
	// APIServers is how many kube-apiservers run on the one etcd (one when
	// zero), each published in default/kubernetes; Config reaches the first.
	APIServers int
	// LogLevel is the operator's log level; by default
	// LOADSHED_TEST_LOG_LEVEL, else "error" (only its errors show in the
	// test output; info or debug show everything it logs).
	LogLevel string
	// DisabledControllers are kube-controller-manager's controllers not to
	// run (see localcluster.Options).
	DisabledControllers []string
	// NoCRDs leaves loadshed's CRDs out, for a test that installs them
	// itself (a Helm chart, say).
	NoCRDs bool
	// Operator, when set, runs the operator in the test process for the
	// whole run, as cmd/manager wires it, as cluster admin, with these
	// options. Its namespace is created first.
	Operator *operator.Options
}

// Start starts etcd and kube-apiserver, installs the CRDs, and starts what
// opts ask for. Call it from TestMain (or use Main) and Stop the result when
// the tests are done.
func Start(opts Options) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make test`, " +
			"or export KUBEBUILDER_ASSETS=\"$(hack/controlplane/ensure.sh)\"")
	}
	level := opts.LogLevel
	if level == "" {
		level = envOr("LOADSHED_TEST_LOG_LEVEL", "error")
	}
	log, err := logging.New(level, logging.FormatConsole)
	if err != nil {
		return nil, err
	}
	ctrl.SetLogger(log)

	crds := []string{filepath.Join(RepoRoot(), "config", "crd", "bases")}
	if opts.NoCRDs {
		crds = nil
	}
	cluster, err := localcluster.Start(localcluster.Options{
		Assets:              os.Getenv("KUBEBUILDER_ASSETS"),
		CRDs:                crds,
		Components:          opts.Components,
		APIServers:          opts.APIServers,
		DisabledControllers: opts.DisabledControllers,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	e := &Env{Config: cluster.Config, cluster: cluster}
	if e.dir, err = os.MkdirTemp("", "loadshed-testenv-"); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if err := e.start(opts); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

// start makes the admin client and starts the in-process operator.
func (e *Env) start(opts Options) error {
	s, err := loadshedscheme.New()
	if err != nil {
		return err
	}
	if e.Client, err = client.New(e.Config, client.Options{Scheme: s}); err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	if opts.Operator == nil {
		return nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Operator.Namespace}}
	if err := e.Client.Create(context.Background(), ns); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("creating the operator's namespace: %w", err)
	}
	e.stopOperator, err = e.StartOperator(e.Config, *opts.Operator)
	return err
}

// StartOperator runs the operator in this process, as cmd/manager wires it,
// with cfg's identity, until the returned function is called; that function
// returns the error the operator stopped with, and may be called again. The
// operator dials through the cluster's dialer, so that its sampler reaches
// each kube-apiserver at the address default/kubernetes publishes for it
// (see localcluster.Cluster.Dial).
func (e *Env) StartOperator(cfg *rest.Config, opts operator.Options) (stop func() error, err error) {
	mgr, err := operator.New(e.cluster.WithDialer(cfg), opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return sync.OnceValue(func() error {
		cancel()
		return <-done
	}), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Dir is a directory for what a test package keeps while it runs (an
// operator binary built once for all its tests); Stop removes it.
func (e *Env) Dir() string { return e.dir }

// RestartAPIServerAfter stops kube-apiserver, keeps it down for down, and
// starts it again (see localcluster.Cluster.RestartAPIServerAfter).
func (e *Env) RestartAPIServerAfter(down time.Duration) (stopped string, err error) {
	return e.cluster.RestartAPIServerAfter(down)
}

// StopAPIServer stops kube-apiserver i (see
// localcluster.Cluster.StopAPIServer).
func (e *Env) StopAPIServer(i int) (stopped string, err error) { return e.cluster.StopAPIServer(i) }

// StartAPIServer starts kube-apiserver i again after StopAPIServer.
func (e *Env) StartAPIServer(i int) error { return e.cluster.StartAPIServer(i) }

// APIServers is how many kube-apiservers the control plane runs.
func (e *Env) APIServers() int { return e.cluster.APIServers() }

// WithDialer returns a copy of cfg that dials through the cluster's dialer,
// as the operator's sampler needs (localcluster.Cluster.WithDialer).
func (e *Env) WithDialer(cfg *rest.Config) *rest.Config { return e.cluster.WithDialer(cfg) }

// APIServerConfig is a copy of Config that reaches kube-apiserver i.
func (e *Env) APIServerConfig(i int) *rest.Config { return e.cluster.APIServerConfig(i) }

// Kubeconfig is the path of an admin kubeconfig for the control plane, for
// the tools a test runs (kubectl, helm, make).
func (e *Env) Kubeconfig() string { return e.cluster.Kubeconfig() }

// ProxyURL is the proxy an operator process reaches the cluster through
// (localcluster.Cluster.ProxyURL).
func (e *Env) ProxyURL() string { return e.cluster.ProxyURL() }

// AdvertisedURL is the base URL default/kubernetes publishes for
// kube-apiserver i, which the operator's sampler scrapes.
func (e *Env) AdvertisedURL(i int) string { return e.cluster.AdvertisedURL(i) }

// Stop stops the in-process operator, if any, then the control plane. An
// operator that stopped with an error is an error.
func (e *Env) Stop() error {
	var errs []error
	if e.stopOperator != nil {
		if err := e.stopOperator(); err != nil {
			errs = append(errs, fmt.Errorf("the operator stopped with an error: %w", err))
		}
	}
	if err := e.cluster.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Main runs a package's tests against a control plane started for them with
// opts, and exits with their result. Use it as the body of TestMain.
func Main(m *testing.M, env **Env, opts Options) {
	e, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
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
