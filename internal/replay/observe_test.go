package replay

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func TestACounterTotalsAcrossResets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		readings []float64
		want     float64
	}{
		{"no reading", nil, 0},
		{"a counter that only grows", []float64{1, 5, 9}, 9},
		{"a restart counts from zero again", []float64{4, 10, 2, 7}, 17},
		{"two restarts", []float64{10, 3, 5, 1}, 16},
		{"a reading that stays", []float64{3, 3, 3}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c counter
			got := 0.0
			for _, v := range tc.readings {
				got = c.observe(v)
			}
			if got != tc.want || c.total() != tc.want {
				t.Errorf("observe returned %v, total %v; want %v", got, c.total(), tc.want)
			}
		})
	}
}

func TestTriggerTransitionsAreReadFromStatus(t *testing.T) {
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	w := newTriggerWatcher(start)
	policy := func(sec int, states ...v1alpha1.TriggerState) *v1alpha1.LoadShedPolicy {
		p := &v1alpha1.LoadShedPolicy{}
		p.Status.LastEvaluationTime = &metav1.Time{Time: start.Add(time.Duration(sec) * time.Second)}
		for i, st := range states {
			p.Status.Signals = append(p.Status.Signals, v1alpha1.SignalStatus{Name: []string{"a", "b"}[i],
				Signal: "queued", State: st, Value: "62", Threshold: "50", ClearThreshold: "5"})
		}
		return p
	}
	var got []string
	for _, p := range []*v1alpha1.LoadShedPolicy{
		{}, // not evaluated yet
		policy(5, v1alpha1.TriggerOK, v1alpha1.TriggerPending),
		policy(10, v1alpha1.TriggerFiring, v1alpha1.TriggerPending),
		policy(10, v1alpha1.TriggerFiring, v1alpha1.TriggerPending), // read twice
		policy(15, v1alpha1.TriggerClearing, v1alpha1.TriggerFiring),
		policy(20, v1alpha1.TriggerOK, v1alpha1.TriggerUnknown),
	} {
		for _, e := range w.note(p) {
			got = append(got, fmt.Sprintf("%v %s %s", e.At, e.Reason, e.Note))
		}
	}
	want := []string{
		"10s TriggerFired Trigger a fired: queued is 62, above 50",
		"15s TriggerFired Trigger b fired: queued is 62, above 50",
		"20s TriggerCleared Trigger a cleared: queued is 62, at or below 5",
		"20s TriggerCleared Trigger b cleared: queued is 62, at or below 5",
	}
	if !slices.Equal(got, want) {
		t.Errorf("transitions\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
