package replay

import (
	"fmt"
	"math"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// OfferedLoadWindow is the longest early part of the flood over which the
// agents' offered load is measured. The window ends earlier when loadshed
// acts (its first Throttled or Paused event): until then every scenario's
// agents run the same, unthrottled, so the window measures the flood as it
// was offered and not what loadshed made of it.
const OfferedLoadWindow = 20 * time.Second

// OfferedLoadTolerance is how far apart two scenarios' offered loads may
// be, relative to the larger, for their scores to compare: 0.2 is 20%.
const OfferedLoadTolerance = 0.2

// OfferedLoad is what the telemetry agents asked of the API server early in
// the flood, before loadshed did anything.
type OfferedLoad struct {
	// Window is how long it was measured, from the flood's start: the
	// earlier of loadshed's first action and OfferedLoadWindow, in whole
	// seconds. It is 0 when the scenario has no flood.
	Window time.Duration
	// AttemptsPerSecond are the LISTs the agents meant to send per second
	// of the window: the flood as offered, compared across scenarios.
	AttemptsPerSecond float64
	// ListsPerSecond are the LISTs they sent, and BytesPerSecond the
	// response bytes they read, per second of the window: both depend on
	// how fast the API server answered, so they are shown, not compared.
	ListsPerSecond, BytesPerSecond float64
}

// OfferedLoadOf returns the agents' offered load in s over its own window.
func OfferedLoadOf(s Scenario) OfferedLoad {
	return offeredOver(s, offeredWindow(s))
}

// offeredWindow is s's window: from the flood's start to the earlier of
// the first Throttled or Paused event and OfferedLoadWindow, truncated to
// whole seconds; 0 without a flood.
func offeredWindow(s Scenario) time.Duration {
	if s.Burst != "" {
		return 0
	}
	w := OfferedLoadWindow
	for _, e := range s.Events {
		if (e.Reason == v1alpha1.EventThrottled || e.Reason == v1alpha1.EventPaused) && e.At >= s.FloodStart {
			w = min(w, e.At-s.FloodStart)
			break
		}
	}
	return w.Truncate(time.Second)
}

// offeredOver sums the agents' LIST attempts, LISTs and bytes over the seconds from the
// flood's start to w after it.
func offeredOver(s Scenario, w time.Duration) OfferedLoad {
	out := OfferedLoad{Window: w}
	if w <= 0 {
		return out
	}
	var attempts, lists, bytes int64
	for _, x := range s.Samples {
		if x.At >= s.FloodStart && x.At < s.FloodStart+w {
			attempts += x.AgentListAttempts
			lists += x.AgentLists
			bytes += x.AgentBytes
		}
	}
	out.AttemptsPerSecond = float64(attempts) / w.Seconds()
	out.ListsPerSecond = float64(lists) / w.Seconds()
	out.BytesPerSecond = float64(bytes) / w.Seconds()
	return out
}

// CompareOfferedLoad says whether a and b saw the same flood: their agents'
// LIST attempts per second, measured over the shorter of their two windows,
// within OfferedLoadTolerance of each other. The LISTs sent and the bytes
// read must have been measured in both, but are not compared: an agent
// sends a LIST only while it has fewer than its Parallel requests in
// flight, and bytes are counted as responses arrive, so over a window of
// seconds both depend on when the API server finishes LISTs of tens of
// megabytes, an outcome of the scenario rather than what the agents
// offered. (In one CI run the same flood's agents sent 28.1 LISTs/s in
// baseline and 22.4 in loadshed over the 14 s before loadshed throttled,
// the same 25 agents configured for 2 a second in both; in another they
// read 48% fewer bytes.) It returns nil when they compare, and an error that says
// why not otherwise: a scenario without a flood, a flood not measured, or
// loads too far apart.
func CompareOfferedLoad(a, b Scenario) error {
	for _, s := range []Scenario{a, b} {
		if s.Burst != "" {
			return fmt.Errorf("%s has no flood (it plays the %s burst)", s.Name, s.Burst)
		}
	}
	w := min(offeredWindow(a), offeredWindow(b))
	if w <= 0 {
		return fmt.Errorf("no window to measure the offered load in: loadshed acted as the flood began in %s or %s", a.Name, b.Name)
	}
	la, lb := offeredOver(a, w), offeredOver(b, w)
	for _, f := range []struct {
		what     string
		va, vb   float64
		compared bool
	}{
		{"LIST attempts per second", la.AttemptsPerSecond, lb.AttemptsPerSecond, true},
		{"LISTs sent per second", la.ListsPerSecond, lb.ListsPerSecond, false},
		{"bytes read per second", la.BytesPerSecond, lb.BytesPerSecond, false},
	} {
		if f.va == 0 || f.vb == 0 {
			return fmt.Errorf("the agents' %s over the first %v of the flood: %s %.0f, %s %.0f: a flood was not measured",
				f.what, w, a.Name, f.va, b.Name, f.vb)
		}
		if d := relativeDifference(f.va, f.vb); f.compared && d > OfferedLoadTolerance {
			return fmt.Errorf("the agents' %s over the first %v of the flood differ by %.0f%% (%s %.4g, %s %.4g), more than %.0f%%",
				f.what, w, d*100, a.Name, f.va, b.Name, f.vb, OfferedLoadTolerance*100)
		}
	}
	return nil
}

// relativeDifference is |a-b| relative to the larger of a and b.
func relativeDifference(a, b float64) float64 {
	hi := math.Max(math.Abs(a), math.Abs(b))
	if hi == 0 {
		return 0
	}
	return math.Abs(a-b) / hi
}

// invalidComparison begins the line under a score table that says two
// scenarios did not see the same flood.
const invalidComparison = "INVALID COMPARISON"

// offeredLoadLines say, under a score table, whether every flood scenario
// saw the same flood as the first one.
func offeredLoadLines(scenarios []Scenario) []string {
	var ref *Scenario
	var lines []string
	for i := range scenarios {
		s := &scenarios[i]
		if s.Burst != "" {
			continue
		}
		if ref == nil {
			ref = s
			continue
		}
		if err := CompareOfferedLoad(*ref, *s); err != nil {
			lines = append(lines, fmt.Sprintf("%s: %s and %s did not see the same flood, their scores do not compare: %v",
				invalidComparison, ref.Name, s.Name, err))
		} else {
			lines = append(lines, fmt.Sprintf("offered load: %s saw the same flood as %s (within %.0f%%)", s.Name, ref.Name, OfferedLoadTolerance*100))
		}
	}
	return lines
}
