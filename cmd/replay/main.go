// Command loadshed-replay replays the incident of 2024-12-11 on a local
// control plane, once with the API server's defaults only (baseline) and
// once with loadshed and its sample policy, and scores both; or any other
// scenarios (--scenarios), such as benign bursts of load, any number of
// times (--repeat). With --source=prometheus the loadshed scenario runs the
// sample policy that reads Prometheus, acting, against a Prometheus server
// each scenario runs. `make demo` runs it. It only turns flags into
// internal/replay's options.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/internal/version"
)

func main() {
	var (
		cfg  replay.Config
		opts options
	)
	flag.StringVar(&opts.assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"),
		"Directory of the control plane's binaries (`make controlplane` prints it).")
	flag.StringVar(&cfg.Root, "root", ".",
		"The repository checkout: CRDs, RBAC, the sample policy and cmd/manager come from it.")
	flag.StringVar(&opts.results, "results", "results",
		"Directory the report is written under (one subdirectory per run).")
	flag.StringVar(&opts.scenarios, "scenarios", "baseline,loadshed",
		"Scenarios to run, in order, comma-separated: "+strings.Join(replay.ScenarioNames(), ", ")+".")
	flag.IntVar(&opts.repeat, "repeat", 1,
		"Run the scenarios this many times (one after the other, in turn) and report the median and range of every score.")
	flag.IntVar(&cfg.APIServers, "apiservers", 1,
		"kube-apiservers on the cluster's etcd, each published in default/kubernetes and scraped by loadshed; "+
			"the load goes to the first.")
	flag.IntVar(&cfg.Nodes, "nodes", 50, "Fake Nodes, each running one telemetry agent.")
	flag.IntVar(&cfg.ConfigMaps, "configmaps", 3000, "Background ConfigMaps that make every cluster-wide LIST expensive.")
	flag.IntVar(&cfg.ConfigMapBytes, "configmap-bytes", 16384, "Size of each background ConfigMap.")
	flag.Float64Var(&cfg.AgentRate, "agent-rate", 1, "LISTs per second of each misconfigured agent.")
	flag.IntVar(&cfg.AgentParallel, "agent-parallel", 4, "LISTs each misconfigured agent has in flight at most.")
	flag.DurationVar(&cfg.Quiet, "quiet", 30*time.Second, "Quiet time before the flood (or the burst).")
	flag.DurationVar(&cfg.FixAfter, "fix-after", 4*time.Minute, "Time from the flood's start to the configuration fix.")
	flag.DurationVar(&cfg.Tail, "tail", 4*time.Minute, "Time from the fix (or the burst's end) to the end.")
	flag.DurationVar(&cfg.BurstFor, "burst-for", time.Minute,
		"Least length of a benign burst: one that loops keeps at it this long; one done sooner is followed by its aftermath.")
	flag.Float64Var(&cfg.CPUNoise, "cpu-noise", 0,
		"Cores' worth of CPU a competing process burns during each scenario's timeline (e.g. 1.0); 0 for none.")
	flag.DurationVar(&cfg.Innocent.Period, "innocent-period", 200*time.Millisecond,
		"Time between two rounds of requests of each innocent client.")
	flag.DurationVar(&cfg.Innocent.Timeout, "innocent-timeout", 5*time.Second,
		"An innocent request not answered in this time counts as failed.")
	flag.Float64Var(&opts.timeScale, "time-scale", 6,
		"The sample policy's durations (interval, for, windows, restore, backoff) are divided by this.")
	flag.StringVar(&opts.source, "source", sourceAPIServer,
		"Where the loadshed scenario's policy reads its signals: apiServer (the sample policy, "+replay.SamplePolicyPath+
			") or prometheus (the sample that reads Prometheus, "+replay.PrometheusSamplePolicyPath+
			", with its dryRun turned off and its URL and CA set to a Prometheus that every scenario runs).")
	flag.StringVar(&opts.prometheus, "prometheus", os.Getenv("LOADSHED_PROMETHEUS"),
		"The Prometheus server's binary for --source=prometheus "+
			"(`make prometheus` builds bin/prometheus-<version>; `make demo` passes it).")
	flag.DurationVar(&opts.scrapeInterval, "prometheus-scrape-interval", replay.DefaultPrometheusScrapeInterval,
		"How often each scenario's Prometheus scrapes every kube-apiserver, with --source=prometheus.")
	flag.BoolVar(&cfg.Keep, "keep", false,
		"Leave each cluster running after its scenario, until Ctrl-C, and print its kubeconfig.")
	version.AddFlag(flag.CommandLine, "loadshed-replay")
	flag.Parse()

	if err := run(cfg, opts); err != nil {
		fmt.Fprintln(os.Stderr, "loadshed-replay:", err)
		os.Exit(1)
	}
}

// options are the flags that are not the scenarios' Config.
type options struct {
	assets, results, scenarios string
	repeat                     int
	timeScale                  float64
	// source is where the loadshed scenario's policy reads its signals;
	// prometheus the Prometheus server's binary for it.
	source, prometheus string
	scrapeInterval     time.Duration
}

// The values of --source.
const (
	sourceAPIServer  = "apiServer"
	sourcePrometheus = "prometheus"
)

func run(cfg replay.Config, opts options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opts.assets == "" {
		return fmt.Errorf("no control plane binaries: pass --assets or set KUBEBUILDER_ASSETS (`make demo` does)")
	}
	if opts.repeat < 1 || (opts.repeat > 1 && cfg.Keep) {
		return fmt.Errorf("--repeat=%d: want 1 or more, and 1 with --keep", opts.repeat)
	}
	cfg.Assets = opts.assets
	cfg.Progress = os.Stdout
	if err := withSource(&cfg, opts); err != nil {
		return err
	}
	configs, err := scenarioConfigs(cfg, opts)
	if err != nil {
		return err
	}
	dir := filepath.Join(opts.results, time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	syncLog, err := logTo(filepath.Join(dir, "replay.log"))
	if err != nil {
		return err
	}
	defer syncLog()
	var stops []func()
	defer func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}()
	runs, failed := repeatScenarios(ctx, configs, dir, opts.repeat, &stops)
	if len(runs) == 0 {
		return failed
	}
	// What ran is reported also when a scenario failed.
	page, err := replay.WriteReport(dir, runs)
	if err != nil {
		return errors.Join(failed, err)
	}
	fmt.Printf("\n%s\nReport: %s (time series in %s, logs beside them)\n",
		replay.Summary(runs), page, filepath.Join(dir, "timeline.csv"))
	if failed != nil {
		return failed
	}
	if cfg.Keep {
		fmt.Println("The clusters are still running (--keep). Press Ctrl-C to stop them.")
		<-ctx.Done()
	}
	return nil
}

// withSource sets up every scenario for --source: with prometheus, each
// runs a Prometheus server (the baseline too, so that all see the same
// machine).
func withSource(cfg *replay.Config, opts options) error {
	switch opts.source {
	case sourceAPIServer:
		return nil
	case sourcePrometheus:
		if opts.prometheus == "" {
			return errors.New("--source=prometheus needs the Prometheus server: pass --prometheus=bin/prometheus-<version> " +
				"(`make prometheus` builds it; `make demo` passes it)")
		}
		cfg.Prometheus = &replay.Prometheus{Binary: opts.prometheus, ScrapeInterval: opts.scrapeInterval}
		return nil
	}
	return fmt.Errorf("--source=%s: want %s or %s", opts.source, sourceAPIServer, sourcePrometheus)
}

// samplePolicy is the policy the scenarios run: the sample, or with
// --source=prometheus the sample that reads Prometheus, acting (its dryRun
// off); the replay points it at its own Prometheus.
func samplePolicy(root string, opts options) (*v1alpha1.LoadShedPolicy, error) {
	if opts.source != sourcePrometheus {
		return replay.SamplePolicy(root)
	}
	p, err := replay.PrometheusSamplePolicy(root)
	if err != nil {
		return nil, err
	}
	p.Spec.DryRun = false
	fmt.Printf("The policy reads Prometheus: %s, with dryRun turned off, and its URL and CA set to the Prometheus "+
		"each scenario runs.\n", replay.PrometheusSamplePolicyPath)
	return p, nil
}

// scenarioConfigs are the configurations of the scenarios named, in order.
func scenarioConfigs(cfg replay.Config, opts options) ([]replay.Config, error) {
	sample, err := samplePolicy(cfg.Root, opts)
	if err != nil {
		return nil, err
	}
	var configs []replay.Config
	for name := range strings.SplitSeq(opts.scenarios, ",") {
		c, err := replay.ForScenario(cfg, name, sample, opts.timeScale)
		if err != nil {
			return nil, err
		}
		configs = append(configs, c)
	}
	return configs, nil
}

// logTo sends the libraries' own logs (envtest, client-go) to a file: the
// terminal is for the progress lines. Call sync at the end.
func logTo(path string) (sync func(), err error) {
	logCfg := zap.NewDevelopmentConfig()
	logCfg.Development = false
	logCfg.OutputPaths = []string{path}
	logCfg.ErrorOutputPaths = logCfg.OutputPaths
	z, err := logCfg.Build()
	if err != nil {
		return nil, fmt.Errorf("opening the replay's log: %w", err)
	}
	ctrl.SetLogger(zapr.NewLogger(z))
	klog.SetLogger(zapr.NewLogger(z))
	return func() { _ = z.Sync() }, nil
}

// repeatScenarios runs the scenarios repeat times, in turn, each run's logs
// under dir/run-<k> when there are several. On an error it returns the
// runs done before it, the last one as far as it went.
func repeatScenarios(ctx context.Context, configs []replay.Config, dir string, repeat int,
	stops *[]func()) ([][]replay.Scenario, error) {
	runs := make([][]replay.Scenario, 0, repeat)
	for i := range repeat {
		runDir := dir
		if repeat > 1 {
			runDir = filepath.Join(dir, fmt.Sprintf("run-%d", i+1))
			fmt.Printf("\nRun %d of %d\n", i+1, repeat)
		}
		done, err := runScenarios(ctx, configs, runDir, stops)
		if len(done) > 0 {
			runs = append(runs, done)
		}
		if err != nil {
			return runs, err
		}
	}
	return runs, nil
}

// runScenarios runs each scenario once, its logs under dir/<name>; the
// clusters kept (--keep) add their stop to stops. On an error it returns
// the scenarios done before it.
func runScenarios(ctx context.Context, configs []replay.Config, dir string,
	stops *[]func()) ([]replay.Scenario, error) {
	var done []replay.Scenario
	for _, c := range configs {
		c.Dir = filepath.Join(dir, c.Name)
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return nil, err
		}
		name := c.Name
		c.OnCluster = func(kubeconfig string) {
			if c.Keep {
				fmt.Printf("[%-8s] the cluster is up: export KUBECONFIG=%s\n", name, kubeconfig)
			}
		}
		res, err := replay.Run(ctx, c)
		if err != nil {
			return done, fmt.Errorf("scenario %s: %w (logs in %s)", name, err, c.Dir)
		}
		if res.Stop != nil {
			*stops = append(*stops, res.Stop)
		}
		// Prometheus outlives Run: kept with the cluster, or stopped now,
		// so that it costs the next scenario nothing.
		if p := res.Prometheus; p != nil && c.Keep {
			fmt.Printf("[%-8s] Prometheus is still up: %s (CA: %s)\n", name, p.URL, p.CAFile)
			*stops = append(*stops, p.Stop)
		} else if p != nil {
			p.Stop()
		}
		done = append(done, res.Scenario)
	}
	return done, nil
}
