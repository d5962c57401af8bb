package kubectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/recording"
	"github.com/loadshed/loadshed/internal/scrape"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/version"
)

func init() { subcommands = append(subcommands, newRecordCommand) }

// recordOptions are record's flags.
type recordOptions struct {
	file                        string
	duration, interval, timeout time.Duration
	families                    []string
	overwrite                   bool
}

// progressEvery is the least time between two progress lines.
const progressEvery = 5 * time.Second

func newRecordCommand(o *Options) *cobra.Command {
	r := &recordOptions{}
	cmd := &cobra.Command{
		Use:   "record --duration D -o FILE",
		Short: "Record every API server's metrics into a file, for a back-test",
		Long: "record reads every kube-apiserver's /metrics and API Priority and Fairness dump each interval, " +
			"as the loadshed operator does, and writes the samples of the families the signals read (and any " +
			"--family), with a snapshot of the cluster's DaemonSets, namespaces and FlowSchemas, into a compact " +
			"file that `kubectl loadshed evaluate --recording` back-tests a policy on. It stops after --duration " +
			"or on SIGINT or SIGTERM, leaving the file whole either way. It changes nothing in the cluster.",
		Example: "  kubectl loadshed record --duration 1h -o incident.lsrec\n" +
			"  kubectl loadshed record --duration 10m --interval 1s --family workqueue_depth -o short.lsrec",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRecord(cmd.Context(), o, r)
		},
	}
	// -o names the file here: this local flag shadows the plugin's -o for
	// record, which prints no report.
	cmd.Flags().StringVarP(&r.file, "output", "o", "", "The file to write (required).")
	cmd.Flags().DurationVar(&r.duration, "duration", 0, "How long to record (required).")
	cmd.Flags().DurationVar(&r.interval, "interval", 5*time.Second, "Time between two reads of the API servers.")
	cmd.Flags().DurationVar(&r.timeout, "timeout", policy.DefaultScrapeTimeout, "Bound on each read of each API server.")
	cmd.Flags().StringArrayVar(&r.families, "family", nil,
		"A `NAME` of a metric family to record besides the signals' (repeatable; a histogram by its base name), "+
			"for the metric triggers of a policy (spec.triggers[].metric).")
	cmd.Flags().BoolVar(&r.overwrite, "overwrite", false, "Replace FILE if it exists.")
	return cmd
}

func (r *recordOptions) validate() error {
	switch {
	case r.file == "":
		return errors.New("-o FILE is required: where to write the recording")
	case r.duration <= 0:
		return errors.New("--duration is required and must be positive")
	case r.interval <= 0 || r.timeout <= 0:
		return errors.New("--interval and --timeout must be positive")
	}
	if _, err := os.Stat(r.file); err == nil && !r.overwrite {
		return fmt.Errorf("%s exists: choose another file, or pass --overwrite", r.file)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func runRecord(ctx context.Context, o *Options, r *recordOptions) error {
	if err := r.validate(); err != nil {
		return err
	}
	sc, c, err := apiServerReader(o)
	if err != nil {
		return err
	}
	snap, err := recording.ReadSnapshot(ctx, c)
	if err != nil {
		return fmt.Errorf("reading what a back-test needs of the cluster: %w", err)
	}
	cfg, err := o.RESTConfig()
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if r.overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(r.file, flags, 0o644)
	if err != nil {
		return err
	}
	start := time.Now()
	w, err := recording.NewWriter(f, recording.Header{Started: start, Interval: metav1.Duration{Duration: r.interval},
		Timeout: metav1.Duration{Duration: min(r.timeout, r.interval)}, Families: append(signals.CatalogueFamilies(), r.families...),
		Server: cfg.Host, Recorder: version.Line(Name), Snapshot: snap})
	if err != nil {
		return errors.Join(err, f.Close())
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second signal ends record at once
	p := &progress{out: o.Streams.ErrOut, w: w, file: r.file}
	err = recording.Record(ctx, sc, w, recording.Schedule{Start: start, Duration: r.duration, Interval: r.interval,
		Timeout: r.timeout, Progress: p.round, Last: snap, SnapshotEvery: recording.DefaultSnapshotEvery,
		Snapshot: func(ctx context.Context) (recording.Snapshot, error) { return recording.ReadSnapshot(ctx, c) }})
	if errors.Is(err, errNothingRead) {
		_ = w.Close()
		_ = f.Close()
		return errors.Join(err, os.Remove(r.file))
	}
	if err = errors.Join(err, w.Close(), f.Close()); err != nil {
		return err
	}
	p.done(ctx.Err() != nil, time.Since(start))
	return nil
}

// errNothingRead ends a recording whose first round read no API server:
// the file is removed.
var errNothingRead = errors.New("the first round read no API server")

// progress reports on standard error how recording goes: a line per round
// at most every progressEvery, and every round with a failure.
type progress struct {
	out  io.Writer
	w    *recording.Writer
	file string
	last time.Time
	// fallback is the last fallback warned of.
	fallback string
	// instances counts the instances read in the rounds after the first,
	// and first is the size after the first round (the header and the
	// definitions of the series): what a longer recording grows by is
	// what the later rounds took.
	instances int
	first     int64
}

func (p *progress) round(r *scrape.Round[*recording.Sink], st scrape.Status) error {
	if p.w.Rounds() == 1 {
		if len(r.Scraped) == 0 {
			return fmt.Errorf("%w: %s", errNothingRead, st)
		}
		p.first = p.w.Bytes()
	} else {
		p.instances += len(r.Scraped)
	}
	if st.Fallback != p.fallback {
		warnFallback(p.out, st)
		p.fallback = st.Fallback
	}
	if time.Since(p.last) < progressEvery && len(r.Failed) == 0 {
		return nil
	}
	p.last = time.Now()
	_, _ = fmt.Fprintf(p.out, "round %d at %s: read %d of %d API servers; %s written\n", p.w.Rounds(),
		r.T.Format(time.TimeOnly), len(r.Scraped), len(r.Scraped)+len(r.Failed), bytesOf(p.w.Bytes()))
	for inst, why := range r.Failed {
		_, _ = fmt.Fprintf(p.out, "  not read: %s: %s\n", inst, why)
	}
	return nil
}

// done says what was recorded.
func (p *progress) done(stopped bool, took time.Duration) {
	how := "in"
	if stopped {
		how = "stopped by a signal after"
	}
	_, _ = fmt.Fprintf(p.out, "recorded %d rounds %s %v to %s: %s", p.w.Rounds(), how, took.Round(time.Second),
		p.file, bytesOf(p.w.Bytes()))
	if p.instances > 0 {
		_, _ = fmt.Fprintf(p.out, " (%s with the first round, then %d bytes per round per API server)",
			bytesOf(p.first), (p.w.Bytes()-p.first)/int64(p.instances))
	}
	_, _ = fmt.Fprintln(p.out)
}

// bytesOf formats a size as kubectl does: in binary units.
func bytesOf(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
