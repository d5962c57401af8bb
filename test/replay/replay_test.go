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

	// Both scenarios run a Prometheus that scrapes the kube-apiserver
	// (withPrometheus), so that both see the same machine.
	// The baseline needs only show what the flood does: a minute of it.
	// Both record what the API servers say with kubectl loadshed record
	// (plugin_test.go), for back-tests of the policy.
	policy := replay.Faster(sample, 6)
	baseCfg := withPrometheus(t, short(t, "baseline"))
	baseCfg.FixAfter, baseCfg.Tail = time.Minute, 20*time.Second
	basePlugin := newPluginRun(t, policy, false)
	baseCfg.OnCluster = basePlugin.onCluster
	baseline, err := replay.Run(ctx, baseCfg)
	basePlugin.stop(t)
	if err != nil {
		t.Fatal(err)
	}
	baseline.Prometheus.Stop()

	shedCfg := withPrometheus(t, short(t, "loadshed"))
	shedCfg.Policy = policy
	shedCfg.Shadow = prometheusTwin(t, 6)
	// The relapse is what this test is about: hold the fix until loadshed
	// has seen it (the demo keeps to its set time).
	shedCfg.HoldFixForRelapse = true
	// kubectl loadshed's other subcommands run at the moments an SRE would.
	plugin := newPluginRun(t, policy, true)
	shedCfg.OnCluster = plugin.onCluster
	shed, err := replay.Run(ctx, shedCfg)
	plugin.stop(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shed.Prometheus.Stop)
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
	t.Run("the twin that reads Prometheus fires and clears with the policy", func(t *testing.T) {
		checkPrometheusTwin(t, shed, shedCfg.Policy.Spec.Interval.Duration)
	})
	t.Run("kubectl loadshed's subcommands ran during the flood", func(t *testing.T) {
		plugin.report(t)
	})
	t.Run("a back-test of the recording fires and clears when the operator did", func(t *testing.T) {
		checkBackTestOfRecording(t, plugin, shed)
	})
	t.Run("a back-test of the baseline's recording would have throttled and paused the flood", func(t *testing.T) {
		checkBackTestOfBaseline(t, basePlugin, baseline)
	})
	t.Run("a back-test on Prometheus fires and clears when the twin did", func(t *testing.T) {
		checkBackTestOnPrometheus(t, plugin, shed)
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

// The Prometheus side of the replay: each scenario runs a Prometheus server
// that scrapes the kube-apiserver (replay.Config.Prometheus), and the
// loadshed scenario runs, beside the sample policy, its twin that reads
// Prometheus (config/samples/loadshed_v1alpha1_loadshedpolicy_prometheus.yaml,
// made as much faster, in dryRun) as a shadow: the Prometheus source end
// to end, on the same flood.

// withPrometheus gives a scenario its Prometheus, from LOADSHED_PROMETHEUS
// (which `make test` sets), scraping every 3s, the replay's default
// (replay.DefaultPrometheusScrapeInterval): the flood is CPU-bound on 2
// cores, and each scrape of kube-apiserver's large /metrics costs it CPU.
func withPrometheus(t *testing.T, cfg replay.Config) replay.Config {
	t.Helper()
	bin := os.Getenv("LOADSHED_PROMETHEUS")
	if bin == "" {
		t.Fatal("LOADSHED_PROMETHEUS is not set: run `make test`, or `make prometheus` and " +
			"export LOADSHED_PROMETHEUS=$PWD/bin/prometheus-<version>")
	}
	cfg.Prometheus = &replay.Prometheus{Binary: bin}
	return cfg
}

// prometheusTwin is the sample policy's twin that reads Prometheus, made
// factor times faster, in dryRun (as the sample is): it acts on nothing,
// and its TriggerFired and TriggerCleared events say when it would have.
func prometheusTwin(t *testing.T, factor float64) *v1alpha1.LoadShedPolicy {
	t.Helper()
	p, err := replay.PrometheusSamplePolicy(testenv.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	twin := replay.Faster(p, factor)
	if !twin.Spec.DryRun {
		t.Fatalf("%s is not in dryRun: as a shadow it would act beside the policy", replay.PrometheusSamplePolicyPath)
	}
	return twin
}

// twinLag is how many of the policy's intervals the twin's first firing
// and last clearing may be from the policy's. Both are evaluated at the same
// instants (one sampler, the same interval), but the twin's values rest on
// Prometheus's last scrape before each, up to a scrape interval (3s) older
// than the operator's own, and on rate windows that Prometheus extrapolates
// from the scrapes in them; a value that crosses a threshold between two
// evaluations is seen by one side an interval later. And while the flood
// stalls kube-apiserver, its scrapes take seconds, and Prometheus's time
// out sooner (3s) than the operator's (5s): the requests that end in that
// gap are in no window of two of its scrapes, so the twin may fire on
// another trigger than the policy, later (with scrapes every 2s, it missed
// the latency spike the policy fired on, and fired on scrapeLatency, its
// scrapes timing out, two intervals after it). Two intervals cover that; a
// third the lag.
const twinLag = 3

// checkPrometheusTwin checks that the twin fires and clears with the
// policy: each time both fire (compareEpisodes), within twinLag intervals;
// a relapse by a hair may be seen by one of them only.
func checkPrometheusTwin(t *testing.T, shed *replay.Result, interval time.Duration) {
	t.Helper()
	compareEpisodes(t, "twin", "the twin", shed.Started, liveTransitions(shed.Started, shed.Triggers, shed.Events),
		liveTransitions(shed.Started, shed.ShadowTriggers, shed.ShadowEvents), twinLag*interval, twinLag*interval,
		marginalPrometheus)
}
