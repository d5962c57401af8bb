package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func TestStatusIsWrittenWhenAReaderWouldNotice(t *testing.T) {
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { m := metav1.NewTime(t0.Add(d)); return &m }
	written := v1alpha1.LoadShedPolicyStatus{
		Phase:              v1alpha1.Phase("Watching"),
		WorstSignal:        "slo-latency 0.12/1",
		Signals:            []v1alpha1.SignalStatus{{Name: "slo-latency", Value: "0.12", Threshold: "1", State: v1alpha1.TriggerOK, Since: at(0)}},
		Offenders:          []v1alpha1.OffenderStatus{{User: "system:serviceaccount:a:b", InFlightSharePercent: 12, RequestsPerSecond: "3.1"}},
		Conditions:         []metav1.Condition{{Type: v1alpha1.ConditionTriggered, Status: metav1.ConditionFalse, Message: "No trigger fires"}},
		LastEvaluationTime: at(0),
	}
	for _, tc := range []struct {
		name   string
		change func(s *v1alpha1.LoadShedPolicyStatus)
		want   bool
	}{
		{"nothing but the time", func(s *v1alpha1.LoadShedPolicyStatus) {}, false},
		{"values", func(s *v1alpha1.LoadShedPolicyStatus) {
			s.Signals[0].Value, s.WorstSignal = "0.3", "slo-latency 0.3/1"
			s.Offenders[0].InFlightSharePercent, s.Offenders[0].RequestsPerSecond = 14, "3.3"
		}, false},
		{"a minute later", func(s *v1alpha1.LoadShedPolicyStatus) { s.LastEvaluationTime = at(time.Minute) }, true},
		{"a value goes missing", func(s *v1alpha1.LoadShedPolicyStatus) { s.Signals[0].Value = "" }, true},
		{"a trigger's state", func(s *v1alpha1.LoadShedPolicyStatus) { s.Signals[0].State = v1alpha1.TriggerPending }, true},
		{"another worst trigger", func(s *v1alpha1.LoadShedPolicyStatus) { s.WorstSignal = "queued 3/50" }, false},
		{"another offender", func(s *v1alpha1.LoadShedPolicyStatus) { s.Offenders[0].User = "alice" }, true},
		{"an action", func(s *v1alpha1.LoadShedPolicyStatus) {
			s.Actions = []v1alpha1.ActionStatus{{Kind: v1alpha1.ActionThrottle, Target: "a/b"}}
		}, true},
		{"a condition", func(s *v1alpha1.LoadShedPolicyStatus) { s.Conditions[0].Status = metav1.ConditionTrue }, true},
		{"the Triggered message alone", func(s *v1alpha1.LoadShedPolicyStatus) { s.Conditions[0].Message = "Firing: x (y 2 > 1)" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := written.DeepCopy()
			now.LastEvaluationTime = at(10 * time.Second)
			tc.change(now)
			if got := statusWorthWriting(&written, now); got != tc.want {
				t.Errorf("statusWorthWriting = %v, want %v", got, tc.want)
			}
		})
	}
	if !statusWorthWriting(&v1alpha1.LoadShedPolicyStatus{}, written.DeepCopy()) {
		t.Error("a first status is not written")
	}
}

func TestCadenceKeepsAPolicyToItsInterval(t *testing.T) {
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	p := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 1}}
	var c cadence
	if w := c.wait(p, t0); w != 0 {
		t.Fatalf("a policy never evaluated waits %v", w)
	}
	c.evaluated(p, t0, 30*time.Second, 30*time.Second)
	for _, tc := range []struct {
		after time.Duration
		want  time.Duration
	}{
		{time.Second, 29 * time.Second},      // its own requeue, served by a round
		{10 * time.Second, 20 * time.Second}, // a round for a 10s policy
		{23 * time.Second, 0},                // a round slightly early: on time
		{31 * time.Second, 0},
	} {
		if got := c.wait(p, t0.Add(tc.after)); got != tc.want {
			t.Errorf("%v after: wait %v, want %v", tc.after, got, tc.want)
		}
	}
	// A restore step due sooner than the interval is not held back.
	c.evaluated(p, t0, 3*time.Second, 30*time.Second)
	if got := c.wait(p, t0.Add(3*time.Second)); got != 0 {
		t.Errorf("at its restore step, wait %v", got)
	}
	changed := p.DeepCopy()
	changed.Generation = 2
	if got := c.wait(changed, t0.Add(time.Second)); got != 0 {
		t.Errorf("a changed spec waits %v", got)
	}
	changed = p.DeepCopy()
	changed.Annotations = map[string]string{"a": "b"}
	if got := c.wait(changed, t0.Add(time.Second)); got != 0 {
		t.Errorf("changed annotations wait %v", got)
	}
	c.forget("p")
	if got := c.wait(p, t0.Add(time.Second)); got != 0 {
		t.Errorf("a forgotten policy waits %v", got)
	}
}
