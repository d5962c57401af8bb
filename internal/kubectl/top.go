package kubectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/scrape"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/talkers"
)

func init() { subcommands = append(subcommands, newTopCommand) }

// topOptions are top's flags.
type topOptions struct {
	interval, timeout time.Duration
	limit             int
}

func newTopCommand(o *Options) *cobra.Command {
	t := &topOptions{}
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show who loads the API servers now, from their API Priority and Fairness metrics",
		Long: "top reads every kube-apiserver's /metrics twice, an interval apart, as the loadshed operator does, " +
			"and samples their API Priority and Fairness dumps in between, and shows per priority level and per FlowSchema the " +
			"requests dispatched and rejected per second, the seats in use and the requests queued, and the users " +
			"whose requests APF held, with their ServiceAccount where known. It needs no policy, no CRD and no " +
			"operator, and changes nothing.",
		Example: "  kubectl loadshed top\n  kubectl loadshed top --interval 10s --limit 5 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTop(cmd.Context(), o, t)
		},
	}
	cmd.Flags().DurationVar(&t.interval, "interval", 5*time.Second, "Time between the two reads the rates are computed over.")
	cmd.Flags().DurationVar(&t.timeout, "timeout", policy.DefaultScrapeTimeout, "Bound on each read of each API server.")
	cmd.Flags().IntVar(&t.limit, "limit", 10, "Rows of each table (0: all).")
	return cmd
}

func runTop(ctx context.Context, o *Options, t *topOptions) error {
	if t.interval <= 0 || t.timeout <= 0 || t.limit < 0 {
		return errors.New("--interval and --timeout must be positive, --limit not negative")
	}
	sc, c, err := apiServerReader(o)
	if err != nil {
		return err
	}
	accums := talkers.Accumulators()
	timeout := min(t.timeout, t.interval)
	first, st := sc.Fold(ctx, time.Now(), accums, timeout)
	warnFallback(o.Streams.ErrOut, st)
	if len(first.Instances) == 0 {
		return fmt.Errorf("no API server could be read: %s", st)
	}
	held, err := sampleDumps(ctx, sc, first, t.interval, timeout)
	if err != nil {
		return err
	}
	second, st := sc.Fold(ctx, time.Now(), accums, timeout)
	warnFallback(o.Streams.ErrOut, st)
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := c.List(ctx, schemas); err != nil {
		_, _ = fmt.Fprintf(o.Streams.ErrOut, "warning: listing FlowSchemas: %v; their priority levels and "+
			"ServiceAccounts are not shown.\n", err)
	}
	rep := talkers.Compute(talkers.Input{First: first, Second: second, FlowSchemas: schemas.Items, Limit: t.limit,
		Held: append(append([]map[string]apfdump.Summary{first.Clients}, held...), second.Clients)})
	return o.Print(rep, func(w io.Writer) error { return printTop(w, rep) })
}

// dumpEvery is how often top samples the APF dumps between its two reads
// of /metrics (at most ten times): a request held is seen only by a sample
// taken while it is, so more samples say better who is held.
const dumpEvery = 500 * time.Millisecond

// sampleDumps samples the APF dumps of the instances the first round read
// until an interval after it.
func sampleDumps(ctx context.Context, sc *scrape.Scraper, first *signals.Round, interval, timeout time.Duration) (
	[]map[string]apfdump.Summary, error) {
	instances := slices.Sorted(maps.Keys(first.Instances))
	every := max(dumpEvery, interval/10)
	end := first.T.Add(interval)
	var held []map[string]apfdump.Summary
	for next := first.T.Add(every); ; next = next.Add(every) {
		last := !next.Before(end)
		if last {
			next = end
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(next)):
		}
		if last {
			return held, nil
		}
		sample, _ := sc.Dumps(ctx, instances, min(timeout, every))
		held = append(held, sample)
	}
}

// printTop writes the report as aligned tables.
func printTop(out io.Writer, rep talkers.Report) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintf(w, "Read %d API servers %s apart, at %s: %s\n", len(rep.Instances), rep.Interval,
		rep.Time.Format(time.RFC3339), strings.Join(rep.Instances, ", "))
	for _, inst := range slices.Sorted(maps.Keys(rep.Failed)) {
		_, _ = fmt.Fprintf(w, "Not read: %s: %s\n", inst, rep.Failed[inst])
	}
	for _, inst := range slices.Sorted(maps.Keys(rep.DumpFailed)) {
		_, _ = fmt.Fprintf(w, "APF dump not read: %s: %s\n", inst, rep.DumpFailed[inst])
	}
	_, _ = fmt.Fprintln(w, "\nPRIORITY LEVEL\tREQUESTS/S\tREJECTED/S\tSEATS IN USE\tNOMINAL SEATS\tQUEUED")
	for _, l := range rep.PriorityLevels {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", l.Name, num(l.DispatchedPerSecond), num(l.RejectedPerSecond),
			num(l.SeatsInUse), num(l.NominalSeats), num(l.Queued))
	}
	_, _ = fmt.Fprintln(w, "\nFLOW SCHEMA\tPRIORITY LEVEL\tSERVICEACCOUNT\tREQUESTS/S\tREJECTED/S\tSEATS IN USE\tQUEUED")
	for _, f := range rep.FlowSchemas {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, orNone(f.PriorityLevel), orNone(f.ServiceAccount),
			num(f.DispatchedPerSecond), num(f.RejectedPerSecond), num(f.SeatsInUse), num(f.Queued))
	}
	_, _ = fmt.Fprintln(w, "\nUSER (APF HELD)\tSERVICEACCOUNT\tREQUESTS\tSEATS\tSHARE")
	for _, u := range rep.Users {
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.0f%%\n", u.Name, orNone(u.ServiceAccount), num(u.Requests), num(u.Seats), 100*u.Share)
	}
	if len(rep.Users) == 0 {
		_, _ = fmt.Fprintln(w, "(none held)")
	}
	return w.Flush()
}

// num formats a rate or a mean with one decimal, as kubectl top does for
// its figures: no more precision than two samples give.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
