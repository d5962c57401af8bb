// Package replay_test runs a short incident replay, both scenarios, and
// checks what loadshed did: the behaviour, never how fast (the machines
// are shared). `make test` runs it on its own, after the other packages
// and without the race detector, so that nothing else competes with the
// flood for the CPU and both scenarios see the same machine.
package replay_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/test/testenv"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// short is the CI replay: small, and with the sample policy's timeline
// compressed six times, as in the demo.
func short(t *testing.T, name string) replay.Config {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`")
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return replay.Config{
		Name: name, Assets: assets, Root: testenv.RepoRoot(), Dir: dir,
		Nodes: 25, ConfigMaps: 3000, ConfigMapBytes: 16384,
		AgentRate: 2, AgentParallel: 8,
		Quiet: 10 * time.Second, FixAfter: 150 * time.Second, Tail: 200 * time.Second,
		Innocent: replay.Pace{Period: 200 * time.Millisecond, Timeout: 5 * time.Second},
		Progress: testWriter{t},
	}
}

// testWriter sends the replay's progress lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestTheIncidentReplay(t *testing.T) {
	ctx := context.Background()
	sample, err := replay.SamplePolicy(testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}

	// The baseline needs only show what the flood does: a minute of it.
	baseCfg := short(t, "baseline")
	baseCfg.FixAfter, baseCfg.Tail = time.Minute, 20*time.Second
	baseline, err := replay.Run(ctx, baseCfg)
	if err != nil {
		t.Fatal(err)
	}

	shedCfg := short(t, "loadshed")
	shedCfg.Policy = replay.Faster(sample, 6)
	// The relapse is what this test is about: hold the fix until loadshed
	// has seen it (the demo keeps to its set time).
	shedCfg.HoldFixForRelapse = true
	shed, err := replay.Run(ctx, shedCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s\n%s", replay.ScoreTable([]replay.Scenario{baseline.Scenario, shed.Scenario}),
		replay.Timeline([]replay.Scenario{baseline.Scenario, shed.Scenario}))

	const telemetry = replay.TelemetryNamespace + "/" + replay.TelemetryName
	t.Run("the flood is attributed to the telemetry DaemonSet", func(t *testing.T) {
		if len(shed.Offenders) == 0 || shed.Offenders[0].ServiceAccount != telemetry ||
			!slices.Contains(shed.Offenders[0].DaemonSets, telemetry) {
			t.Errorf("the first offenders named were %+v, want %s's ServiceAccount and DaemonSet first",
				shed.Offenders, telemetry)
		}
	})
	t.Run("it is throttled, then paused", func(t *testing.T) {
		throttled := firstAt(shed.Events, v1alpha1.EventThrottled, telemetry)
		paused := firstAt(shed.Events, v1alpha1.EventPaused, telemetry)
		if throttled < 0 || paused < 0 || paused < throttled {
			t.Errorf("throttled at %v, paused at %v: want both, throttled first", throttled, paused)
		}
	})
	t.Run("the relapse is paused again with a longer backoff", func(t *testing.T) {
		if firstAt(shed.Events, v1alpha1.EventRepaused, telemetry) < 0 {
			t.Fatal("no Repaused event")
		}
		if len(shed.Pauses) < 2 {
			t.Fatalf("pauses seen: %+v; want the first and the relapse's", shed.Pauses)
		}
		first, again := shed.Pauses[0], shed.Pauses[1]
		if again.Attempt <= first.Attempt || again.Backoff <= first.Backoff {
			t.Errorf("first pause %+v, relapse %+v: want a later attempt with a longer backoff", first, again)
		}
	})
	t.Run("the restore after the fix sticks", func(t *testing.T) {
		fixed := firstAt(shed.Events, replay.EventConfigFixed, "")
		restored := lastAt(shed.Events, v1alpha1.EventRestored, telemetry)
		if restored < fixed {
			t.Errorf("last restore at %v, the fix at %v: want a restore after the fix", restored, fixed)
		}
		if repaused := lastAt(shed.Events, v1alpha1.EventRepaused, telemetry); repaused > restored {
			t.Errorf("paused again at %v, after the restore at %v", repaused, restored)
		}
		if shed.PausedAtEnd {
			t.Error("the DaemonSet was paused when the replay ended")
		}
	})
	t.Run("the pod template ends as it began", func(t *testing.T) {
		if !equality.Semantic.DeepEqual(shed.TemplateBefore, shed.TemplateAfter) {
			t.Errorf("the pod template changed:\nbefore %+v\nafter  %+v", shed.TemplateBefore, shed.TemplateAfter)
		}
	})
	t.Run("nothing of loadshed's is left once the policy is deleted", func(t *testing.T) {
		if len(shed.Leftovers) > 0 {
			t.Errorf("left behind: %v", shed.Leftovers)
		}
	})
	t.Run("both scenarios saw the same flood", func(t *testing.T) {
		if err := replay.CompareOfferedLoad(baseline.Scenario, shed.Scenario); err != nil {
			t.Error(err)
		}
	})
	t.Run("innocent clients do at least as well as without loadshed", func(t *testing.T) {
		b, s := replay.ScoreOf(baseline.Scenario), replay.ScoreOf(shed.Scenario)
		if s.FloodSuccess < b.FloodSuccess {
			t.Errorf("innocent success rate during the flood: %.1f%% with loadshed, %.1f%% without",
				s.FloodSuccess*100, b.FloodSuccess*100)
		}
	})
}

// firstAt is when the first event with the reason whose note names target
// happened, -1 if none.
func firstAt(events []replay.Event, reason, target string) time.Duration {
	for _, e := range events {
		if e.Reason == reason && strings.Contains(e.Note, target) {
			return e.At
		}
	}
	return -1
}

// lastAt is when the last such event happened, -1 if none.
func lastAt(events []replay.Event, reason, target string) time.Duration {
	for _, e := range slices.Backward(events) {
		if e.Reason == reason && strings.Contains(e.Note, target) {
			return e.At
		}
	}
	return -1
}

// TestABenignBurstIsLeftAlone plays the benign burst the sample policy finds
// hardest, a kube-apiserver restart: every client relists at once, the API
// server's counters (and so every rate the operator computes) start from
// zero, and its scrapes fail while it is down. The same compressed sample
// policy as the flood's runs; it must neither throttle nor pause anything.
func TestABenignBurstIsLeftAlone(t *testing.T) {
	sample, err := replay.SamplePolicy(testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	base := short(t, replay.BurstAPIServerRestart)
	base.BurstFor, base.Tail = 45*time.Second, 40*time.Second
	cfg, err := replay.ForScenario(base, replay.BurstAPIServerRestart, sample, 6)
	if err != nil {
		t.Fatal(err)
	}
	res, err := replay.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	one := []replay.Scenario{res.Scenario}
	t.Logf("\n%s\n%s", replay.ScoreTable(one), replay.Timeline(one))
	if sc := replay.ScoreOf(res.Scenario); sc.FalseThrottles != 0 || sc.FalsePauses != 0 {
		t.Errorf("%d false throttles and %d false pauses in a benign %s; want none",
			sc.FalseThrottles, sc.FalsePauses, replay.BurstAPIServerRestart)
	}
	if res.PausedAtEnd {
		t.Error("a DaemonSet was paused when the benign burst ended")
	}
}
