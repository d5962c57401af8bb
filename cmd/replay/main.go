// Command loadshed-replay replays the incident of 2024-12-11 on a local
// control plane, once with the API server's defaults only (baseline) and
// once with loadshed and its sample policy, and scores both. `make demo`
// runs it. It only turns flags into internal/replay's options.
package main

import (
	"context"
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

	"github.com/loadshed/loadshed/internal/replay"
)

func main() {
	var (
		cfg       replay.Config
		assets    string
		results   string
		scenarios string
		timeScale float64
	)
	flag.StringVar(&assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"),
		"Directory of the control plane's binaries (`make controlplane` prints it).")
	flag.StringVar(&cfg.Root, "root", ".",
		"The repository checkout: CRDs, RBAC, the sample policy and cmd/manager come from it.")
	flag.StringVar(&results, "results", "results", "Directory the report is written under (one subdirectory per run).")
	flag.StringVar(&scenarios, "scenarios", "baseline,loadshed", "Scenarios to run, in order: baseline, loadshed.")
	flag.IntVar(&cfg.Nodes, "nodes", 50, "Fake Nodes, each running one telemetry agent.")
	flag.IntVar(&cfg.ConfigMaps, "configmaps", 3000, "Background ConfigMaps that make every cluster-wide LIST expensive.")
	flag.IntVar(&cfg.ConfigMapBytes, "configmap-bytes", 16384, "Size of each background ConfigMap.")
	flag.Float64Var(&cfg.AgentRate, "agent-rate", 1, "LISTs per second of each misconfigured agent.")
	flag.IntVar(&cfg.AgentParallel, "agent-parallel", 4, "LISTs each misconfigured agent has in flight at most.")
	flag.DurationVar(&cfg.Quiet, "quiet", 30*time.Second, "Quiet time before the flood.")
	flag.DurationVar(&cfg.FixAfter, "fix-after", 4*time.Minute, "Time from the flood's start to the configuration fix.")
	flag.DurationVar(&cfg.Tail, "tail", 4*time.Minute, "Time from the fix to the end.")
	flag.DurationVar(&cfg.Innocent.Period, "innocent-period", 200*time.Millisecond,
		"Time between two rounds of requests of each innocent client.")
	flag.DurationVar(&cfg.Innocent.Timeout, "innocent-timeout", 5*time.Second,
		"An innocent request not answered in this time counts as failed.")
	flag.Float64Var(&timeScale, "time-scale", 6,
		"The sample policy's durations (interval, for, windows, restore, backoff) are divided by this.")
	flag.BoolVar(&cfg.Keep, "keep", false,
		"Leave each cluster running after its scenario, until Ctrl-C, and print its kubeconfig.")
	flag.Parse()

	if err := run(cfg, assets, results, scenarios, timeScale); err != nil {
		fmt.Fprintln(os.Stderr, "loadshed-replay:", err)
		os.Exit(1)
	}
}

func run(cfg replay.Config, assets, results, scenarios string, timeScale float64) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if assets == "" {
		return fmt.Errorf("no control plane binaries: pass --assets or set KUBEBUILDER_ASSETS (`make demo` does)")
	}
	cfg.Assets = assets
	cfg.Progress = os.Stdout
	sample, err := replay.SamplePolicy(cfg.Root)
	if err != nil {
		return err
	}
	dir := filepath.Join(results, time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The libraries' own logs (envtest, client-go) go to a file: the
	// terminal is for the progress lines.
	logCfg := zap.NewDevelopmentConfig()
	logCfg.Development = false
	logCfg.OutputPaths = []string{filepath.Join(dir, "replay.log")}
	logCfg.ErrorOutputPaths = logCfg.OutputPaths
	z, err := logCfg.Build()
	if err != nil {
		return fmt.Errorf("opening the replay's log: %w", err)
	}
	defer func() { _ = z.Sync() }()
	ctrl.SetLogger(zapr.NewLogger(z))
	klog.SetLogger(zapr.NewLogger(z))
	var done []replay.Scenario
	var stops []func()
	defer func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}()
	for name := range strings.SplitSeq(scenarios, ",") {
		c := cfg
		c.Name = name
		c.Dir = filepath.Join(dir, name)
		switch name {
		case "baseline":
		case "loadshed":
			c.Policy = replay.Faster(sample, timeScale)
		default:
			return fmt.Errorf("unknown scenario %q: want baseline or loadshed", name)
		}
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return err
		}
		c.OnCluster = func(kubeconfig string) {
			if c.Keep {
				fmt.Printf("[%-8s] the cluster is up: export KUBECONFIG=%s\n", name, kubeconfig)
			}
		}
		res, err := replay.Run(ctx, c)
		if err != nil {
			return fmt.Errorf("scenario %s: %w (logs in %s)", name, err, c.Dir)
		}
		if res.Stop != nil {
			stops = append(stops, res.Stop)
		}
		done = append(done, res.Scenario)
	}
	page, err := replay.WriteReport(dir, done)
	if err != nil {
		return err
	}
	fmt.Printf("\nWhat happened:\n%s\nScore:\n%s\nReport: %s (time series in %s, logs beside them)\n",
		replay.Timeline(done), replay.ScoreTable(done), page, filepath.Join(dir, "timeline.csv"))
	if cfg.Keep {
		fmt.Println("The clusters are still running (--keep). Press Ctrl-C to stop them.")
		<-ctx.Done()
	}
	return nil
}
