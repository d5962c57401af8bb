package kubectl

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/inspect"
	"github.com/loadshed/loadshed/internal/operatorref"
	"github.com/loadshed/loadshed/internal/shed"
)

func init() { subcommands = append(subcommands, newWhyCommand) }

// newWhyCommand is `kubectl loadshed why DAEMONSET`.
func newWhyCommand(o *Options) *cobra.Command {
	var op operatorFlags
	events := 5
	cmd := &cobra.Command{
		Use:   "why DAEMONSET",
		Short: "Explain why a DaemonSet is paused or not, and what would restore it",
		Long: "why explains a DaemonSet (NAMESPACE/NAME, or NAME with -n): if it is paused, the record on it (the " +
			"policy, since when, the attempt, the wave, the next restore, the overrides), the policy's triggers and " +
			"what would restore it; if it is not, which policies select it, whether it is protected, whether its " +
			"ServiceAccount is among their offenders and with what share against their minSharePercent, and whether " +
			"a policy is suspended, in dryRun or has pausing off. It only reads.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := daemonSetArg(o, args[0])
			if err != nil {
				return err
			}
			return runWhy(cmd, o, key, op, events)
		},
	}
	op.add(cmd, false)
	cmd.Flags().IntVar(&events, "events", events, "How many of the operator's last events on the DaemonSet to show.")
	return cmd
}

func runWhy(cmd *cobra.Command, o *Options, key types.NamespacedName, op operatorFlags, events int) error {
	ctx := cmd.Context()
	c, err := o.Client()
	if err != nil {
		return err
	}
	in := inspect.WhyInput{Operator: types.NamespacedName{Namespace: op.namespace, Name: op.serviceAccount},
		LastEvents: events, Now: o.Now()}
	if in.DaemonSet, err = inspect.DaemonSet(ctx, c, key); err != nil {
		return err
	}
	if in.Policies, err = inspect.Policies(ctx, c, ""); err != nil {
		return err
	}
	if in.NamespaceLabels, err = inspect.NamespaceLabels(ctx, c); err != nil {
		return err
	}
	if in.Recorded, err = inspect.Recorded(ctx, c); err != nil {
		return err
	}
	if in.Events, err = inspect.Events(ctx, c, inspect.Regarding{Kind: "DaemonSet", Namespace: key.Namespace,
		Name: key.Name, Reporter: operatorref.EventReporter}); err != nil {
		return err
	}
	e := inspect.Explain(in)
	return o.Print(e, func(w io.Writer) error {
		sc := newScribe(w)
		printWhy(sc, o, e, in.Now)
		return sc.err
	})
}

// printWhy writes an explanation.
func printWhy(sc *scribe, o *Options, e inspect.Explanation, now time.Time) {
	sc.printf("%s\nIt runs as ServiceAccount %s.\n", e.Summary, e.ServiceAccount)
	if e.Pause != nil {
		printRecord(sc, e.Pause, now)
		printRestore(sc, e.Pause, now)
	}
	if l := e.LastRestore; l != nil {
		sc.printf("\nIts last full restore, by policy %s, ended %s after %d relapsed attempts: paused again "+
			"within that policy's restore.backoff.max, it counts as a relapse.\n", l.Policy, inspect.Clock(l.At.Time, now), l.Attempt)
	}
	sc.printf("\nPolicies:\n")
	if len(e.Policies) == 0 {
		sc.printf("  none in this cluster.\n")
	}
	for _, v := range e.Policies {
		phase := ""
		if v.Phase != "" {
			phase = " (" + paint(o, string(v.Phase)) + ")"
		}
		for i, s := range v.Says {
			if i == 0 {
				sc.printf("  %s%s %s\n", v.Policy, phase, s)
				continue
			}
			sc.printf("    %s\n", s)
		}
	}
	sc.printf("\n")
	writeEvents(sc, o, e.Events, now)
}

// printRecord writes a pause record.
func printRecord(sc *scribe, r *inspect.PauseRecord, now time.Time) {
	sc.printf("\nThe pause record (loadshed.io/ annotations on the DaemonSet):\n")
	if r.Error != "" {
		sc.printf("  unreadable: %s\n", r.Error)
	}
	sc.table()
	sc.printf("  policy:\t%s\n", r.Policy)
	if r.Since != nil {
		sc.printf("  paused at:\t%s\n", inspect.Clock(r.Since.Time, now))
	}
	sc.printf("  reason:\t%s\n", orDash(r.Reason))
	sc.printf("  attempt:\t%d (restores that relapsed)\n", r.Attempt)
	wave := fmt.Sprintf("%d of %d", r.Wave, r.Waves)
	if r.Wave == 0 {
		wave += " (fully paused)"
	} else if r.WaveStarted != nil {
		wave += ", started " + inspect.Clock(r.WaveStarted.Time, now)
	}
	sc.printf("  wave:\t%s\n", wave)
	next := "none (no backoff)"
	if r.NextRestore != nil {
		next = inspect.Clock(r.NextRestore.Time, now)
	}
	sc.printf("  next restore:\t%s\n", next)
	if r.Overrides > 0 && r.OverriddenAt != nil {
		sc.printf("  overrides:\t%d (someone removed the pause; loadshed put it back, last %s)\n", r.Overrides,
			inspect.Clock(r.OverriddenAt.Time, now))
	}
	if r.Original != nil {
		sc.printf("  original scheduling:\t%s\n", scheduling(*r.Original))
	}
	sc.flush()
}

// printRestore writes what comes next for a paused DaemonSet and what
// would restore it.
func printRestore(sc *scribe, r *inspect.PauseRecord, now time.Time) {
	if r.Next != nil {
		sc.printf("\nNext: %s", r.Next.Step)
		if r.Next.At != nil {
			sc.printf(", not before %s", inspect.Clock(r.Next.At.Time, now))
		}
		sc.printf(".\n")
		for _, s := range r.Next.Waiting {
			sc.printf("  waiting for %s\n", s)
		}
	}
	sc.printf("\nWhat would restore it:\n")
	for _, s := range r.Restore {
		sc.printf("  - %s\n", s)
	}
}

// scheduling writes the scheduling a pause recorded.
func scheduling(s shed.Scheduling) string {
	parts := make([]string, 0, len(s.NodeSelector))
	for _, k := range slices.Sorted(maps.Keys(s.NodeSelector)) {
		parts = append(parts, k+"="+s.NodeSelector[k])
	}
	out := "no nodeSelector"
	if len(parts) > 0 {
		out = "nodeSelector " + strings.Join(parts, ",")
	}
	if s.Affinity != nil {
		return out + ", an affinity"
	}
	return out + ", no affinity"
}
