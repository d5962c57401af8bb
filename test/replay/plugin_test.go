package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/backtest"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/testenv"
)

// The plugin's part of the incident replay: kubectl loadshed record runs
// beside the operator for the whole loadshed scenario, and its other
// subcommands are run at the moments an SRE would run them (the flood
// throttled, the DaemonSet paused, its restore under way); afterwards
// evaluate back-tests the policy on the recording. What each printed goes
// to the test's log, and to $LOADSHED_REPLAY_CAPTURE when it is set (what
// docs/kubectl.md shows comes from there).

// pluginRun is the plugin's part of one scenario.
type pluginRun struct {
	bin, dir, recording string
	policy              *v1alpha1.LoadShedPolicy
	captures            bool

	mu       sync.Mutex
	record   *exec.Cmd
	recorded bytes.Buffer
	captured []string
	errs     []error
	done     chan struct{}
	cancel   context.CancelFunc
}

// newPluginRun builds the plugin for a scenario whose policy is p (the
// policy to back-test); captures runs top, status and why during it.
func newPluginRun(t *testing.T, p *v1alpha1.LoadShedPolicy, captures bool) *pluginRun {
	t.Helper()
	dir := t.TempDir()
	bin, err := replay.BuildPlugin(context.Background(), testenv.RepoRoot(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return &pluginRun{bin: bin, dir: dir, recording: filepath.Join(dir, "replay.lsrec"), policy: p,
		captures: captures, done: make(chan struct{})}
}

// onCluster starts the recording, at the policy's interval, and the
// captures; it is the scenario's Config.OnCluster.
func (p *pluginRun) onCluster(kubeconfig string) {
	interval := p.policy.Spec.Interval.Duration
	p.record = exec.Command(p.bin, "--kubeconfig", kubeconfig, "record", "--duration", "1h",
		"--interval", interval.String(), "-o", p.recording)
	p.record.Stdout, p.record.Stderr = &p.recorded, &p.recorded
	if err := p.record.Start(); err != nil {
		p.fail(fmt.Errorf("starting kubectl loadshed record: %w", err))
		close(p.done)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		if p.captures {
			p.capture(ctx, kubeconfig)
		}
	}()
}

// stop ends the captures and the recording (SIGINT, as an SRE's Ctrl-C).
func (p *pluginRun) stop(t *testing.T) {
	t.Helper()
	if p.cancel != nil {
		p.cancel()
	}
	<-p.done
	if p.record == nil || p.record.Process == nil {
		return
	}
	if err := p.record.Process.Signal(syscall.SIGINT); err != nil {
		t.Errorf("interrupting kubectl loadshed record: %v", err)
	}
	if err := p.record.Wait(); err != nil {
		t.Errorf("kubectl loadshed record: %v\n%s", err, p.recorded.String())
	}
}

func (p *pluginRun) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, err)
}

// capture runs top once the flood is throttled, status and why once the
// DaemonSet is paused, and status again once its restore is under way.
func (p *pluginRun) capture(ctx context.Context, kubeconfig string) {
	c, err := clientFor(kubeconfig)
	if err != nil {
		p.fail(err)
		return
	}
	ds := replay.TelemetryNamespace + "/" + replay.TelemetryName
	steps := []struct {
		name string
		when func(*v1alpha1.LoadShedPolicy, *appsv1.DaemonSet) bool
		args [][]string
	}{
		{"throttled", throttled, [][]string{{"top", "--limit", "6"}}},
		{"paused", func(_ *v1alpha1.LoadShedPolicy, d *appsv1.DaemonSet) bool { return shed.PausedBy(d) != "" },
			[][]string{{"status", p.policy.Name}, {"why", ds}, {"top", "--limit", "6"}}},
		{"restoring", restoring, [][]string{{"status", p.policy.Name}, {"why", ds}}},
	}
	for _, step := range steps {
		if !p.waitFor(ctx, c, step.when) {
			return
		}
		for _, args := range step.args {
			p.run(kubeconfig, step.name, args)
		}
	}
}

// waitFor polls the policy and the DaemonSet until cond holds; false when
// ctx ended first.
func (p *pluginRun) waitFor(ctx context.Context, c client.Client,
	cond func(*v1alpha1.LoadShedPolicy, *appsv1.DaemonSet) bool) bool {
	for {
		lsp, ds := &v1alpha1.LoadShedPolicy{}, &appsv1.DaemonSet{}
		errP := c.Get(ctx, client.ObjectKey{Name: p.policy.Name}, lsp)
		errD := c.Get(ctx, client.ObjectKey{Namespace: replay.TelemetryNamespace, Name: replay.TelemetryName}, ds)
		if errP == nil && errD == nil && cond(lsp, ds) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

func throttled(lsp *v1alpha1.LoadShedPolicy, _ *appsv1.DaemonSet) bool {
	for _, a := range lsp.Status.Actions {
		if a.Kind == v1alpha1.ActionThrottle {
			return true
		}
	}
	return false
}

func restoring(_ *v1alpha1.LoadShedPolicy, ds *appsv1.DaemonSet) bool {
	rec, err := shed.ReadPause(ds)
	return shed.PausedBy(ds) != "" && err == nil && rec.Wave > 0
}

// run runs one subcommand and keeps what it printed.
func (p *pluginRun) run(kubeconfig, step string, args []string) {
	cmd := exec.Command(p.bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	line := fmt.Sprintf("$ kubectl loadshed %s   # %s, %s\n%s", strings.Join(args, " "), step,
		time.Now().UTC().Format(time.RFC3339), out)
	if err != nil {
		p.fail(fmt.Errorf("kubectl loadshed %s: %w\n%s", strings.Join(args, " "), err, out))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.captured = append(p.captured, line)
}

// report logs what was captured and fails the test on the errors, and
// keeps the captures in $LOADSHED_REPLAY_CAPTURE.
func (p *pluginRun) report(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	all := strings.Join(p.captured, "\n")
	t.Logf("kubectl loadshed during the flood:\n%s", all)
	keep(t, "captured.txt", all)
	for _, err := range p.errs {
		t.Error(err)
	}
}

// evaluate back-tests policy with kubectl loadshed evaluate and the
// source's flags, as text (kept as name) and as JSON.
func (p *pluginRun) evaluate(t *testing.T, name string, policy *v1alpha1.LoadShedPolicy,
	source ...string) *backtest.Result {
	t.Helper()
	data, err := yaml.Marshal(policy)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(p.dir, policy.Name+".yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"evaluate", "-f", file}, source...)
	text, err := exec.Command(p.bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl loadshed %s: %v\n%s", strings.Join(args, " "), err, text)
	}
	t.Logf("$ kubectl loadshed %s\n%s", strings.Join(args, " "), text)
	keep(t, name, string(text))
	out, err := exec.Command(p.bin, append(args, "-o", "json")...).Output()
	if err != nil {
		t.Fatalf("kubectl loadshed %s -o json: %v", strings.Join(args, " "), err)
	}
	res := &backtest.Result{}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatalf("evaluate -o json: %v", err)
	}
	return res
}

// timeline is the scenario's timeline, from its start to its last sample:
// the back-tests' --start and --end.
func timeline(r *replay.Result) (from, to time.Time) {
	from, to = r.Started, r.Started
	if n := len(r.Samples); n > 0 {
		to = r.Started.Add(r.Samples[n-1].At)
	}
	return from, to
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// checkBackTestOfRecording back-tests the policy on the loadshed scenario's
// recording and checks that the policy fired and cleared when the
// operator's did (compareEpisodes): each time it started firing within one
// interval, each time it stopped within two. Both run the same code on the
// same API servers, the operator on its scrapes, the back-test on the
// recorder's, taken at other instants of the same interval: a value that
// crosses a threshold between the two is seen by one an interval later.
// A trigger clears once what fired it has left its window, and the oldest
// scrape in each one's window is up to an interval past the window's start,
// each at its own instants: a second interval for the clearing. (Measured
// against the policy's status: fired 1.4s and 2.0s apart, cleared 1.5s and
// 3.0s apart, with an interval of 5s. Against its Events alone, which lose
// repeats, the clearings looked up to 10s apart; against its status alone,
// the firing was 8.7s late in one run: the status write of the evaluation
// that fired failed under the flood. liveTransitions reads both.) Which trigger fires may differ
// (an APF queue that spiked between the recorder's scrapes, say): the table
// in the log shows each.
func checkBackTestOfRecording(t *testing.T, p *pluginRun, r *replay.Result) {
	t.Helper()
	from, to := timeline(r)
	res := p.evaluate(t, "evaluate-recording.txt", p.policy, "--recording", p.recording,
		"--start", rfc3339(from), "--end", rfc3339(to))
	interval := p.policy.Spec.Interval.Duration
	live := liveTransitions(r.Started, r.Triggers, r.Events)
	compareEpisodes(t, "recording", "the back-test", r.Started, live, backTestTransitions(res), interval, 2*interval,
		marginal)
}

// checkBackTestOnPrometheus back-tests the Prometheus twin on the
// scenario's Prometheus, and compares with the twin's own episodes: the
// operator read the same Prometheus at its rounds, the back-test reads it
// at the range queries' steps, other instants of the same interval: within
// twinLag intervals, as the twin is with the policy.
func checkBackTestOnPrometheus(t *testing.T, p *pluginRun, r *replay.Result) {
	t.Helper()
	from, to := timeline(r)
	twin := prometheusTwin(t, 6)
	res := p.evaluate(t, "evaluate-prometheus.txt", twin, "--prometheus", r.Prometheus.URL,
		"--prometheus-ca-file", r.Prometheus.CAFile, "--start", rfc3339(from), "--end", rfc3339(to))
	interval := twin.Spec.Interval.Duration
	live := liveTransitions(r.Started, r.ShadowTriggers, r.ShadowEvents)
	compareEpisodes(t, "prometheus", "the back-test", r.Started, live, backTestTransitions(res),
		twinLag*interval, twinLag*interval, marginalPrometheus)
}

// checkBackTestOfBaseline back-tests the policy on the baseline's
// recording, where no operator ran: it fires, and would have throttled and
// paused the telemetry DaemonSet.
func checkBackTestOfBaseline(t *testing.T, p *pluginRun, r *replay.Result) {
	t.Helper()
	from, to := timeline(r)
	res := p.evaluate(t, "evaluate-baseline.txt", p.policy, "--recording", p.recording,
		"--start", rfc3339(from), "--end", rfc3339(to))
	const telemetry = replay.TelemetryNamespace + "/" + replay.TelemetryName
	if res.Summary.TimesFired == 0 || !slices.Contains(res.Summary.Paused, telemetry) ||
		!slices.Contains(res.Summary.Throttled, telemetry) {
		t.Errorf("on the baseline's flood the back-test fired %d times, would have throttled %v and paused %v: "+
			"want it to fire, throttle and pause %s",
			res.Summary.TimesFired, res.Summary.Throttled, res.Summary.Paused, telemetry)
	}
}

// episode is a time the policy fired: from a trigger firing while none
// did to the last of them clearing (zero while it goes on).
type episode struct {
	fired, cleared time.Time
	// past is how far past its threshold the furthest firing trigger was.
	past float64
}

// episodes reads the policy's episodes from its triggers' transitions.
func episodes(ts []transition) []episode {
	ts = slices.Clone(ts)
	slices.SortStableFunc(ts, func(a, b transition) int { return a.at.Compare(b.at) })
	var out []episode
	firing := map[string]bool{}
	for _, tr := range ts {
		was := len(firing) > 0
		if tr.reason == v1alpha1.EventTriggerFired {
			firing[tr.trigger] = true
		} else {
			delete(firing, tr.trigger)
		}
		switch now := len(firing) > 0; {
		case now && !was:
			out = append(out, episode{fired: tr.at, past: tr.past})
		case now && tr.reason == v1alpha1.EventTriggerFired:
			out[len(out)-1].past = max(out[len(out)-1].past, tr.past)
		case !now && was:
			out[len(out)-1].cleared = tr.at
		}
	}
	return out
}

// marginal is how far past its threshold a firing may go and still be
// seen by one sampler only: a rate that crosses its threshold by a hair
// (the relapse's rejections, 2.1 to 2.4 a second against 2) for a few
// seconds crosses it at the instants one reads it and not at another's.
// Through Prometheus it is wider: its scrapes every 3s put fewer points in
// each 20s rate window than the operator's own, and its rate() extrapolates
// to the window's edges (a relapse at 2.54/s the operator saw, the twin did
// not).
const (
	marginal           = 1.25
	marginalPrometheus = 1.5
)

// compareEpisodes checks the back-test's episodes against the live ones.
// Episodes that overlap (within cleared) are the same: the back-test's
// must begin within fired and end within cleared of the live one. The
// flood's episode must be in both; any other one that only one side has
// must be marginal.
func compareEpisodes(t *testing.T, name, other string, start time.Time, live, back []transition,
	fired, cleared time.Duration, marginal float64) {
	t.Helper()
	table := sideBySide(start, live, back, strings.TrimPrefix(other, "the "))
	t.Logf("triggers, live and %s (%s):\n%s", other, name, table)
	keep(t, "side-by-side-"+name+".txt", table)
	le, be := episodes(live), episodes(back)
	t.Logf("episodes live %s, %s %s", describe(start, le), other, describe(start, be))
	if len(le) == 0 || len(be) == 0 {
		t.Fatalf("the policy fired %d times live and %d in %s: want both to fire", len(le), len(be), other)
	}
	paired := map[int]bool{}
	for _, l := range le {
		j := slices.IndexFunc(be, func(b episode) bool { return overlap(l, b, cleared) })
		if j < 0 {
			if l.past > marginal {
				t.Errorf("live episode %s, %.2f times past its threshold: %s has none",
					describe(start, []episode{l}), l.past, other)
			}
			continue
		}
		paired[j] = true
		b := be[j]
		if d := b.fired.Sub(l.fired).Abs(); d > fired {
			t.Errorf("fired at %v live, %v in %s: %v apart, more than %v",
				l.fired.Sub(start), b.fired.Sub(start), other, d, fired)
		}
		if d := b.cleared.Sub(l.cleared).Abs(); l.cleared.IsZero() != b.cleared.IsZero() || d > cleared {
			t.Errorf("cleared at %v live, %v in %s: %v apart, more than %v",
				l.cleared.Sub(start), b.cleared.Sub(start), other, d, cleared)
		}
	}
	for j, b := range be {
		if !paired[j] && b.past > marginal {
			t.Errorf("episode %s of %s, %.2f times past its threshold: the live policy has none",
				describe(start, []episode{b}), other, b.past)
		}
	}
	if len(paired) == 0 {
		t.Errorf("no episode of %s is one of the live policy's: the flood's should be", other)
	}
}

// overlap reports whether two episodes overlap, slack apart at most; one
// still on never ends.
func overlap(a, b episode, slack time.Duration) bool {
	end := func(e episode) time.Time {
		if e.cleared.IsZero() {
			return time.Unix(1<<40, 0)
		}
		return e.cleared
	}
	return !a.fired.After(end(b).Add(slack)) && !b.fired.After(end(a).Add(slack))
}

// describe lists episodes relative to start.
func describe(start time.Time, es []episode) string {
	parts := make([]string, 0, len(es))
	for _, e := range es {
		end := "on"
		if !e.cleared.IsZero() {
			end = e.cleared.Sub(start).Round(10 * time.Millisecond).String()
		}
		parts = append(parts, fmt.Sprintf("[%v, %s]", e.fired.Sub(start).Round(10*time.Millisecond), end))
	}
	return strings.Join(parts, " ")
}

// keep writes a capture into $LOADSHED_REPLAY_CAPTURE, if set.
func keep(t *testing.T, name, content string) {
	t.Helper()
	dir := os.Getenv("LOADSHED_REPLAY_CAPTURE")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Error(err)
	}
}

func clientFor(kubeconfig string) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	s, err := scheme.New()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

// transition is a trigger firing or clearing.
type transition struct {
	reason, trigger string
	at              time.Time
	// past is, for a firing, how far past its threshold the value was
	// (value/threshold); +Inf when unknown.
	past float64
}

// pastOf reads value/threshold from a firing's value and threshold as
// status writes them; +Inf when either does not parse.
func pastOf(value, threshold string) float64 {
	v, err1 := strconv.ParseFloat(value, 64)
	th, err2 := strconv.ParseFloat(threshold, 64)
	if err1 != nil || err2 != nil || th <= 0 {
		return math.Inf(1)
	}
	return v / th
}

// pastOfNote reads it from a TriggerFired event's note, "Trigger NAME
// fired: SIGNAL is VALUE, above THRESHOLD".
func pastOfNote(note string) float64 {
	_, rest, _ := strings.Cut(note, " is ")
	value, threshold, _ := strings.Cut(rest, ", above ")
	return pastOf(value, threshold)
}

// liveTransitions are a policy's TriggerFired and TriggerCleared, from
// its status (replay.Result.Triggers, at the evaluation that wrote them)
// and from the first occurrences of its Events, whichever saw one: during
// the flood a status write can fail, and the status written next shows
// the transition an evaluation later, or not at all when it was undone in
// between; while the Events lose the repeats of a reason (see
// replay.Event.Repeat). A transition seen both ways counts once, at the
// earlier (episodes ignores the second).
func liveTransitions(start time.Time, fromStatus, events []replay.Event) []transition {
	var out []transition
	for _, e := range slices.Concat(fromStatus, events) {
		if e.Repeat || (e.Reason != v1alpha1.EventTriggerFired && e.Reason != v1alpha1.EventTriggerCleared) {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(e.Note, "Trigger "), " ")
		out = append(out, transition{reason: e.Reason, trigger: name, at: start.Add(e.At), past: pastOfNote(e.Note)})
	}
	return out
}

// backTestTransitions are the back-test's.
func backTestTransitions(res *backtest.Result) []transition {
	var out []transition
	for _, e := range res.Timeline {
		if e.Kind == v1alpha1.EventTriggerFired || e.Kind == v1alpha1.EventTriggerCleared {
			out = append(out, transition{reason: e.Kind, trigger: e.Subject, at: e.Time,
				past: pastOf(e.Value, e.Threshold)})
		}
	}
	return out
}

// sideBySide prints the live and back-tested transitions in time order,
// relative to start.
func sideBySide(start time.Time, live, back []transition, other string) string {
	type row struct {
		who string
		transition
	}
	rows := make([]row, 0, len(live)+len(back))
	for _, tr := range live {
		rows = append(rows, row{"live", tr})
	}
	for _, tr := range back {
		rows = append(rows, row{other, tr})
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %-10s %-15s %s\n", "AT", "WHO", "TRANSITION", "TRIGGER")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-9s %-10s %-15s %s\n", r.at.Sub(start).Round(10*time.Millisecond), r.who, r.reason, r.trigger)
	}
	return b.String()
}

// The episodes the replay compares, from the transitions of its triggers.
func TestEpisodes(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	fired := func(s int, trig string, past float64) transition {
		return transition{reason: v1alpha1.EventTriggerFired, trigger: trig, at: at(s), past: past}
	}
	cleared := func(s int, trig string) transition {
		return transition{reason: v1alpha1.EventTriggerCleared, trigger: trig, at: at(s)}
	}
	got := episodes([]transition{
		cleared(40, "b"), fired(10, "a", 1.5), fired(20, "b", 4), cleared(30, "a"),
		fired(100, "a", 1.1), cleared(120, "a"), fired(200, "b", 2),
	})
	want := []episode{{fired: at(10), cleared: at(40), past: 4}, {fired: at(100), cleared: at(120), past: 1.1},
		{fired: at(200), past: 2}}
	if !slices.Equal(got, want) {
		t.Errorf("episodes %+v, want %+v", got, want)
	}
	if !overlap(want[0], episode{fired: at(45), cleared: at(60)}, 5*time.Second) ||
		overlap(want[0], episode{fired: at(46), cleared: at(60)}, 5*time.Second) ||
		!overlap(want[2], episode{fired: at(1000)}, 0) {
		t.Error("overlap: want episodes within slack of each other, or both on, to overlap")
	}
	if p := pastOfNote("Trigger apf-rejections fired: rejectedRequestsPerSecond is 2.389, above 2"); p != 2.389/2 {
		t.Errorf("pastOfNote = %v, want %v", p, 2.389/2)
	}
}
