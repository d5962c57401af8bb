package detection

import (
	"math"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

var t0 = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)

func config() *policy.Config {
	return &policy.Config{
		Interval: 10 * time.Second,
		Source:   policy.Source{ScrapeTimeout: 5 * time.Second},
		Triggers: []policy.Trigger{{
			Name: "inflight", Signal: v1alpha1.SignalInflightRequests,
			Threshold: 400, ClearThreshold: 150, For: 20 * time.Second, Window: time.Minute,
		}},
	}
}

// inflightRounds returns one round every 10s with the given in-flight counts.
func inflightRounds(t *testing.T, q signals.Query, values ...float64) []*signals.Round {
	t.Helper()
	rounds := make([]*signals.Round, 0, len(values))
	for i, v := range values {
		rounds = append(rounds, &signals.Round{
			T:         t0.Add(time.Duration(i) * 10 * time.Second),
			Instances: map[string]map[string]signals.Result{"a": {q.Accum.Key(): {Series: 1, Sum: v, Min: v, Max: v}}},
		})
	}
	return rounds
}

func TestEvaluateReadsEachTriggerFromTheRounds(t *testing.T) {
	cfg := config()
	q, err := signals.ForTrigger(&cfg.Triggers[0])
	if err != nil {
		t.Fatal(err)
	}
	rounds := inflightRounds(t, q, 100, 500, 520, 540)
	in := Input{Config: cfg, Queries: map[string]signals.Query{"inflight": q}, Rounds: rounds, Now: t0.Add(30 * time.Second)}
	got := Evaluate(in)
	if len(got) != 1 || got[0].Status.State != v1alpha1.TriggerFiring || !got[0].OK || got[0].Value != 540 {
		t.Fatalf("Evaluate = %+v, want inflight firing at 540", got)
	}
	if !Firing(got) || AllClear(got) {
		t.Error("Firing/AllClear disagree with the state")
	}
	if _, worst, _ := Worst(got); worst != "inflight 540/400" {
		t.Errorf("Worst = %q", worst)
	}

	// Ten minutes later with no new round: the value is stale, the trigger held.
	in.Previous = map[string]trigger.Status{"inflight": got[0].Status}
	in.Now = t0.Add(10 * time.Minute)
	stale := Evaluate(in)
	if stale[0].OK || stale[0].Status.State != v1alpha1.TriggerFiring || stale[0].Message == "" {
		t.Errorf("a stale value gave %+v; want no value, still firing, and a message", stale[0])
	}
}

func TestEvaluateTakesPromQLTriggersFromTheirPoints(t *testing.T) {
	cfg := config()
	cfg.Triggers[0] = policy.Trigger{Name: "promql", PromQL: "up", Threshold: 1, ClearThreshold: 1, Window: time.Minute}
	in := Input{Config: cfg, Points: map[string][]trigger.Point{"promql": {{T: t0, V: 0.5, OK: true}}}, Now: t0}
	got := Evaluate(in)
	if got[0].Status.State != v1alpha1.TriggerOK || got[0].Value != 0.5 || got[0].Signal != "promQL" {
		t.Errorf("Evaluate = %+v", got[0])
	}
}

func TestTransitionsNameTheTriggersThatChanged(t *testing.T) {
	prev := map[string]trigger.Status{
		"a": {State: v1alpha1.TriggerPending},
		"b": {State: v1alpha1.TriggerClearing},
		"c": {State: v1alpha1.TriggerFiring},
	}
	sigs := []Reading{
		{Name: "a", Status: trigger.Status{State: v1alpha1.TriggerFiring}},
		{Name: "b", Status: trigger.Status{State: v1alpha1.TriggerOK}},
		{Name: "c", Status: trigger.Status{State: v1alpha1.TriggerClearing}},
	}
	started, stopped := Transitions(prev, sigs)
	if len(started) != 1 || started[0].Name != "a" || len(stopped) != 1 || stopped[0].Name != "b" {
		t.Errorf("started %v, stopped %v; want a started, b stopped, c unchanged (clearing still fires)", started, stopped)
	}
}

func TestOffendersRankByRequestsAndShareTheLoad(t *testing.T) {
	key, seats := signals.DispatchedByFlowSchema.Key(), signals.SeatsByFlowSchema.Key()
	round := func(s int, flood, web, other, floodSeats float64) *signals.Round {
		return &signals.Round{T: t0.Add(time.Duration(s) * time.Second), Instances: map[string]map[string]signals.Result{"a": {
			key: {Groups: map[string]float64{"loadshed-attr-telemetry.agent": flood / 3, "loadshed-throttle-telemetry.agent": 2 * flood / 3,
				"loadshed-attr-payments.web": web, "exempt": other}},
			seats: {Groups: map[string]float64{"loadshed-attr-telemetry.agent": floodSeats, "exempt": 1}},
		}}}
	}
	rounds := []*signals.Round{round(0, 0, 0, 0, 3), round(10, 900, 50, 50, 3)}
	got := Offenders(rounds, []Attributed{
		{ServiceAccount: types.NamespacedName{Namespace: "payments", Name: "web"}, FlowSchemas: []string{"loadshed-attr-payments.web"}, DaemonSets: []types.NamespacedName{{Namespace: "payments", Name: "web"}}},
		{ServiceAccount: types.NamespacedName{Namespace: "telemetry", Name: "agent"}, FlowSchemas: []string{"loadshed-attr-telemetry.agent", "loadshed-throttle-telemetry.agent"}, DaemonSets: []types.NamespacedName{{Namespace: "telemetry", Name: "agent"}, {Namespace: "telemetry", Name: "agent-v2"}}},
	}, time.Minute)
	if got[0].ServiceAccount.String() != "telemetry/agent" || got[0].RequestsPerSecond != 90 || math.Abs(got[0].RequestShare-0.9) > 1e-9 {
		t.Errorf("first offender = %+v, want telemetry/agent at 90/s, 90%%", got[0])
	}
	if got[0].SeatShare != 0.75 || !got[0].Shared() || got[1].Shared() {
		t.Errorf("seat share %v, shared %v/%v; want 0.75, true, false", got[0].SeatShare, got[0].Shared(), got[1].Shared())
	}
}

func TestAThrottledClientThatKeepsTryingKeepsItsShare(t *testing.T) {
	dispatched, rejected := signals.DispatchedByFlowSchema.Key(), signals.RejectedByFlowSchema.Key()
	round := func(s int, attr, throttleOK, throttleRejected, others float64) *signals.Round {
		return &signals.Round{T: t0.Add(time.Duration(s) * time.Second), Instances: map[string]map[string]signals.Result{"a": {
			dispatched: {Groups: map[string]float64{"loadshed-attr-telemetry.agent": attr, "loadshed-throttle-telemetry.agent": throttleOK, "service-accounts": others}},
			rejected:   {Groups: map[string]float64{"loadshed-throttle-telemetry.agent": throttleRejected}},
		}}}
	}
	// Over 10s the throttle lets 10 of the agents' requests through and
	// turns 890 away, while everyone else makes 100.
	rounds := []*signals.Round{round(0, 0, 0, 0, 0), round(10, 0, 10, 890, 100)}
	got := Offenders(rounds, []Attributed{{ServiceAccount: types.NamespacedName{Namespace: "telemetry", Name: "agent"},
		FlowSchemas: []string{"loadshed-attr-telemetry.agent", "loadshed-throttle-telemetry.agent"}}}, time.Minute)
	if o := got[0]; o.RequestsPerSecond != 1 || o.RejectedPerSecond != 89 || math.Abs(o.RequestShare-0.9) > 1e-9 {
		t.Errorf("throttled offender = %+v; want 1/s dispatched, 89/s rejected, 90%% of what was asked", o)
	}
}

func TestRetentionCoversTheLongestForAndWindow(t *testing.T) {
	cfg := config()
	if got, want := Retention(cfg), 20*time.Second+time.Minute+2*MaxGap(cfg); got != want {
		t.Errorf("Retention = %v, want %v", got, want)
	}
}

func TestAGetCaughtInFlightInAQuietClusterHoldsNoSeatShare(t *testing.T) {
	seats := signals.SeatsByFlowSchema.Key()
	round := func(s int, agent float64) *signals.Round {
		return &signals.Round{T: t0.Add(time.Duration(s) * time.Second), Instances: map[string]map[string]signals.Result{"a": {
			seats: {Groups: map[string]float64{"loadshed-attr-telemetry.agent": agent, "exempt": 1, "workload-high": 1}}}}}
	}
	// Twelve readings of a quiet cluster; in the newest one, one of the
	// agents' GETs was executing beside the two other seats in use.
	var rounds []*signals.Round
	for s := 0; s < 60; s += 5 {
		rounds = append(rounds, round(s, 0))
	}
	rounds = append(rounds, round(60, 1))
	got := Offenders(rounds, []Attributed{{ServiceAccount: types.NamespacedName{Namespace: "telemetry", Name: "agent"}, FlowSchemas: []string{"loadshed-attr-telemetry.agent"}}}, time.Minute)
	if share := got[0].SeatShare; share > 0.05 {
		t.Errorf("seat share = %v; want the window's (1 seat in 13 readings of about 2), not the instant's third", share)
	}
}
