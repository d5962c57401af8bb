// Package operator wires loadshed's manager: the scheme, the cache, the
// metrics server, health checks, leader election and the controllers. The
// binary and the tests build the operator through New, so that the tests run
// exactly what ships.
package operator

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/operatorref"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/scheme"
)

// Options configure the operator.
type Options struct {
	// Namespace is the operator's own namespace.
	Namespace string
	// MetricsAddr is where /metrics is served; "0" turns it off.
	MetricsAddr string
	// SecureMetrics serves /metrics over HTTPS behind authentication and
	// authorization (TokenReview and SubjectAccessReview).
	SecureMetrics bool
	// EnableHTTP2 allows HTTP/2 on the metrics server; off by default
	// against HTTP/2 stream-reset attacks (CVE-2023-44487).
	EnableHTTP2 bool
	// ProbeAddr is where /healthz and /readyz are served; "0" turns it off.
	ProbeAddr string
	// LeaderElection makes only one replica act at a time.
	LeaderElection bool
	// LeaderElectionID names the Lease used for leader election.
	LeaderElectionID string
	// LeaseDuration is how long a standby replica waits, since it last saw
	// the leader renew the Lease, before it takes the lead; RenewDeadline
	// is how long the leader tries to renew before it gives up; RetryPeriod
	// is how often each replica tries. Zero takes the defaults
	// (DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// RestartableInProcess allows starting the operator more than once in
	// one process (tests that stop and restart it): controller-runtime
	// otherwise refuses a second controller with the same name.
	RestartableInProcess bool
	// ServiceAccount is the name of the operator's ServiceAccount, in
	// Namespace: its requests are routed to the exempt priority level.
	ServiceAccount string
}

// DefaultServiceAccount is the operator's ServiceAccount in config/rbac.
const DefaultServiceAccount = operatorref.ServiceAccount

// DefaultLeaderElectionID is the name of the leader election Lease
// (kubectl loadshed release reads it to tell whether an operator leads).
const DefaultLeaderElectionID = operatorref.LeaderElectionID

// The leader election's timings by default: twice client-go's (15s, 10s,
// 2s), because an overloaded API server answers slowly, and losing the
// lease then would stop the operator when it matters most. A leader that
// stops gracefully releases the Lease and a standby takes over within a
// RetryPeriod; one that dies without releasing it (SIGKILL, a lost node) is
// replaced once the Lease has expired, about LeaseDuration later
// (docs/operations.md, "Leader failover").
const (
	DefaultLeaseDuration = 30 * time.Second
	DefaultRenewDeadline = 20 * time.Second
	DefaultRetryPeriod   = 5 * time.Second
)

// New returns a manager with loadshed's controllers registered. Start runs it.
func New(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if opts.Namespace == "" {
		return nil, fmt.Errorf("the operator's namespace is required")
	}
	s, err := scheme.New()
	if err != nil {
		return nil, err
	}
	mgrOpts, err := ManagerOptions(s, opts)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := addControllers(mgr, opts); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding readiness check: %w", err)
	}
	return mgr, nil
}

// ManagerOptions are the manager's options, as New uses them: metrics,
// probes, leader election and a cache of only what the operator may read.
// It fails on leader election timings client-go would refuse.
func ManagerOptions(s *runtime.Scheme, opts Options) (ctrl.Options, error) {
	t, err := leaderElectionTimings(opts)
	if err != nil {
		return ctrl.Options{}, err
	}
	return managerOptions(s, opts, t), nil
}

// leaseTimings are the leader election's timings.
type leaseTimings struct {
	leaseDuration, renewDeadline, retryPeriod time.Duration
}

// leaderElectionTimings returns opts' leader election timings, the defaults
// in place of zeros, or an error when client-go would refuse them: the
// lease must outlast the renew deadline, which must outlast a retry
// period and its jitter.
func leaderElectionTimings(opts Options) (leaseTimings, error) {
	t := leaseTimings{
		leaseDuration: cmp.Or(opts.LeaseDuration, DefaultLeaseDuration),
		renewDeadline: cmp.Or(opts.RenewDeadline, DefaultRenewDeadline),
		retryPeriod:   cmp.Or(opts.RetryPeriod, DefaultRetryPeriod),
	}
	switch {
	case t.leaseDuration < 0 || t.renewDeadline < 0 || t.retryPeriod < 0:
		return t, fmt.Errorf("the leader election's timings must be positive: lease duration %v, renew deadline %v, retry period %v",
			t.leaseDuration, t.renewDeadline, t.retryPeriod)
	case t.leaseDuration <= t.renewDeadline:
		return t, fmt.Errorf("the lease duration (%v) must be longer than the renew deadline (%v)", t.leaseDuration, t.renewDeadline)
	case float64(t.renewDeadline) <= leaderelection.JitterFactor*float64(t.retryPeriod):
		return t, fmt.Errorf("the renew deadline (%v) must be longer than %v times the retry period (%v)",
			t.renewDeadline, leaderelection.JitterFactor, t.retryPeriod)
	}
	return t, nil
}

// managerOptions are the manager's options: metrics, probes, leader
// election and a cache of only what the operator may read.
func managerOptions(s *runtime.Scheme, opts Options, t leaseTimings) ctrl.Options {
	return ctrl.Options{
		Scheme:                 s,
		Metrics:                metricsOptions(opts),
		HealthProbeBindAddress: opts.ProbeAddr,
		LeaderElection:         opts.LeaderElection,
		LeaderElectionID:       opts.LeaderElectionID,
		// The Lease lives in the operator's namespace, where its Role allows it.
		LeaderElectionNamespace: opts.Namespace,
		// Give up leadership at once on shutdown, so a new replica takes over
		// without waiting for the lease to expire.
		LeaderElectionReleaseOnCancel: true,
		// Longer than client-go's by default: see DefaultLeaseDuration.
		LeaseDuration: &t.leaseDuration,
		RenewDeadline: &t.renewDeadline,
		RetryPeriod:   &t.retryPeriod,
		Controller:    config.Controller{SkipNameValidation: ptr.To(opts.RestartableInProcess)},
		Cache: cache.Options{
			// The operator never reads managedFields: a DaemonSet it updates
			// keeps them (an update without them leaves them as they are).
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Node{}:      {Transform: nameAndLabels},
				&corev1.Namespace{}: {Transform: nameAndLabels},
				// Secrets are read from the operator's namespace only, where
				// its Role allows it: no cluster-wide access to Secrets.
				&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
				// The API servers' endpoints, and nothing else of EndpointSlices.
				&discoveryv1.EndpointSlice{}: {Namespaces: map[string]cache.Config{metav1.NamespaceDefault: {
					LabelSelector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: "kubernetes"}),
				}}},
			},
		},
	}
}

// metricsOptions configure the /metrics server.
func metricsOptions(opts Options) metricsserver.Options {
	m := metricsserver.Options{
		BindAddress:   opts.MetricsAddr,
		SecureServing: opts.SecureMetrics,
	}
	if !opts.EnableHTTP2 {
		m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	if opts.SecureMetrics {
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// addControllers adds the sampler, the controllers and self-protection.
func addControllers(mgr ctrl.Manager, opts Options) error {
	smp, err := sampler.New(mgr.GetConfig(), mgr.GetClient(), clock.RealClock{})
	if err != nil {
		return err
	}
	if err := mgr.Add(smp); err != nil {
		return fmt.Errorf("adding the sampler: %w", err)
	}
	sa := opts.ServiceAccount
	if sa == "" {
		sa = DefaultServiceAccount
	}
	if err := (&controllers.LoadShedPolicyReconciler{
		Client:         mgr.GetClient(),
		Namespace:      opts.Namespace,
		ServiceAccount: sa,
		Sampler:        smp,
		Recorder:       mgr.GetEventRecorder(operatorref.EventReporter),
		Clock:          clock.RealClock{},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the LoadShedPolicy controller: %w", err)
	}
	if err := mgr.Add(&controllers.LegacyAttributionCleanup{Client: mgr.GetClient()}); err != nil {
		return fmt.Errorf("adding the cleanup of legacy attribution FlowSchemas: %w", err)
	}
	if err := mgr.Add(&selfProtection{
		client: mgr.GetClient(), reader: mgr.GetAPIReader(),
		sa: attribution.ServiceAccount{Namespace: opts.Namespace, Name: sa},
	}); err != nil {
		return fmt.Errorf("adding self-protection: %w", err)
	}
	return nil
}
