package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	loadshedscheme "github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/uninstall"
)

// uninstallUsage introduces `loadshed-operator uninstall -h`.
const uninstallUsage = `Usage: loadshed-operator uninstall [flags]

Gives back everything loadshed holds before the operator is removed: deletes
every LoadShedPolicy and waits while the running operator's finalizers
restore the DaemonSets they paused and delete their throttles, checks that no
DaemonSet still carries loadshed's record, then deletes loadshed's remaining
FlowSchemas and PriorityLevelConfigurations (its self-protection schema).
The operator must be running while this runs. make undeploy and the Helm
chart's pre-delete hook run it; it exits non-zero, having removed nothing
else, when the policies are not gone in time.

Flags:
`

// runUninstall is the uninstall subcommand; it returns the exit code.
func runUninstall(args []string) int {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), uninstallUsage)
		fs.PrintDefaults()
	}
	config.RegisterFlags(fs)
	var opts uninstall.Options
	fs.DurationVar(&opts.Timeout, "timeout", uninstall.DefaultTimeout,
		"How long to wait for the LoadShedPolicies' finalizers.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	opts.Out = os.Stdout
	cfg, err := ctrl.GetConfig()
	if err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "error: loading a kubeconfig:", err)
		return 1
	}
	s, err := loadshedscheme.New()
	if err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "error: creating a client:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := uninstall.Run(ctx, c, opts); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}
