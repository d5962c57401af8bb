package kubectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/backtest"
	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/recording"
	"github.com/loadshed/loadshed/internal/signals"
)

func init() { subcommands = append(subcommands, newEvaluateCommand) }

// RecordingReader reads a recording made by kubectl loadshed record,
// folding its samples with accums into the rounds the operator's sampler
// would have taken.
type RecordingReader func(path string, accums []signals.Accumulator) (*backtest.Recording, error)

// readRecording is the reader evaluate uses (tests replace it).
var readRecording RecordingReader = readRecordingFile

// errStop stops reading a recording the back-test needs no more of.
var errStop = errors.New("stop")

// readRecordingFile opens a recording (package recording) and reads its
// rounds as the back-test asks for them, once, a round at a time.
func readRecordingFile(path string, accums []signals.Accumulator) (*backtest.Recording, error) {
	r, err := recording.Open(path)
	if err != nil {
		return nil, err
	}
	var readErr error
	rounds := func(yield func(*signals.Round) bool) {
		readErr = r.Each(accums, func(round *signals.Round) error {
			if !yield(round) {
				return errStop
			}
			return nil
		})
		if errors.Is(readErr, errStop) {
			readErr = nil
		}
	}
	h := r.Header()
	return &backtest.Recording{
		World:  backtest.World{DaemonSets: r.DaemonSets(), NamespaceLabels: r.Namespaces(), FlowSchemas: r.FlowSchemas()},
		Rounds: rounds, Err: func() error { return readErr }, Step: h.Interval.Duration, Families: h.Families,
	}, nil
}

// evaluateOptions are evaluate's flags.
type evaluateOptions struct {
	*Options
	file, recording, prometheus string
	start, end                  string
	caFile, tokenFile           string
	timeout                     time.Duration
	operator                    types.NamespacedName
	// recordingErr says why the recording's rounds stopped short, if they did.
	recordingErr func() error
}

func newEvaluateCommand(o *Options) *cobra.Command {
	e := &evaluateOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "evaluate -f POLICY.yaml (--recording FILE | --prometheus URL --start T [--end T])",
		Short: "Back-test a LoadShedPolicy on a recording or on Prometheus",
		Long: "evaluate runs the operator's own code (the policy's resolution, its triggers, attribution and planner) " +
			"over a recording of the API servers' metrics or over Prometheus's series, and prints the timeline the " +
			"operator would have produced and a summary. Prometheus holds no user: from it, the policy fires and " +
			"clears, but no offender is named, so nothing is throttled or paused.",
		Example: "  kubectl loadshed evaluate -f policy.yaml --recording incident.lsrec\n" +
			"  kubectl loadshed evaluate -f policy.yaml --prometheus https://prometheus:9090 --start -24h\n" +
			"  kubectl loadshed evaluate -f policy.yaml --prometheus http://localhost:9090 --start 2026-12-01T10:00:00Z " +
			"--end 2026-12-01T12:00:00Z -o json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return e.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVarP(&e.file, "filename", "f", "", "The LoadShedPolicy to back-test, a YAML or JSON file.")
	f.StringVar(&e.recording, "recording", "", "A recording made by kubectl loadshed record.")
	f.StringVar(&e.prometheus, "prometheus", "", "The URL of a Prometheus that scrapes the API servers.")
	f.StringVar(&e.start, "start", "", "Where to start: RFC3339, or relative to now (-2h, -7d). Required with --prometheus.")
	f.StringVar(&e.end, "end", "", "Where to end: RFC3339, now, or relative to now. Default: now with --prometheus, "+
		"the recording's end with --recording.")
	f.StringVar(&e.caFile, "prometheus-ca-file", "", "PEM certificate authorities to trust for an https Prometheus.")
	f.StringVar(&e.tokenFile, "prometheus-bearer-token-file", "", "A file holding a bearer token to send to Prometheus.")
	f.DurationVar(&e.timeout, "prometheus-timeout", time.Minute, "The longest one range query to Prometheus may take.")
	f.StringVar(&e.operator.Namespace, "operator-namespace", "loadshed-system",
		"The operator's namespace: it is protected, as the operator's --namespace.")
	f.StringVar(&e.operator.Name, "operator-service-account", "loadshed-controller-manager",
		"The operator's ServiceAccount: it is never throttled, and what runs as it never paused.")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// run back-tests the policy and prints the result.
func (e *evaluateOptions) run(ctx context.Context) error {
	from, to, err := e.validate()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(e.file)
	if err != nil {
		return fmt.Errorf("reading the policy: %w", err)
	}
	obj, cfg, err := backtest.ReadPolicy(data)
	if err != nil {
		return fmt.Errorf("%s: %w", e.file, err)
	}
	in := backtest.Input{Name: obj.Name, Config: cfg, Operator: e.operator, From: from, To: to}
	if e.recording != "" {
		err = e.fromRecording(&in)
	} else {
		err = e.fromPrometheus(ctx, &in)
	}
	if err != nil {
		return err
	}
	res, err := backtest.Run(in)
	if rerr := e.readError(); rerr != nil {
		// A recording cut short (its recorder was killed) is back-tested
		// as far as it goes.
		if err != nil || !errors.Is(rerr, recording.ErrCutShort) {
			return fmt.Errorf("reading the recording: %w", rerr)
		}
		res.Summary.Notes = append(res.Summary.Notes, "The recording stops short: "+rerr.Error())
	}
	if err != nil {
		return err
	}
	return e.Print(res, func(w io.Writer) error { return res.WriteText(w, e.Color()) })
}

// validate checks the flags that go together, and reads the times.
func (e *evaluateOptions) validate() (from, to time.Time, err error) {
	prom := e.prometheus != ""
	switch {
	case (e.recording != "") == prom:
		return from, to, errors.New("give one of --recording and --prometheus")
	case !prom && (e.caFile != "" || e.tokenFile != ""):
		return from, to, errors.New("--prometheus-ca-file and --prometheus-bearer-token-file go with --prometheus")
	case prom && e.start == "":
		return from, to, errors.New("--prometheus needs --start")
	}
	now := e.Now()
	if e.end == "" && prom {
		e.end = "now"
	}
	if from, err = parseTime("--start", e.start, now); err != nil {
		return from, to, err
	}
	if to, err = parseTime("--end", e.end, now); err != nil {
		return from, to, err
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		return from, to, fmt.Errorf("--end (%s) is not after --start (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	return from, to, nil
}

// fromRecording reads the recording for the policy.
func (e *evaluateOptions) fromRecording(in *backtest.Input) error {
	accums, err := backtest.Accumulators(in.Config)
	if err != nil {
		return err
	}
	rec, err := readRecording(e.recording, accums)
	if err != nil {
		return fmt.Errorf("reading the recording: %w", err)
	}
	if err := backtest.CheckFamilies(accums, rec.Families); err != nil {
		return fmt.Errorf("%s: %w", e.recording, err)
	}
	in.World, in.Rounds, in.Step, in.Source = rec.World, rec.Rounds, rec.Step, "recording "+e.recording
	e.recordingErr = rec.Err
	return nil
}

// fromPrometheus queries Prometheus for the policy's triggers.
func (e *evaluateOptions) fromPrometheus(ctx context.Context, in *backtest.Input) error {
	pc := promsource.Config{URL: e.prometheus, Timeout: e.timeout}
	if e.caFile != "" {
		ca, err := os.ReadFile(e.caFile)
		if err != nil {
			return fmt.Errorf("reading --prometheus-ca-file: %w", err)
		}
		pc.CAPEM = ca
	}
	if e.tokenFile != "" {
		token, err := os.ReadFile(e.tokenFile)
		if err != nil {
			return fmt.Errorf("reading --prometheus-bearer-token-file: %w", err)
		}
		pc.BearerToken = string(token)
	}
	series, err := backtest.QueryPrometheus(ctx, pc, in.Config, in.From, in.To)
	if err != nil {
		return fmt.Errorf("querying Prometheus at %s: %w", e.prometheus, err)
	}
	in.Prometheus, in.Source = series, "prometheus "+e.prometheus
	return nil
}

// readError says why the recording's rounds stopped short, if they did.
func (e *evaluateOptions) readError() error {
	if e.recordingErr == nil {
		return nil
	}
	return e.recordingErr()
}

// parseTime reads a time flag: RFC3339, "now", or a duration before (-2h,
// -7d) or after now; "" is the zero time.
func parseTime(flag, s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+"):
		d, err := parseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s %q: %w", flag, s, err)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want RFC3339 (2026-12-01T10:00:00Z), now, or relative to now (-2h, -7d)", flag, s)
	}
	return t, nil
}

// parseDuration reads a Go duration, or a whole number of days ("-7d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("not a number of days: %w", err)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
