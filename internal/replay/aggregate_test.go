package replay

import (
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []float64
		want   Spread
	}{
		{"no values", nil, Spread{}},
		{"one value", []float64{7}, Spread{Median: 7, Min: 7, Max: 7, N: 1}},
		{"an odd count's median is the middle one", []float64{9, 1, 5}, Spread{Median: 5, Min: 1, Max: 9, N: 3}},
		{"an even count's median is the mean of the middle two", []float64{4, 1, 10, 2}, Spread{Median: 3, Min: 1, Max: 10, N: 4}},
		{"equal values", []float64{2, 2, 2}, Spread{Median: 2, Min: 2, Max: 2, N: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SpreadOf(tc.values); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSpreadOfLeavesItsInputAlone(t *testing.T) {
	v := []float64{3, 1, 2}
	SpreadOf(v)
	if v[0] != 3 || v[1] != 1 || v[2] != 2 {
		t.Errorf("the values were reordered: %v", v)
	}
}

func TestAggregateCell(t *testing.T) {
	secs := scoreRow{format: seconds}
	s := func(d time.Duration) figure { return duration(d) }
	for _, tc := range []struct {
		name string
		figs []figure
		want string
	}{
		{"every run has it", []figure{s(20 * time.Second), s(18 * time.Second), s(25 * time.Second)}, "20s (18s–25s)"},
		{"equal figures need no range", []figure{s(20 * time.Second), s(20 * time.Second)}, "20s"},
		{"an even count", []figure{s(10 * time.Second), s(20 * time.Second)}, "15s (10s–20s)"},
		{"some runs never got there", []figure{s(20 * time.Second), s(-1), s(30 * time.Second)}, "25s (20s–30s) 2/3"},
		{"no run got there", []figure{s(-1), s(-1)}, "never"},
		{"it does not apply", []figure{notApplicable, notApplicable}, "-"},
		{"figures that round alike need no range", []figure{s(20 * time.Second), s(20*time.Second + 100*time.Millisecond)}, "20s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aggregateCell(secs, tc.figs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// row returns a table's row, its cells separated by single spaces.
func row(t *testing.T, table, label string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, label) {
			return strings.Join(strings.Fields(strings.TrimPrefix(l, label)), " ")
		}
	}
	t.Fatalf("no row %q in:\n%s", label, table)
	return ""
}

func TestAggregateTable(t *testing.T) {
	op := &OperatorStats{Requests: 100, PeakRSS: 64 << 20}
	// loadshed throttled and paused in runs 1 and 3, throttled only in run 2.
	shed := func(throttleAt, pauseAt time.Duration) Scenario {
		s := flooded("loadshed", steady(50))
		s.Operator = op
		s.Events = append(s.Events, at(throttleAt, v1alpha1.EventThrottled))
		if pauseAt > 0 {
			s.Events = append(s.Events, at(pauseAt, v1alpha1.EventPaused))
		}
		return s
	}
	drain := flooded("drain", steady(0))
	drain.Burst, drain.Operator = "drain", op
	falsePause := drain
	falsePause.Events = []Event{at(40*time.Second, v1alpha1.EventPaused)}
	runs := [][]Scenario{
		{flooded("baseline", steady(50)), shed(30*time.Second, 40*time.Second), drain},
		{flooded("baseline", steady(50)), shed(32*time.Second, 0), falsePause},
		{flooded("baseline", steady(10)), shed(40*time.Second, 45*time.Second), drain},
	}
	table := AggregateTable(runs)
	for _, tc := range []struct{ label, want string }{
		{"median (min–max) of 3 runs", "baseline loadshed drain"},
		{"time to throttle (flood to throttle)", "never 22s (20s–30s) -"},
		{"time to mitigate (flood to pause)", "never 33s (30s–35s) 2/3 -"},
		{"offered load: agents' LIST attempts/s", "50.0 (10.0–50.0) 50.0 -"},
		{"false pauses (benign burst)", "- - 0 (0–1)"},
		{"operator's API requests", "- 100 100"},
		{"runs in which loadshed throttled", "- 3/3 0/3"},
		{"runs in which loadshed paused", "- 2/3 1/3"},
	} {
		if got := row(t, table, tc.label); got != tc.want {
			t.Errorf("row %q reads %q, want %q", tc.label, got, tc.want)
		}
	}
	if !strings.Contains(table, "run 3: INVALID COMPARISON: baseline and loadshed") {
		t.Errorf("the table does not say that run 3's floods differed:\n%s", table)
	}
	if strings.Contains(table, "run 1: INVALID") || strings.Contains(table, "run 2: INVALID") {
		t.Errorf("the table says that floods that agree differed:\n%s", table)
	}
}
