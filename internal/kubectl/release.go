package kubectl

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/inspect"
	"github.com/loadshed/loadshed/internal/release"
)

func init() { subcommands = append(subcommands, newReleaseCommand) }

// releaseFlags are release's own flags.
type releaseFlags struct {
	policy        string
	all           bool
	force, dryRun bool
	op            operatorFlags
}

// newReleaseCommand is `kubectl loadshed release DAEMONSET | --policy P | --all`.
func newReleaseCommand(o *Options) *cobra.Command {
	var f releaseFlags
	cmd := &cobra.Command{
		Use:   "release (DAEMONSET | --policy POLICY | --all)",
		Short: "Break-glass: give back paused DaemonSets and remove loadshed's throttles without the operator",
		Long: "release restores paused DaemonSets exactly from the record on them (their pod template's nodeSelector " +
			"and affinity as before the pause, loadshed's annotations removed) and deletes loadshed's throttles (the " +
			"throttle FlowSchemas and the throttling PriorityLevelConfiguration; never the operator's self-protection " +
			"FlowSchema), with the operator's own code, without the operator. DAEMONSET (NAMESPACE/NAME, or NAME " +
			"with -n) releases that DaemonSet and the throttle of its ServiceAccount; --policy what one policy holds; " +
			"--all everything. It refuses while an operator leads and a policy concerned is not suspended, since the " +
			"operator would act again; --force releases all the same. It says what it changes, object by object; " +
			"--dry-run sends every write as a server dry run and changes nothing.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			scope, err := releaseScope(o, args, f)
			if err != nil {
				return err
			}
			return runRelease(cmd, o, scope, f)
		},
	}
	cmd.Flags().StringVar(&f.policy, "policy", "", "Release what this policy holds: its pauses and throttles.")
	cmd.Flags().BoolVar(&f.all, "all", false, "Release everything every policy holds.")
	cmd.Flags().BoolVar(&f.force, "force", false,
		"Release even while an operator leads and a policy concerned is not suspended (the operator may act again).")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "Say what would change; send every write as a server dry run.")
	f.op.add(cmd, true)
	return cmd
}

// releaseScope reads what to release from the arguments: exactly one of a
// DaemonSet, --policy and --all.
func releaseScope(o *Options, args []string, f releaseFlags) (release.Scope, error) {
	n := len(args)
	if f.policy != "" {
		n++
	}
	if f.all {
		n++
	}
	if n != 1 {
		return release.Scope{}, fmt.Errorf("name exactly one of: a DAEMONSET, --policy POLICY, --all")
	}
	switch {
	case f.policy != "":
		return release.Scope{Policy: f.policy}, nil
	case f.all:
		return release.Scope{All: true}, nil
	}
	key, err := daemonSetArg(o, args[0])
	if err != nil {
		return release.Scope{}, err
	}
	return release.Scope{DaemonSet: &key}, nil
}

func runRelease(cmd *cobra.Command, o *Options, scope release.Scope, f releaseFlags) error {
	ctx := cmd.Context()
	c, err := o.Client()
	if err != nil {
		return err
	}
	lease := types.NamespacedName{Namespace: f.op.namespace, Name: f.op.lease}
	in, err := release.Gather(ctx, c, scope, lease, f.force, o.Now())
	if err != nil {
		return err
	}
	p, err := release.Decide(in)
	if err != nil {
		return err
	}
	// Text goes out line by line as each object changes; -o json|yaml
	// prints the result once, at the end.
	progress := o.Streams.Out
	if o.Output != "" {
		progress = io.Discard
	}
	if p.Empty() {
		res := release.Result{DryRun: f.dryRun, Leader: p.Leader.Holder, Leading: p.Leading, Changes: []release.Change{}}
		return o.Print(res, func(w io.Writer) error {
			sc := newScribe(w)
			sc.printf("Nothing to release: %s.\n", describeScope(scope))
			return sc.err
		})
	}
	sc := newScribe(progress)
	sayLeader(sc, p, lease, in.Now, f.force)
	if sc.err != nil {
		return sc.err
	}
	res, err := release.Apply(ctx, c, p, f.dryRun, progress)
	if err != nil {
		return err
	}
	return o.Print(res, func(w io.Writer) error {
		sc := newScribe(w)
		for _, n := range res.Notes {
			sc.printf("Note: %s.\n", n)
		}
		return sc.err
	})
}

// sayLeader says who leads, before anything changes.
func sayLeader(sc *scribe, p release.Plan, lease types.NamespacedName, now time.Time, force bool) {
	if !p.Leading {
		sc.printf("No operator leads (Lease %s).\n", lease)
		return
	}
	held := fmt.Sprintf("An operator leads (Lease %s held by %s, renewed %s)", lease, p.Leader.Holder,
		inspect.Relative(p.Leader.RenewedAt, now))
	if force {
		sc.printf("%s; releasing all the same (--force) what policies %s hold.\n", held, strings.Join(p.Policies, ", "))
		return
	}
	sc.printf("%s; the policies concerned (%s) are suspended or gone.\n", held, strings.Join(p.Policies, ", "))
}

// describeScope names what was asked for, for a release with nothing to do.
func describeScope(s release.Scope) string {
	switch {
	case s.DaemonSet != nil:
		return fmt.Sprintf("DaemonSet %s carries no record of loadshed's and its ServiceAccount no throttle", s.DaemonSet)
	case s.Policy != "":
		return fmt.Sprintf("policy %s has no pause, last-restore record or throttle in place", s.Policy)
	}
	return "no DaemonSet carries a record of loadshed's and no throttle is in place"
}
