package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

	mu       sync.Mutex
	record   *exec.Cmd
	recorded bytes.Buffer
	captured []string
	errs     []error
	done     chan struct{}
	cancel   context.CancelFunc
}

func newPluginRun(t *testing.T, p *v1alpha1.LoadShedPolicy) *pluginRun {
	t.Helper()
	dir := t.TempDir()
	bin, err := replay.BuildPlugin(context.Background(), testenv.RepoRoot(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return &pluginRun{bin: bin, dir: dir, recording: filepath.Join(dir, "replay.lsrec"), policy: p,
		done: make(chan struct{})}
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
		p.capture(ctx, kubeconfig)
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
func (p *pluginRun) waitFor(ctx context.Context, c client.Client, cond func(*v1alpha1.LoadShedPolicy, *appsv1.DaemonSet) bool) bool {
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

// evaluate back-tests the policy on the recording, as JSON and as text.
func (p *pluginRun) evaluate(t *testing.T) *backtest.Result {
	t.Helper()
	data, err := yaml.Marshal(p.policy)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(p.dir, "policy.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := exec.Command(p.bin, "evaluate", "-f", file, "--recording", p.recording).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl loadshed evaluate: %v\n%s", err, text)
	}
	t.Logf("kubectl loadshed evaluate -f policy.yaml --recording replay.lsrec:\n%s", text)
	keep(t, "evaluate.txt", string(text))
	out, err := exec.Command(p.bin, "evaluate", "-f", file, "--recording", p.recording, "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl loadshed evaluate -o json: %v", err)
	}
	res := &backtest.Result{}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatalf("evaluate -o json: %v", err)
	}
	return res
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
}

// liveTransitions are the operator's TriggerFired and TriggerCleared
// events, at the times it recorded them.
func liveTransitions(start time.Time, events []replay.Event) []transition {
	var out []transition
	for _, e := range events {
		if e.Reason != v1alpha1.EventTriggerFired && e.Reason != v1alpha1.EventTriggerCleared {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(e.Note, "Trigger "), " ")
		out = append(out, transition{reason: e.Reason, trigger: name, at: start.Add(e.At)})
	}
	return out
}

// backTestTransitions are the back-test's.
func backTestTransitions(res *backtest.Result) []transition {
	var out []transition
	for _, e := range res.Timeline {
		if e.Kind == v1alpha1.EventTriggerFired || e.Kind == v1alpha1.EventTriggerCleared {
			out = append(out, transition{reason: e.Kind, trigger: e.Subject, at: e.Time})
		}
	}
	return out
}

// unmatched returns the transitions of want that got has none of, of the
// same trigger and kind, within tolerance.
func unmatched(want, got []transition, tolerance time.Duration) []transition {
	var out []transition
	for _, w := range want {
		found := false
		for _, g := range got {
			d := g.at.Sub(w.at)
			if g.reason == w.reason && g.trigger == w.trigger && d <= tolerance && d >= -tolerance {
				found = true
				break
			}
		}
		if !found {
			out = append(out, w)
		}
	}
	return out
}

// sideBySide prints the live and back-tested transitions in time order,
// relative to start.
func sideBySide(start time.Time, live, back []transition) string {
	type row struct {
		who string
		transition
	}
	var rows []row
	for _, tr := range live {
		rows = append(rows, row{"live", tr})
	}
	for _, tr := range back {
		rows = append(rows, row{"evaluate", tr})
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.at.Compare(b.at) })
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %-9s %-15s %s\n", "AT", "WHO", "TRANSITION", "TRIGGER")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-9s %-9s %-15s %s\n", r.at.Sub(start).Round(10*time.Millisecond), r.who, r.reason, r.trigger)
	}
	return b.String()
}
