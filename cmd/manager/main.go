// Command loadshed-operator runs the loadshed operator. It only turns flags
// into the constructors' options; controllers/operator does the wiring.
//
// `loadshed-operator uninstall` gives back everything loadshed holds before
// the operator is removed (see internal/uninstall).
package main

import (
	"flag"
	"fmt"
	"os"

	// CA roots for the Prometheus client where the system has none, as in
	// the image make image builds, which holds no CA file (docs/release.md).
	_ "golang.org/x/crypto/x509roots/fallback"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/logging"
	"github.com/loadshed/loadshed/internal/operatorref"
	"github.com/loadshed/loadshed/internal/version"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "uninstall" {
		os.Exit(runUninstall(os.Args[2:]))
	}
	var (
		opts      operator.Options
		logLevel  string
		logFormat string
	)
	// --kubeconfig is registered by controller-runtime's config package.
	flag.StringVar(&opts.Namespace, "namespace", envOr("POD_NAMESPACE", operatorref.Namespace),
		"The operator's own namespace: Secrets are read from it, its DaemonSets are protected, "+
			"and the leader election Lease lives in it.")
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8443",
		"The address /metrics is served on; 0 turns it off.")
	flag.BoolVar(&opts.SecureMetrics, "metrics-secure", true,
		"Serve /metrics over HTTPS, for authenticated and authorized clients only.")
	flag.BoolVar(&opts.EnableHTTP2, "enable-http2", false,
		"Allow HTTP/2 on the metrics server (off against HTTP/2 stream-reset attacks).")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081",
		"The address /healthz and /readyz are served on; 0 turns them off.")
	flag.BoolVar(&opts.LeaderElection, "leader-elect", true,
		"Elect a leader, so that only one replica acts at a time.")
	flag.StringVar(&opts.LeaderElectionID, "leader-election-id", operator.DefaultLeaderElectionID,
		"The name of the leader election Lease.")
	flag.DurationVar(&opts.LeaseDuration, "leader-election-lease-duration", operator.DefaultLeaseDuration,
		"How long a standby replica waits, since it last saw the leader renew the Lease, before it takes the lead: "+
			"a leader killed without releasing the Lease is replaced about this long after.")
	flag.DurationVar(&opts.RenewDeadline, "leader-election-renew-deadline", operator.DefaultRenewDeadline,
		"How long the leader tries to renew the Lease before it stops leading; shorter than the lease duration.")
	flag.DurationVar(&opts.RetryPeriod, "leader-election-retry-period", operator.DefaultRetryPeriod,
		"How often the leader renews the Lease and a standby replica tries to take it.")
	flag.StringVar(&opts.ServiceAccount, "service-account", envOr("SERVICE_ACCOUNT_NAME", operator.DefaultServiceAccount),
		"The operator's ServiceAccount, in --namespace: its requests are routed to the exempt priority level.")
	flag.StringVar(&logLevel, "log-level", "info", "Log level: debug, info, error, or a verbosity from 0 to 10.")
	flag.StringVar(&logFormat, "log-format", logging.FormatJSON, "Log format: json or console.")
	version.AddFlag(flag.CommandLine, "loadshed-operator")
	flag.Parse()

	log, err := logging.New(logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(log)
	klog.SetLogger(log)

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Failed to load a kubeconfig")
		os.Exit(1)
	}
	mgr, err := operator.New(cfg, opts)
	if err != nil {
		log.Error(err, "Failed to create the operator")
		os.Exit(1)
	}
	log.Info("Starting the operator", "namespace", opts.Namespace, "leaderElection", opts.LeaderElection)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The operator stopped with an error")
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
