package kubectl

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loadshed/loadshed/internal/inspect"
)

func init() { subcommands = append(subcommands, newStatusCommand) }

// newStatusCommand is `kubectl loadshed status [POLICY]`.
func newStatusCommand(o *Options) *cobra.Command {
	events := 10
	cmd := &cobra.Command{
		Use:   "status [POLICY]",
		Short: "Show what a policy sees and does: triggers, offenders, throttles, pauses, conditions, events",
		Long: "status shows, for the policy named (every policy when none is), each trigger's value against its " +
			"threshold and clear threshold with its state and since when, the ranked offenders, what is throttled " +
			"and paused, each paused DaemonSet's attempt, wave and next restore step (read from the record on the " +
			"DaemonSet), the conditions and the last events. It only reads.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return runStatus(cmd, o, name, events)
		},
	}
	cmd.Flags().IntVar(&events, "events", events, "How many of each policy's last events to show.")
	return cmd
}

func runStatus(cmd *cobra.Command, o *Options, name string, events int) error {
	ctx := cmd.Context()
	c, err := o.Client()
	if err != nil {
		return err
	}
	policies, err := inspect.Policies(ctx, c, name)
	if err != nil {
		return err
	}
	recorded, err := inspect.Recorded(ctx, c)
	if err != nil {
		return err
	}
	now := o.Now()
	out := inspect.StatusList{Policies: []inspect.PolicyStatus{}}
	for i := range policies {
		p := &policies[i]
		evs, err := inspect.Events(ctx, c, inspect.Regarding{Kind: "LoadShedPolicy", Name: p.Name, UID: p.UID})
		if err != nil {
			return err
		}
		out.Policies = append(out.Policies, inspect.Status(p, recorded, evs, events, now))
	}
	return o.Print(out, func(w io.Writer) error {
		sc := newScribe(w)
		if len(out.Policies) == 0 {
			sc.printf("No LoadShedPolicy in this cluster.\n")
		}
		for i, p := range out.Policies {
			if i > 0 {
				sc.printf("\n")
			}
			printStatus(sc, o, p, now)
		}
		return sc.err
	})
}

// printStatus writes one policy's screen.
func printStatus(sc *scribe, o *Options, p inspect.PolicyStatus, now time.Time) {
	flags := []string{}
	if p.Suspended {
		flags = append(flags, "suspended")
	}
	if p.DryRun {
		flags = append(flags, "dryRun")
	}
	sc.printf("Policy %s: %s", p.Name, paint(o, orDash(string(p.Phase))))
	if len(flags) > 0 {
		sc.printf(" (%s)", strings.Join(flags, ", "))
	}
	sc.printf(", evaluated %s, %s source every %v\n", ago(p.LastEvaluationTime, now), p.Source, p.Interval.Duration)
	if p.Invalid != "" {
		sc.printf("Invalid spec: %s\n", p.Invalid)
	}
	for _, section := range []func(*scribe, *Options, inspect.PolicyStatus, time.Time){
		printTriggers, printOffenders, printActions, printPaused, printBlocked, printConditions, printEvents,
	} {
		sc.printf("\n")
		section(sc, o, p, now)
	}
}

func printTriggers(sc *scribe, o *Options, p inspect.PolicyStatus, now time.Time) {
	if len(p.Triggers) == 0 {
		sc.printf("Triggers: not evaluated yet.\n")
		return
	}
	sc.table()
	sc.printf("TRIGGER\tSIGNAL\tVALUE\tTHRESHOLD\tCLEAR\tSTATE\tSINCE\tMESSAGE\n")
	for _, s := range p.Triggers {
		sc.printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Signal, orDash(s.Value), s.Threshold,
			s.ClearThreshold, paint(o, string(s.State)), ago(s.Since, now), s.Message)
	}
	sc.flush()
}

func printOffenders(sc *scribe, _ *Options, p inspect.PolicyStatus, _ time.Time) {
	if len(p.Offenders) == 0 {
		sc.printf("Offenders: none measured.\n")
		return
	}
	sc.table()
	sc.printf("OFFENDER\tSERVICEACCOUNT\tDAEMONSETS\tHELD\tSEATS\tASKED\tREQ/S\tREJECTED/S\n")
	for _, off := range p.Offenders {
		ds := strings.Join(off.DaemonSets, ",")
		if off.Shared {
			ds += " (shared)"
		}
		asked := "-"
		if off.RequestsPerSecond != "" {
			asked = fmt.Sprintf("%d%%", off.RequestSharePercent)
		}
		sc.printf("%s\t%s\t%s\t%d%%\t%d%%\t%s\t%s\t%s\n", off.User, orDash(off.ServiceAccount), orDash(ds),
			off.InFlightSharePercent, off.SeatSharePercent, asked, orDash(off.RequestsPerSecond), orDash(off.RejectedPerSecond))
	}
	sc.flush()
}

func printActions(sc *scribe, _ *Options, p inspect.PolicyStatus, now time.Time) {
	if len(p.Actions) == 0 {
		sc.printf("Actions: nothing throttled or paused.\n")
		return
	}
	sc.table()
	sc.printf("ACTION\tTARGET\tSINCE\tMESSAGE\n")
	for _, a := range p.Actions {
		sc.printf("%s\t%s\t%s\t%s\n", a.Kind, a.Target, ago(a.Since, now), a.Message)
	}
	sc.flush()
}

func printPaused(sc *scribe, _ *Options, p inspect.PolicyStatus, now time.Time) {
	if len(p.Paused) == 0 {
		sc.printf("Paused DaemonSets: none carries this policy's record.\n")
		return
	}
	sc.table()
	sc.printf("PAUSED\tSINCE\tATTEMPT\tWAVE\tNEXT STEP\tNOT BEFORE\tWAITING FOR\n")
	for _, d := range p.Paused {
		if d.Error != "" {
			sc.printf("%s\t-\t-\t-\tunreadable record: %s\t-\t-\n", d.DaemonSet, d.Error)
			continue
		}
		waiting := "nothing: due at the next evaluation"
		if len(d.Next.Waiting) > 0 {
			waiting = strings.Join(d.Next.Waiting, "; ")
		}
		sc.printf("%s\t%s\t%d\t%d/%d\t%s\t%s\t%s\n", d.DaemonSet, ago(d.Since, now), d.Attempt, d.Wave, d.Waves,
			d.Next.Step, ago(d.Next.At, now), waiting)
	}
	sc.flush()
}

func printBlocked(sc *scribe, _ *Options, p inspect.PolicyStatus, now time.Time) {
	if len(p.Blocked) == 0 {
		sc.printf("Blocked: nothing.\n")
		return
	}
	sc.table()
	sc.printf("BLOCKED\tTARGET\tSINCE\tREASON\n")
	for _, b := range p.Blocked {
		sc.printf("%s\t%s\t%s\t%s\n", b.Kind, b.Target, ago(b.Since, now), b.Reason)
	}
	sc.flush()
}

func printConditions(sc *scribe, _ *Options, p inspect.PolicyStatus, now time.Time) {
	if len(p.Conditions) == 0 {
		sc.printf("Conditions: none yet.\n")
		return
	}
	sc.table()
	sc.printf("CONDITION\tSTATUS\tREASON\tSINCE\tMESSAGE\n")
	for i := range p.Conditions {
		c := &p.Conditions[i]
		sc.printf("%s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, ago(&c.LastTransitionTime, now), c.Message)
	}
	sc.flush()
}

func printEvents(sc *scribe, o *Options, p inspect.PolicyStatus, now time.Time) {
	writeEvents(sc, o, p.Events, now)
}

// writeEvents writes events as kubectl describe does, oldest first.
func writeEvents(sc *scribe, o *Options, events []inspect.Event, now time.Time) {
	if len(events) == 0 {
		sc.printf("Events: none.\n")
		return
	}
	sc.table()
	sc.printf("LAST SEEN\tTYPE\tREASON\tCOUNT\tNOTE\n")
	for _, e := range events {
		sc.printf("%s\t%s\t%s\t%d\t%s\n", ago(&e.Time, now), paint(o, e.Type), e.Reason, e.Count, e.Note)
	}
	sc.flush()
}
