package trigger

import (
	"math/rand"
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

var t0 = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// series returns one point every 10s, starting at t0, with the values given;
// a negative value is a missing point.
func series(values ...float64) []Point {
	ps := make([]Point, len(values))
	for i, v := range values {
		ps[i] = Point{T: at(10 * i), V: v, OK: v >= 0}
	}
	return ps
}

var spec = Spec{Threshold: 100, ClearThreshold: 50, For: 30 * time.Second, MaxGap: 25 * time.Second}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name      string
		spec      *Spec
		prev      Status
		points    []Point
		now       time.Time
		want      v1alpha1.TriggerState
		wantSince time.Time
	}{
		{
			name:      "a healthy value is OK",
			points:    series(10, 20, 30),
			now:       at(20),
			want:      v1alpha1.TriggerOK,
			wantSince: at(20),
		},
		{
			name:      "an unbroken healthy streak keeps its since",
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    series(10, 20, 30),
			now:       at(20),
			want:      v1alpha1.TriggerOK,
			wantSince: at(-100),
		},
		{
			name: "a healthy streak does not span a missing point no evaluation saw",
			// The API server was down at 20s and the loop wrote no status
			// then: the streak starts again at the first point after it.
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    series(10, 20, -1, 30, 40),
			now:       at(40),
			want:      v1alpha1.TriggerOK,
			wantSince: at(30),
		},
		{
			name:      "nor a gap longer than maxGap between two points",
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    []Point{{T: at(0), V: 10, OK: true}, {T: at(10), V: 10, OK: true}, {T: at(50), V: 10, OK: true}, {T: at(60), V: 10, OK: true}},
			now:       at(60),
			want:      v1alpha1.TriggerOK,
			wantSince: at(50),
		},
		{
			name: "values missing at the start of the history kept are its edge, not a gap",
			// The oldest round has no earlier one to take a rate from.
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    series(-1, -1, 20, 30, 40),
			now:       at(40),
			want:      v1alpha1.TriggerOK,
			wantSince: at(-100),
		},
		{
			name:      "a streak that began after the gap keeps its own since",
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(35)},
			points:    series(10, 20, -1, 30, 40),
			now:       at(40),
			want:      v1alpha1.TriggerOK,
			wantSince: at(35),
		},
		{
			name:      "a value past threshold for less than for is pending since it crossed",
			points:    series(10, 150, 160),
			now:       at(20),
			want:      v1alpha1.TriggerPending,
			wantSince: at(10),
		},
		{
			name:      "a value past threshold for the whole of for fires",
			points:    series(10, 150, 160, 170, 180),
			now:       at(40),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(40),
		},
		{
			name:      "a value equal to threshold is not past it",
			points:    series(100, 100, 100, 100, 100),
			now:       at(40),
			want:      v1alpha1.TriggerOK,
			wantSince: at(40),
		},
		{
			name:      "a dip under threshold restarts the wait",
			points:    series(150, 160, 90, 170, 180),
			now:       at(40),
			want:      v1alpha1.TriggerPending,
			wantSince: at(30),
		},
		{
			name:      "a missing point restarts the wait",
			points:    series(150, 160, -1, 170, 180),
			now:       at(40),
			want:      v1alpha1.TriggerPending,
			wantSince: at(30),
		},
		{
			name:      "with for 0 a trigger fires at once",
			spec:      &Spec{Threshold: 100, ClearThreshold: 50, MaxGap: 25 * time.Second},
			points:    series(10, 150),
			now:       at(10),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(10),
		},
		{
			name:      "a firing trigger between the thresholds keeps firing (hysteresis)",
			prev:      Status{State: v1alpha1.TriggerFiring, Since: at(-100)},
			points:    series(150, 90, 80, 70, 60),
			now:       at(40),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(-100),
		},
		{
			name:      "a firing trigger under clearThreshold for less than for is clearing",
			prev:      Status{State: v1alpha1.TriggerFiring, Since: at(-100)},
			points:    series(150, 90, 40, 30),
			now:       at(30),
			want:      v1alpha1.TriggerClearing,
			wantSince: at(20),
		},
		{
			name:      "a firing trigger under clearThreshold for the whole of for clears",
			prev:      Status{State: v1alpha1.TriggerClearing, Since: at(10)},
			points:    series(150, 40, 30, 20, 10),
			now:       at(40),
			want:      v1alpha1.TriggerOK,
			wantSince: at(40),
		},
		{
			name:      "a clearing trigger that climbs back over clearThreshold fires again",
			prev:      Status{State: v1alpha1.TriggerClearing, Since: at(10)},
			points:    series(150, 40, 60),
			now:       at(20),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(20),
		},
		{
			name:      "missing data never counts as healthy: unknown when not firing",
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    series(10, 20, -1),
			now:       at(20),
			want:      v1alpha1.TriggerUnknown,
			wantSince: at(20),
		},
		{
			name:      "missing data never counts as healthy: a firing trigger stays firing",
			prev:      Status{State: v1alpha1.TriggerFiring, Since: at(-100)},
			points:    series(10, 20, -1),
			now:       at(20),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(-100),
		},
		{
			name:      "stale data counts as missing",
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    series(10, 20),
			now:       at(60),
			want:      v1alpha1.TriggerUnknown,
			wantSince: at(60),
		},
		{
			name:      "no data at all is unknown",
			now:       at(0),
			want:      v1alpha1.TriggerUnknown,
			wantSince: at(0),
		},
		{
			name:      "a firing trigger read back after a restart clears only after for of fresh healthy values",
			prev:      Status{State: v1alpha1.TriggerFiring, Since: at(-100)},
			points:    series(10),
			now:       at(0),
			want:      v1alpha1.TriggerClearing,
			wantSince: at(0),
		},
		{
			name:      "a pending trigger keeps the time it crossed",
			prev:      Status{State: v1alpha1.TriggerPending, Since: at(10)},
			points:    series(10, 150, 160),
			now:       at(20),
			want:      v1alpha1.TriggerPending,
			wantSince: at(10),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec
			if tt.spec != nil {
				s = *tt.spec
			}
			got := Evaluate(s, tt.prev, tt.points, tt.now)
			if got.State != tt.want || !got.Since.Equal(tt.wantSince) {
				t.Errorf("Evaluate = %s since %v, want %s since %v",
					got.State, got.Since.Sub(t0), tt.want, tt.wantSince.Sub(t0))
			}
		})
	}
}

// lowerBounds returns series(values...) with the points at the indexes
// given read from only some of the API servers.
func lowerBounds(points []Point, indexes ...int) []Point {
	for _, i := range indexes {
		points[i].LowerBound = true
	}
	return points
}

// TestALowerBoundCountsOnlyPastTheThreshold: a value read from only some of
// the API servers (one is down) can fire a trigger, as the whole would be
// past the threshold too, but never clear one nor count as calm.
func TestALowerBoundCountsOnlyPastTheThreshold(t *testing.T) {
	tests := []struct {
		name      string
		prev      Status
		points    []Point
		now       time.Time
		want      v1alpha1.TriggerState
		wantSince time.Time
	}{
		{
			name:      "lower bounds past the threshold for long enough fire",
			points:    lowerBounds(series(150, 160, 170, 180), 0, 1, 2, 3),
			now:       at(30),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(30),
		},
		{
			name:      "a lower bound past the threshold carries a pending run on",
			prev:      Status{State: v1alpha1.TriggerPending, Since: at(0)},
			points:    lowerBounds(series(150, 160, 170), 1),
			now:       at(20),
			want:      v1alpha1.TriggerPending,
			wantSince: at(0),
		},
		{
			name:      "a calm lower bound is not OK but Unknown",
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    lowerBounds(series(10, 20, 30), 2),
			now:       at(20),
			want:      v1alpha1.TriggerUnknown,
			wantSince: at(20),
		},
		{
			name:      "a firing trigger is not cleared by calm lower bounds",
			prev:      Status{State: v1alpha1.TriggerFiring, Since: at(-100)},
			points:    lowerBounds(series(10, 10, 10, 10, 10), 0, 1, 2, 3, 4),
			now:       at(40),
			want:      v1alpha1.TriggerFiring,
			wantSince: at(-100),
		},
		{
			name:      "a clearing run does not span a lower bound",
			prev:      Status{State: v1alpha1.TriggerClearing, Since: at(0)},
			points:    lowerBounds(series(10, 10, 10, 10), 2),
			now:       at(30),
			want:      v1alpha1.TriggerClearing,
			wantSince: at(0),
		},
		{
			name: "a healthy streak does not span a lower bound no evaluation saw",
			// Partially blind at 10s, and no loop wrote it then.
			prev:      Status{State: v1alpha1.TriggerOK, Since: at(-100)},
			points:    lowerBounds(series(10, 20, 30, 40), 1),
			now:       at(30),
			want:      v1alpha1.TriggerOK,
			wantSince: at(20),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(spec, tt.prev, tt.points, tt.now)
			if got.State != tt.want || !got.Since.Equal(tt.wantSince) {
				t.Errorf("Evaluate = %s since %v, want %s since %v",
					got.State, got.Since.Sub(t0), tt.want, tt.wantSince.Sub(t0))
			}
		})
	}
}

// TestHysteresisStopsFlapping feeds a noisy series around the threshold and
// counts state changes with and without a lower clear threshold.
func TestHysteresisStopsFlapping(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	points := make([]Point, 0, 90)
	// Ten minutes of a flood whose value wanders across the threshold (100),
	// mostly above it, then five quiet minutes.
	for i := range 90 {
		v := 120 + rng.Float64()*60 - 30
		if i >= 60 {
			v = 20 + rng.Float64()*10
		}
		points = append(points, Point{T: at(10 * i), V: v, OK: true})
	}
	flips := func(s Spec) (changes int, firing []bool) {
		var st Status
		for i := range points {
			next := Evaluate(s, st, points[:i+1], points[i].T)
			if next.Latched() != st.Latched() {
				changes++
			}
			st = next
			firing = append(firing, st.Latched())
		}
		return changes, firing
	}

	noHysteresis := Spec{Threshold: 100, ClearThreshold: 100, For: 0, MaxGap: 25 * time.Second}
	withHysteresis := Spec{Threshold: 100, ClearThreshold: 50, For: 30 * time.Second, MaxGap: 25 * time.Second}
	n0, _ := flips(noHysteresis)
	n1, firing := flips(withHysteresis)
	t.Logf("state changes over the noisy series: %d without hysteresis, %d with", n0, n1)
	if n0 < 10 {
		t.Fatalf("the series is not noisy enough to test anything: %d changes without hysteresis", n0)
	}
	if n1 != 2 {
		t.Errorf("with hysteresis the trigger changed state %d times, want 2 (fire once, clear once)", n1)
	}
	if firing[len(firing)-1] {
		t.Error("the trigger still fires after five quiet minutes")
	}
}
