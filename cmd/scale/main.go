// Command scale measures the operator's binary, run as its own process, on
// a local kube-apiserver filled with a big cluster's objects: peak memory,
// CPU, reconcile durations and its requests by verb and resource. See
// docs/scale.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/loadshed/loadshed/internal/scale"
	"github.com/loadshed/loadshed/internal/version"
)

func main() {
	opts := scale.Options{}
	flag.StringVar(&opts.Assets, "assets", os.Getenv("LOADSHED_ASSETS"),
		"Directory of the control plane's binaries (make controlplane prints it).")
	flag.StringVar(&opts.Root, "root", ".", "The repository checkout.")
	flag.StringVar(&opts.Dir, "dir", "", "Directory for the logs and the audit log (a temporary one when empty).")
	flag.IntVar(&opts.Nodes, "nodes", 5000, "Nodes (about 8 KB each, as a cloud VM's kubelet reports them).")
	flag.IntVar(&opts.Namespaces, "namespaces", 100, "Namespaces the DaemonSets are spread over.")
	flag.IntVar(&opts.DaemonSets, "daemonsets", 1000, "DaemonSets.")
	flag.IntVar(&opts.Policies, "policies", 10,
		"Policies: copies of the sample policy, each selecting its share of the DaemonSets.")
	flag.DurationVar(&opts.Interval, "interval", 10*time.Second, "Every policy's interval.")
	flag.DurationVar(&opts.Warmup, "warmup", time.Minute, "Time the operator runs before the measurement.")
	flag.DurationVar(&opts.Measure, "measure", 3*time.Minute, "The quiet window measured.")
	version.AddFlag(flag.CommandLine, "loadshed-scale")
	flag.Parse()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opts scale.Options) error {
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "loadshed-scale-")
		if err != nil {
			return err
		}
		opts.Dir = dir
	}
	opts.Say = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
	}
	opts.Say("logs in %s", opts.Dir)
	rep, err := scale.Run(ctx, opts)
	if err != nil {
		return err
	}
	return rep.Write(os.Stdout)
}
