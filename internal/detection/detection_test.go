package detection

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/apfdump"
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

// TestAnAPIServerThatCannotBeReadLeavesOnlyAFiringReading: with one of two
// API servers not scraped, a calm value from the other is no reading (the
// trigger is Unknown, never OK), while a flood on the other still fires.
func TestAnAPIServerThatCannotBeReadLeavesOnlyAFiringReading(t *testing.T) {
	cfg := config()
	q, err := signals.ForTrigger(&cfg.Triggers[0])
	if err != nil {
		t.Fatal(err)
	}
	evaluate := func(values ...float64) Reading {
		rounds := inflightRounds(t, q, values...)
		for _, r := range rounds {
			r.Failed = map[string]string{"b": "connection refused"}
		}
		in := Input{Config: cfg, Queries: map[string]signals.Query{"inflight": q}, Rounds: rounds,
			Previous: map[string]trigger.Status{"inflight": {State: v1alpha1.TriggerOK, Since: t0.Add(-time.Hour)}},
			Now:      rounds[len(rounds)-1].T}
		return Evaluate(in)[0]
	}
	calm := evaluate(100, 100, 100)
	if calm.OK || calm.Status.State != v1alpha1.TriggerUnknown || AllClear([]Reading{calm}) {
		t.Errorf("a calm API server beside one not read gave %+v; want no value, Unknown", calm)
	}
	if want := "only a lower bound, 100, from the API servers scraped: 1 of 2 instances not scraped (b: connection refused)"; calm.Message != want {
		t.Errorf("message %q, want %q", calm.Message, want)
	}
	flooded := evaluate(500, 520, 540)
	if !flooded.OK || flooded.Value != 540 || flooded.Status.State != v1alpha1.TriggerFiring {
		t.Errorf("a flooded API server beside one not read gave %+v; want 540, firing", flooded)
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

// sampled is a round at second s in which the API servers held, per
// instance, the given loads by user.
func sampled(s int, instances ...map[string]apfdump.Load) *signals.Round {
	r := &signals.Round{T: t0.Add(time.Duration(s) * time.Second), Clients: map[string]apfdump.Summary{}}
	for i, byUser := range instances {
		sum := apfdump.Summary{ByUser: byUser}
		for _, l := range byUser {
			sum.Total.Add(l)
		}
		r.Clients[fmt.Sprintf("10.0.0.%d:6443", i+1)] = sum
	}
	return r
}

func TestOffendersAreWhoeverTheAPIServersHold(t *testing.T) {
	const (
		agent = "system:serviceaccount:telemetry:agent"
		api   = "system:serviceaccount:shop:api"
		node  = "system:node:node-7"
	)
	agentSA := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	scope := Scope{DaemonSets: map[types.NamespacedName][]types.NamespacedName{
		agentSA: {{Namespace: "telemetry", Name: "agent"}, {Namespace: "telemetry", Name: "agent-v2"}},
	}}
	rounds := []*signals.Round{
		// Out of the window: a minute before the newest.
		sampled(0, map[string]apfdump.Load{"alice": {Requests: 100, Seats: 100}}),
		sampled(50,
			map[string]apfdump.Load{agent: {Requests: 6, Seats: 60}, api: {Requests: 3, Seats: 3}},
			map[string]apfdump.Load{agent: {Requests: 2, Waiting: 2, Seats: 20}, node: {Requests: 1, Seats: 1}}),
		sampled(60,
			map[string]apfdump.Load{api: {Requests: 7, Seats: 7}, "alice": {Requests: 1, Seats: 1}}),
	}
	got := Offenders(rounds, scope, time.Minute)
	users := make([]string, 0, len(got))
	for _, o := range got {
		users = append(users, o.User)
	}
	// Seats: agent 80, api 10, node 1, alice 1 (of 92); requests: agent 8,
	// api 10, node 1, alice 1 (of 20).
	if want := []string{agent, api, "alice", node}; !slices.Equal(users, want) {
		t.Fatalf("offenders %v, want %v (alice's load a minute ago out of the window)", users, want)
	}
	top := got[0]
	if top.ServiceAccount != agentSA || !top.Shared() || math.Abs(top.SeatShare-80.0/92) > 1e-9 ||
		math.Abs(top.InFlightShare-8.0/20) > 1e-9 {
		t.Errorf("top offender %+v; want telemetry/agent, its two DaemonSets, 87%% of the seats, 40%% of the requests", top)
	}
	if got[1].ServiceAccount.String() != "shop/api" || len(got[1].DaemonSets) != 0 || got[1].InFlightShare != 0.5 {
		t.Errorf("a Deployment's ServiceAccount read as %+v; want shop/api, no DaemonSet, half the requests", got[1])
	}
	for _, o := range got[2:] {
		if o.ServiceAccount != (types.NamespacedName{}) {
			t.Errorf("%s read as ServiceAccount %v", o.User, o.ServiceAccount)
		}
	}
}

func TestAThrottledClientThatKeepsTryingKeepsItsShare(t *testing.T) {
	dispatched, rejected := signals.DispatchedByFlowSchema.Key(), signals.RejectedByFlowSchema.Key()
	round := func(s int, throttleOK, throttleRejected, others float64) *signals.Round {
		r := sampled(s, map[string]apfdump.Load{"system:serviceaccount:shop:web": {Requests: 2, Seats: 2}})
		r.Instances = map[string]map[string]signals.Result{"a": {
			dispatched: {Groups: map[string]float64{"loadshed-throttle-telemetry.agent": throttleOK, "service-accounts": others}},
			rejected:   {Groups: map[string]float64{"loadshed-throttle-telemetry.agent": throttleRejected}},
		}}
		return r
	}
	// Over 10s the throttle lets 10 of the agents' requests through and
	// turns 890 away, while everyone else makes 100. The rejected requests
	// are gone at once: no sample holds them.
	rounds := []*signals.Round{round(0, 0, 0, 0), round(10, 10, 890, 100)}
	agentSA := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	got := Offenders(rounds, Scope{Throttles: map[types.NamespacedName]string{agentSA: "loadshed-throttle-telemetry.agent"}}, time.Minute)
	if o := got[0]; o.ServiceAccount != agentSA || o.RequestsPerSecond != 1 || o.RejectedPerSecond != 89 ||
		math.Abs(o.RequestShare-0.9) > 1e-9 || o.InFlightShare != 0 {
		t.Errorf("throttled offender = %+v; want telemetry/agent first, 1/s dispatched, 89/s rejected, 90%% of what was asked", o)
	}
	// shop/web is all the API server holds, of the 11% of requests it let in.
	if o := got[1]; math.Abs(o.InFlightShare-0.11) > 1e-9 || math.Abs(o.SeatShare-0.11) > 1e-9 {
		t.Errorf("the one client held while the flood is turned away = %+v; want 11%% shares, not 100%%", o)
	}
}

func TestRetentionCoversTheLongestForAndWindow(t *testing.T) {
	cfg := config()
	if got, want := Retention(cfg), 20*time.Second+time.Minute+2*MaxGap(cfg); got != want {
		t.Errorf("Retention = %v, want %v", got, want)
	}
}

func TestAGetCaughtInFlightInAQuietClusterHoldsNoSeatShare(t *testing.T) {
	const agent = "system:serviceaccount:telemetry:agent"
	// Twelve samples of a quiet cluster, two requests of others held in
	// each; in the newest one, one of the agents' GETs was executing too.
	var rounds []*signals.Round
	for s := 0; s < 60; s += 5 {
		rounds = append(rounds, sampled(s, map[string]apfdump.Load{"system:kube-scheduler": {Requests: 2, Seats: 2}}))
	}
	rounds = append(rounds, sampled(60, map[string]apfdump.Load{"system:kube-scheduler": {Requests: 2, Seats: 2},
		agent: {Requests: 1, Seats: 1}}))
	got := Offenders(rounds, Scope{}, time.Minute)
	i := slices.IndexFunc(got, func(o Offender) bool { return o.User == agent })
	if i < 0 || got[i].SeatShare > 0.05 || got[i].InFlightShare > 0.05 {
		t.Errorf("offenders %+v; want the agent's shares over the window (1 in 12 samples of 2), not the instant's third", got)
	}
}

// TestAHealthyStreakIsNotCarriedAcrossATimeNoEvaluationSaw: the policy's
// status says the trigger has been OK for ten minutes, as the operator
// that wrote it five minutes ago saw it; the sampler's history (a new
// operator's, or a new leader's) starts at t0, without a gap. The five
// minutes nobody evaluated do not count towards the streak; a loop a
// moment ago, or a firing trigger, carries on as before.
func TestAHealthyStreakIsNotCarriedAcrossATimeNoEvaluationSaw(t *testing.T) {
	cfg := config() // interval 10s, scrape timeout 5s: maxGap 25s
	q, err := signals.ForTrigger(&cfg.Triggers[0])
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(20 * time.Second)
	okSince := trigger.Status{State: v1alpha1.TriggerOK, Since: t0.Add(-10 * time.Minute)}
	firing := trigger.Status{State: v1alpha1.TriggerFiring, Since: t0.Add(-10 * time.Minute)}
	for _, tc := range []struct {
		name       string
		previous   trigger.Status
		previousAt time.Time
		values     []float64
		want       trigger.Status
	}{
		{name: "evaluated a loop ago: the streak goes on", previous: okSince, previousAt: t0.Add(10 * time.Second),
			values: []float64{100, 100, 100}, want: okSince},
		{name: "evaluated just within maxGap (and a second): the streak goes on", previous: okSince,
			previousAt: now.Add(-26 * time.Second), values: []float64{100, 100, 100}, want: okSince},
		{name: "last evaluated five minutes ago: OK from now", previous: okSince, previousAt: t0.Add(-5 * time.Minute),
			values: []float64{100, 100, 100}, want: trigger.Status{State: v1alpha1.TriggerOK, Since: now}},
		{name: "last evaluated five minutes ago, nothing read yet: unknown since then", previous: okSince,
			previousAt: t0.Add(-5 * time.Minute),
			want:       trigger.Status{State: v1alpha1.TriggerUnknown, Since: t0.Add(-5 * time.Minute)}},
		{name: "never evaluated: as before", previous: okSince, values: []float64{100, 100, 100}, want: okSince},
		{name: "firing stays firing across the time", previous: firing, previousAt: t0.Add(-5 * time.Minute),
			values: []float64{500, 500, 500}, want: firing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Config: cfg, Queries: map[string]signals.Query{"inflight": q}, Rounds: inflightRounds(t, q, tc.values...),
				Previous: map[string]trigger.Status{"inflight": tc.previous}, PreviousAt: tc.previousAt, Now: now}
			if got := Evaluate(in)[0].Status; got != tc.want {
				t.Errorf("the trigger is %s since %v, want %s since %v", got.State, got.Since, tc.want.State, tc.want.Since)
			}
		})
	}
}
