package backtest

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
)

const (
	fired     = v1alpha1.EventTriggerFired
	cleared   = v1alpha1.EventTriggerCleared
	throttled = string(plan.Throttled)
	paused    = string(plan.Paused)
	started   = string(plan.RestoreStarted)
	advanced  = string(plan.WaveAdvanced)
	restored  = string(plan.Restored)
	repaused  = string(plan.Repaused)
	released  = string(plan.Unthrottled)
	agent     = "telemetry/agent"
)

// The times below are when the operator would evaluate: round i is done at
// i×10s+0.2s, and it evaluates then, until a plan asks to look again sooner
// (a pause due at pause.after): from then on its requeue, at whole seconds,
// comes before each round, and it evaluates on the rounds done so far, a
// round old (see engine.run).
func TestTimelines(t *testing.T) {
	tests := []struct {
		name  string
		day   day
		want  []string
		blind int
	}{
		{
			name: "a flood fires after for, is throttled, paused pause.after later, and restored in waves once clear",
			day:  day{rounds: 120, inflight: flood([2]int{12, 60})},
			want: []string{
				// Past 400 from round 12 (120s); for: 30s.
				want(fired, "inflight", "2m30.2s"), want(throttled, agent, "2m30.2s"),
				// pause.after: 1m after the throttle (since 150s, to the second).
				want(paused, agent, "3m30s"),
				// At or below 150 from round 60 (600s); for: 30s.
				want(cleared, "inflight", "10m30s"),
				// stableFor 1m, then two waves of a minute's probation.
				want(started, agent, "11m30s"), want(advanced, agent, "12m30s"), want(restored, agent, "13m30s"),
				// stableFor after the last restore.
				want(released, agent, "14m30s"),
			},
		},
		{
			name: "a relapse during a wave pauses again, and the next restore waits the next attempt's backoff",
			day:  day{rounds: 130, inflight: flood([2]int{12, 60}, [2]int{72, 80})},
			want: []string{
				want(fired, "inflight", "2m30.2s"), want(throttled, agent, "2m30.2s"), want(paused, agent, "3m30s"),
				want(cleared, "inflight", "10m30s"), want(started, agent, "11m30s"),
				// Past 400 again from round 72 (720s), during wave 1.
				want(fired, "inflight", "12m30s"), want(repaused, agent, "12m30s"),
				// Clear from round 80 (800s); attempt 1's backoff (2m from
				// 12m30s) has passed when stableFor has.
				want(cleared, "inflight", "13m50s"), want(started, agent, "14m50s"), want(advanced, agent, "15m50s"),
				want(restored, agent, "16m50s"), want(released, agent, "17m50s"),
			},
		},
		{
			name: "a blind stretch is Unknown and holds the restore; probation starts over when the signal is back",
			day: day{rounds: 120, inflight: flood([2]int{12, 60}),
				blind: func(i int) bool { return i >= 72 && i < 78 }},
			want: []string{
				want(fired, "inflight", "2m30.2s"), want(throttled, agent, "2m30.2s"), want(paused, agent, "3m30s"),
				want(cleared, "inflight", "10m30s"), want(started, agent, "11m30s"),
				// Rounds 72 to 77 (720s to 770s) could scrape nothing.
				want(KindTriggerUnknown, "inflight", "12m10s"), want(KindTriggerKnown, "inflight", "13m10s"),
				// stableFor from the signal's return, not probation from the wave's start.
				want(advanced, agent, "14m10s"), want(restored, agent, "15m10s"), want(released, agent, "16m10s"),
			},
			blind: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(input(t, tt.day))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range res.Timeline {
				got = append(got, line(e))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("timeline:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			s := res.Summary
			firing, shedding, fires := spans(res.Timeline)
			if s.TimesFired != fires || s.Shedding.Duration != shedding || s.Firing.Duration != firing {
				t.Errorf("fired %d times for %v, shedding %v; the timeline says %d, %v and %v", s.TimesFired, s.Firing.Duration,
					s.Shedding.Duration, fires, firing, shedding)
			}
			if !slices.Equal(s.Paused, []string{agent}) || !slices.Equal(s.Throttled, []string{agent}) {
				t.Errorf("paused %v, throttled %v, want %s both", s.Paused, s.Throttled, agent)
			}
			if s.Unseen.BlindRounds != tt.blind || s.Evaluations < tt.day.rounds {
				t.Errorf("%d blind rounds in %d evaluations, want %d in at least %d", s.Unseen.BlindRounds, s.Evaluations, tt.blind, tt.day.rounds)
			}
		})
	}
}

// spans adds up, from a timeline, the time from each firing to its
// clearing, the time from the first throttle to the last unthrottle, and
// the firings.
func spans(timeline []Entry) (firing, shedding time.Duration, fires int) {
	var firedAt, throttledAt time.Time
	for _, e := range timeline {
		switch e.Kind {
		case fired:
			firedAt = e.Time
			fires++
		case cleared:
			firing += e.Time.Sub(firedAt)
		case throttled:
			throttledAt = e.Time
		case released:
			shedding = e.Time.Sub(throttledAt)
		}
	}
	return firing, shedding, fires
}

func TestReasonsAreThePlannersAndTheEvents(t *testing.T) {
	res, err := Run(input(t, day{rounds: 130, inflight: flood([2]int{12, 60}, [2]int{72, 80})}))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Timeline {
		var want []string
		switch e.Kind {
		case fired:
			want = []string{"Trigger inflight fired: inflightRequests is 600, above 400"}
		case cleared:
			want = []string{"Trigger inflight cleared: inflightRequests is 100, at or below 150"}
		case paused:
			want = []string{"its ServiceAccount telemetry/agent makes", "after 1m0s of throttling"}
		case repaused:
			relapse := t0.Add(12*time.Minute + 30*time.Second)
			next := relapse.Add(plan.Backoff(readFloodPolicy(t).Restore.Backoff, types.NamespacedName{Namespace: "telemetry", Name: "agent"}, 1))
			want = []string{"attempt 1", "next restore not before " + next.Format(time.RFC3339)}
		case started:
			want = []string{"wave 1 of 2: 50% of its nodes"}
		}
		for _, w := range want {
			if !strings.Contains(e.Reason, w) {
				t.Errorf("%s: reason %q does not say %q", line(e), e.Reason, w)
			}
		}
		if (e.Kind == fired || e.Kind == cleared) && (e.Value == "" || e.Threshold == "") {
			t.Errorf("%s: no value or threshold", line(e))
		}
	}
}

// TestTheEngineAddsNoDecision checks every evaluation of a back-test: its
// trigger states are detection.Evaluate's, its plan is plan.Decide's, its
// timeline is the plan's changes and the triggers' transitions, and what
// the next evaluation finds in place is what the plan left (to the second
// the operator's annotations keep).
func TestTheEngineAddsNoDecision(t *testing.T) {
	e, err := newEngine(input(t, day{rounds: 160, inflight: flood([2]int{12, 60}, [2]int{72, 80}),
		blind: func(i int) bool { return i >= 100 && i < 104 }}))
	if err != nil {
		t.Fatal(err)
	}
	var evals []evaluation
	e.observe = func(ev evaluation) { evals = append(evals, ev) }
	e.run()
	if e.err != nil || len(evals) < 130 {
		t.Fatalf("%d evaluations, error %v", len(evals), e.err)
	}
	kinds := map[string]bool{}
	for k, ev := range evals {
		if got := detection.Evaluate(ev.detection); !reflect.DeepEqual(got, ev.readings) {
			t.Fatalf("evaluation %d: readings %+v, detection.Evaluate says %+v", k, ev.readings, got)
		}
		if got := plan.Decide(ev.plan); !reflect.DeepEqual(got, ev.decided) {
			t.Fatalf("evaluation %d: plan %+v, plan.Decide says %+v", k, ev.decided, got)
		}
		var planned []string
		for _, entry := range ev.entries {
			if entry.Kind != fired && entry.Kind != cleared && entry.Kind != KindTriggerUnknown && entry.Kind != KindTriggerKnown {
				planned = append(planned, entry.Kind+" "+entry.Subject+": "+entry.Reason)
			}
		}
		var decided []string
		for _, c := range ev.decided.Changes {
			decided = append(decided, string(c.Kind)+" "+c.Target.String()+": "+c.Reason)
		}
		if !slices.Equal(planned, decided) {
			t.Errorf("evaluation %d: timeline %q, plan %q", k, planned, decided)
		}
		for _, c := range ev.decided.Changes {
			kinds[string(c.Kind)] = true
		}
		if k+1 < len(evals) {
			carried(t, k, ev.plan.Now, ev.decided, evals[k+1].plan)
		}
	}
	for _, k := range []string{throttled, paused, started, repaused, advanced, restored, released} {
		if !kinds[k] {
			t.Errorf("no %s: the scenario does not exercise the planner", k)
		}
	}
}

// carried checks that what one evaluation's plan left is what the next one
// finds in place, times kept to the second as annotations keep them.
func carried(t *testing.T, k int, now time.Time, p plan.Plan, next plan.Input) {
	t.Helper()
	if len(p.Throttled) != len(next.Throttled) {
		t.Errorf("evaluation %d throttles %v, the next finds %v", k, p.Throttled, next.Throttled)
	}
	for sa, since := range p.Throttled {
		if got, ok := next.Throttled[sa]; !ok || !got.Equal(since.Truncate(time.Second)) {
			t.Errorf("evaluation %d throttles %s since %s, the next finds %s", k, sa, since, got)
		}
	}
	if len(p.Paused) != len(next.Paused) {
		t.Errorf("evaluation %d pauses %v, the next finds %v", k, p.Paused, next.Paused)
	}
	for ds, rec := range p.Paused {
		got := next.Paused[ds]
		rec.Since, rec.WaveStarted, rec.NextRestore = rec.Since.Truncate(time.Second), rec.WaveStarted.Truncate(time.Second),
			rec.NextRestore.Truncate(time.Second)
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("evaluation %d pauses %s as %+v, the next finds %+v", k, ds, rec, got)
		}
	}
	for _, ds := range p.Restored {
		if r, ok := next.Restorations[ds]; !ok || !r.At.Equal(now) {
			t.Errorf("evaluation %d restores %s at %s, the next finds %+v", k, ds, now, r)
		}
		if !next.LastRestored.Equal(now.Truncate(time.Second)) {
			t.Errorf("evaluation %d restores %s at %s, the next finds the last restore at %s", k, ds, now, next.LastRestored)
		}
	}
}

func TestWhatItMayNotDoIsSaidOncePerFiring(t *testing.T) {
	in := input(t, day{rounds: 130, inflight: flood([2]int{12, 60}, [2]int{72, 80}),
		unattributed: func(i int) bool { return i >= 40 && i < 43 }})
	in.World.DaemonSets[0].Spec.Template.Spec.PriorityClassName = "system-node-critical"
	res, err := Run(in)
	if err != nil {
		t.Fatal(err)
	}
	kinds := make([]string, 0, len(res.Timeline))
	for _, e := range res.Timeline {
		kinds = append(kinds, e.Kind+" "+e.Subject)
	}
	blocked := v1alpha1.EventBlocked + " " + agent
	// The agent runs at system-node-critical: neither throttled nor paused,
	// and each said once. The second flood (rounds 72 to 79) is clearing
	// before pause.after has passed: no pause is due, none is blocked.
	want := []string{fired + " inflight", blocked, blocked, cleared + " inflight", fired + " inflight", blocked, cleared + " inflight"}
	if !slices.Equal(kinds, want) {
		t.Errorf("timeline %q, want %q", kinds, want)
	}
	s := res.Summary
	if len(s.Blocked) != 2 || !strings.Contains(s.Blocked[0], "protected") || len(s.Paused)+len(s.Throttled) != 0 || s.Shedding.Duration != 0 {
		t.Errorf("summary %+v, want a throttle and a pause blocked, nothing shed", s)
	}
	if s.Unseen.UnattributedRounds != 3 {
		t.Errorf("%d rounds without attribution, want 3", s.Unseen.UnattributedRounds)
	}
}
