package replay

import (
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// flooded is a scenario whose flood starts at 10s and lasts a minute; in
// its second i of the flood the agents attempt and send lists(i) LISTs of
// 1 MB each.
func flooded(name string, lists func(i int) int64, events ...Event) Scenario {
	s := Scenario{Name: name, FloodStart: 10 * time.Second, Events: events}
	for i := range 70 {
		x := Sample{At: time.Duration(i) * time.Second, Phase: PhaseQuiet}
		if i >= 10 {
			x.Phase = PhaseFlood
			x.AgentLists = lists(i - 10)
			x.AgentListAttempts = x.AgentLists
			x.AgentBytes = x.AgentLists * 1_000_000
		}
		s.Samples = append(s.Samples, x)
	}
	return s
}

func steady(n int64) func(int) int64 { return func(int) int64 { return n } }

// answeredSlowly is s with the agents sending only a fraction of the LISTs
// they attempt and reading as much fewer bytes: an API server slower to
// answer, with every agent at its cap of requests in flight.
func answeredSlowly(s Scenario, fraction float64) Scenario {
	for i := range s.Samples {
		x := &s.Samples[i]
		x.AgentLists = int64(float64(x.AgentLists) * fraction)
		x.AgentBytes = int64(float64(x.AgentBytes) * fraction)
	}
	return s
}

// tiring sends 50 a second for its first 8 seconds, then half as many: an
// API server that falls behind.
func tiring() func(int) int64 {
	const n = 50
	return func(i int) int64 {
		if i < 8 {
			return n
		}
		return n / 2
	}
}

func at(d time.Duration, reason string) Event {
	return Event{At: d, Reason: reason, Note: "telemetry/agent"}
}

func TestOfferedLoadOf(t *testing.T) {
	benign := flooded("drain", steady(50))
	benign.Burst = "drain"
	busyBefore := flooded("baseline", steady(50))
	for i := range 10 {
		busyBefore.Samples[i].AgentLists, busyBefore.Samples[i].AgentBytes = 1000, 1000*1e6
		busyBefore.Samples[i].AgentListAttempts = 1000
	}
	for _, tc := range []struct {
		name       string
		s          Scenario
		wantWindow time.Duration
		wantLists  float64
	}{
		{"without an action the window is the flood's first 20 seconds",
			flooded("baseline", steady(50)), 20 * time.Second, 50},
		{"a throttle ends the window",
			flooded("loadshed", tiring(), at(18*time.Second, v1alpha1.EventThrottled)), 8 * time.Second, 50},
		{"a pause ends it too, in whole seconds",
			flooded("loadshed", tiring(), at(18600*time.Millisecond, v1alpha1.EventPaused)), 8 * time.Second, 50},
		{"what the operator would do in dryRun does not end it",
			flooded("observe", steady(50), at(18*time.Second, v1alpha1.DryRunReason(v1alpha1.EventThrottled))), 20 * time.Second, 50},
		{"an action before the flood does not count",
			flooded("loadshed", steady(50), at(5*time.Second, v1alpha1.EventThrottled)), 20 * time.Second, 50},
		{"the seconds before the flood do not count", busyBefore, 20 * time.Second, 50},
		{"a benign burst has no offered load", benign, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := OfferedLoadOf(tc.s)
			if got.Window != tc.wantWindow || got.AttemptsPerSecond != tc.wantLists ||
				got.ListsPerSecond != tc.wantLists || got.BytesPerSecond != tc.wantLists*1e6 {
				t.Errorf("got %+v, want %v of %v LISTs/s", got, tc.wantWindow, tc.wantLists)
			}
		})
	}
	t.Run("attempts, LISTs sent and bytes are read apart", func(t *testing.T) {
		got := OfferedLoadOf(answeredSlowly(flooded("baseline", steady(50)), 0.5))
		if got.AttemptsPerSecond != 50 || got.ListsPerSecond != 25 || got.BytesPerSecond != 25e6 {
			t.Errorf("got %+v, want 50 attempts, 25 LISTs and 25 MB a second", got)
		}
	})
}

func TestCompareOfferedLoad(t *testing.T) {
	benign := flooded("list-loop", steady(0))
	benign.Burst = "list-loop"
	lighter := flooded("loadshed", steady(50))
	for i := range lighter.Samples {
		lighter.Samples[i].AgentBytes /= 2
	}
	unsent := flooded("loadshed", steady(50))
	for i := range unsent.Samples {
		unsent.Samples[i].AgentLists = 0
	}
	for _, tc := range []struct {
		name string
		a, b Scenario
		// want is a piece of the error, empty for none.
		want string
	}{
		{"the same flood compares",
			flooded("baseline", steady(50)), flooded("loadshed", steady(50)), ""},
		{"a difference within the tolerance compares",
			flooded("baseline", steady(50)), flooded("loadshed", steady(41)), ""},
		{"fewer attempts than the tolerance allows do not",
			flooded("baseline", steady(50)), flooded("loadshed", steady(35)), "LIST attempts per second over the first 20s of the flood differ by 30%"},
		{"fewer bytes read, as responses arrive later, do not make another flood",
			flooded("baseline", steady(50)), lighter, ""},
		{"fewer LISTs sent, as the agents wait for a slower API server, do not make another flood",
			flooded("baseline", steady(50)), answeredSlowly(flooded("loadshed", steady(50)), 0.7), ""},
		{"no LIST sent is a flood not measured",
			flooded("baseline", steady(50)), unsent, "LISTs sent per second over the first 20s of the flood: baseline 50, loadshed 0"},
		{"both are measured over the shorter window: before loadshed throttled",
			flooded("baseline", tiring()), flooded("loadshed", tiring(), at(18*time.Second, v1alpha1.EventThrottled)), ""},
		{"a shorter window does not hide a difference",
			flooded("baseline", steady(50)), flooded("loadshed", steady(20), at(18*time.Second, v1alpha1.EventThrottled)), "over the first 8s of the flood differ by 60%"},
		{"a benign burst does not compare",
			flooded("baseline", steady(50)), benign, "list-loop has no flood"},
		{"a flood that was not measured does not compare",
			flooded("baseline", steady(50)), flooded("loadshed", steady(0)), "a flood was not measured"},
		{"an action as the flood began leaves nothing to measure",
			flooded("baseline", steady(50)), flooded("loadshed", steady(50), at(10*time.Second, v1alpha1.EventThrottled)), "no window"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CompareOfferedLoad(tc.a, tc.b)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestTheScoreTableSaysWhenTheFloodsDiffer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		scenarios []Scenario
		want      string
	}{
		{"the same flood",
			[]Scenario{flooded("baseline", steady(50)), flooded("loadshed", steady(48))},
			"offered load: loadshed saw the same flood as baseline (within 20%)"},
		{"different floods",
			[]Scenario{flooded("baseline", steady(50)), flooded("loadshed", steady(48)), flooded("observe", steady(10))},
			"INVALID COMPARISON: baseline and observe did not see the same flood"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := ScoreTable(tc.scenarios)
			if !strings.Contains(table, tc.want) {
				t.Errorf("the table lacks %q:\n%s", tc.want, table)
			}
		})
	}
}
