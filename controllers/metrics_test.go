package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
)

// metricsConfig is a policy's configuration as the metrics read it.
func metricsConfig() *policy.Config {
	return &policy.Config{Interval: 15 * time.Second, Restore: policy.Restore{
		Backoff: policy.Backoff{Initial: time.Minute, Multiplier: 2, Max: 4 * time.Minute, JitterPercent: 20}}}
}

func TestObserveEvaluationExportsSignalsThresholdsAndAvailability(t *testing.T) {
	const name = "metrics-availability"
	r := &LoadShedPolicyReconciler{}
	defer r.forgetMetrics(name)
	t0 := time.Unix(1_700_000_000, 0)
	state := &reconcileState{config: metricsConfig(), evaluated: t0,
		readings: []detection.Reading{{Name: "inflight", Value: 0.9, OK: true, Threshold: 0.8, ClearThreshold: 0.5}},
		metrics:  metricsStatus{reason: v1alpha1.ReasonScrapeFailed}}

	r.observeMetrics(name, state, time.Millisecond)
	// Blind from its first evaluation: the last signals are "as of now".
	want := map[prometheus.Collector]float64{
		metricsAvailable.WithLabelValues(name):                                    0,
		lastSignals.WithLabelValues(name):                                         1_700_000_000,
		unavailableEvaluations.WithLabelValues(name, v1alpha1.ReasonScrapeFailed): 1,
		unavailableEvaluations.WithLabelValues(name, v1alpha1.ReasonQueryFailed):  0,
		signalValue.WithLabelValues(name, "inflight"):                             0.9,
		triggerThreshold.WithLabelValues(name, "inflight"):                        0.8,
		triggerClearThreshold.WithLabelValues(name, "inflight"):                   0.5,
		intervalSeconds.WithLabelValues(name):                                     15,
		lastEvaluation.WithLabelValues(name):                                      1_700_000_000,
		evaluations.WithLabelValues(name):                                         1,
	}
	expectValues(t, "first, blind evaluation", want)

	state.evaluated = t0.Add(time.Minute)
	r.observeMetrics(name, state, time.Millisecond)
	expectValues(t, "second, blind evaluation", map[prometheus.Collector]float64{
		lastSignals.WithLabelValues(name):                                         1_700_000_000, // stays: the age grows
		unavailableEvaluations.WithLabelValues(name, v1alpha1.ReasonScrapeFailed): 2,
	})

	state.evaluated, state.metrics = t0.Add(2*time.Minute), metricsStatus{available: true, reason: v1alpha1.ReasonMetricsRead}
	r.observeMetrics(name, state, time.Millisecond)
	expectValues(t, "evaluation that read every signal", map[prometheus.Collector]float64{
		metricsAvailable.WithLabelValues(name): 1,
		lastSignals.WithLabelValues(name):      1_700_000_120,
	})

	// The trigger renamed: the old name's series go, the missing value too.
	state.readings = []detection.Reading{{Name: "rejected", Threshold: 1, ClearThreshold: 0.5}}
	r.observeMetrics(name, state, time.Millisecond)
	for metric, want := range map[string]int{"loadshed_detection_trigger_threshold": 1, "loadshed_detection_signal_value": 0} {
		if got := seriesOf(t, name, metric); got != want {
			t.Errorf("%d series of %s after the trigger was renamed and its value is missing, want %d", got, metric, want)
		}
	}
}

func TestObserveChangesExportsWhatThePolicyDoesAndCannotDo(t *testing.T) {
	const name = "metrics-changes"
	r := &LoadShedPolicyReconciler{}
	defer r.forgetMetrics(name)
	startMetrics(name)
	agent := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	old := types.NamespacedName{Namespace: "old", Name: "one"}
	relapsed := types.NamespacedName{Namespace: "logs", Name: "shipper"}
	p := plan.Plan{
		Throttled: map[types.NamespacedName]time.Time{{Namespace: "telemetry", Name: "sa"}: {}},
		Paused: map[types.NamespacedName]plan.Pause{
			agent:    {Wave: 2},
			old:      {Attempt: 1},
			relapsed: {Attempt: 3}, // 1m·2² = 4m: the max
		},
		Changes: []plan.Change{{Kind: plan.Repaused, Target: old}, {Kind: plan.Paused, Target: relapsed},
			{Kind: plan.WaveAdvanced, Target: agent}},
		Blocked: []plan.Block{{Kind: plan.Paused, Target: types.NamespacedName{Namespace: "kube-system", Name: "proxy"}}},
		PutBack: []types.NamespacedName{agent},
		Held:    []types.NamespacedName{old},
	}
	observeChanges(name, p, metricsConfig())
	expectValues(t, "a plan", map[prometheus.Collector]float64{
		actionsTotal.WithLabelValues(name, string(plan.Repaused), "false"):  1,
		actionsTotal.WithLabelValues(name, string(plan.Throttled), "false"): 0,
		relapses.WithLabelValues(name, "old", "one"):                        1,
		relapses.WithLabelValues(name, "logs", "shipper"):                   1,
		pauseOverrides.WithLabelValues(name, "telemetry", "agent"):          1,
		overriddenPauses.WithLabelValues(name):                              2,
		blockedActions.WithLabelValues(name, string(plan.Paused)):           1,
		blockedActions.WithLabelValues(name, string(plan.Throttled)):        0,
		pausedDaemonSets.WithLabelValues(name):                              3,
		throttledServiceAccounts.WithLabelValues(name):                      1,
		restoreWave.WithLabelValues(name, "telemetry", "agent"):             2,
		restoreAttempt.WithLabelValues(name, "logs", "shipper"):             3,
		backoffExhausted.WithLabelValues(name, "old", "one"):                0,
		backoffExhausted.WithLabelValues(name, "logs", "shipper"):           1,
	})
	if n := seriesOf(t, name, "loadshed_mitigation_relapses_total"); n != 3 {
		t.Errorf("%d relapse series, want 3: one for each DaemonSet held", n)
	}

	// agent restored, the others still paused: agent's gauges go.
	delete(p.Paused, agent)
	p.Changes, p.PutBack, p.Held, p.Blocked = nil, nil, nil, nil
	observeChanges(name, p, metricsConfig())
	if got := seriesOf(t, name, "loadshed_mitigation_daemonset_restore_wave"); got != 2 {
		t.Errorf("%d restore wave series after agent was restored, want 2", got)
	}
	expectValues(t, "the next plan", map[prometheus.Collector]float64{
		overriddenPauses.WithLabelValues(name):                    0,
		relapses.WithLabelValues(name, "old", "one"):              1,
		blockedActions.WithLabelValues(name, string(plan.Paused)): 0,
	})
}

func TestDeletedPolicyLeavesNoSeries(t *testing.T) {
	const name = "metrics-deleted"
	r := &LoadShedPolicyReconciler{}
	ds := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	r.observeMetrics(name, &reconcileState{config: metricsConfig(), evaluated: time.Unix(1, 0),
		readings: []detection.Reading{{Name: "inflight", OK: true}}, metrics: metricsStatus{available: true},
		plan: &plan.Plan{Paused: map[types.NamespacedName]plan.Pause{ds: {}}}}, time.Millisecond)
	observeChanges(name, plan.Plan{Paused: map[types.NamespacedName]plan.Pause{ds: {Attempt: 1}},
		Changes: []plan.Change{{Kind: plan.Repaused, Target: ds}}, PutBack: []types.NamespacedName{ds}}, metricsConfig())
	if n := seriesOf(t, name, ""); n == 0 {
		t.Fatal("no series for the policy before it was deleted")
	}
	r.forgetMetrics(name)
	if n := seriesOf(t, name, ""); n != 0 {
		t.Errorf("%d series of the deleted policy are left", n)
	}
}

// seriesOf counts the series of a metric (any, if metric is empty) in the
// registry labelled with the policy.
func seriesOf(t *testing.T, name, metric string) int {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if metric != "" && f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == labelPolicy && l.GetValue() == name {
					n++
				}
			}
		}
	}
	return n
}

// expectValues compares each metric's value with what is wanted.
func expectValues(t *testing.T, when string, want map[prometheus.Collector]float64) {
	t.Helper()
	for c, v := range want {
		if got := testutil.ToFloat64(c); got != v {
			desc := make(chan *prometheus.Desc, 1)
			c.Describe(desc)
			t.Errorf("%s: %s = %v, want %v", when, strings.SplitN((<-desc).String(), ",", 2)[0], got, v)
		}
	}
}
