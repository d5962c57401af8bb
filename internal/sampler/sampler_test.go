package sampler

import (
	"context"
	"fmt"
	"maps"
	goslices "slices"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"

	"github.com/loadshed/loadshed/test/testutil"
)

// fixedSlices is a client.Reader that lists fixed EndpointSlices: the
// discovery is tested here, the cache that serves it in production is
// controller-runtime's.
type fixedSlices []discoveryv1.EndpointSlice

func (s fixedSlices) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return nil
}

func (s fixedSlices) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	list.(*discoveryv1.EndpointSliceList).Items = append([]discoveryv1.EndpointSlice(nil), s...)
	return nil
}

var _ client.Reader = fixedSlices(nil)

func inflightAccums(t *testing.T) []signals.Accumulator {
	t.Helper()
	q, err := signals.ForTrigger(&policy.Trigger{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return append(q.Accumulators(), signals.DispatchedByFlowSchema)
}

func TestRecordKeepsWhatThePoliciesNeed(t *testing.T) {
	s := &Sampler{interests: map[string]Interest{"a": {Retention: 30 * time.Second}, "b": {Retention: 50 * time.Second}}}
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	for i := range 20 {
		s.record(&signals.Round{T: t0.Add(time.Duration(i) * 10 * time.Second)}, Status{})
	}
	rounds := s.Rounds()
	if got := rounds[len(rounds)-1].T.Sub(rounds[0].T); got != 50*time.Second {
		t.Errorf("the history spans %v, want the longest retention, 50s", got)
	}
}

func TestPlanTakesTheSmallestIntervalAndSharesAccumulators(t *testing.T) {
	acc := inflightAccums(t)
	s := &Sampler{interests: map[string]Interest{
		"a": {Interval: 10 * time.Second, Timeout: 5 * time.Second, Accumulators: acc},
		"b": {Interval: 2 * time.Second, Timeout: 3 * time.Second, Accumulators: acc[:1]},
	}}
	interval, timeout, accums, ok := s.plan()
	if !ok || interval != 2*time.Second || timeout != 2*time.Second || len(accums) != 2 {
		t.Errorf("plan = %v %v %d accumulators %v; want 2s, 2s (capped by the interval), 2", interval, timeout, len(accums), ok)
	}
	if _, _, _, ok := (&Sampler{interests: map[string]Interest{}}).plan(); ok {
		t.Error("a sampler without policies plans a round")
	}
}

func TestStartScrapesForRegisteredPoliciesAndNotifiesThem(t *testing.T) {
	srv, hits := testutil.RecordedAPIServer(t, true, 0)
	s, err := New(testutil.ConfigFor(srv), fixedSlices(nil), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()

	s.Register("flood", Interest{Interval: 100 * time.Millisecond, Timeout: time.Second, Retention: time.Minute, Accumulators: inflightAccums(t)})
	select {
	case ev := <-s.Events():
		if ev.Object.GetName() != "flood" {
			t.Errorf("the event names %q, want flood", ev.Object.GetName())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event after 30s")
	}
	if len(s.Rounds()) == 0 || hits.Load() == 0 {
		t.Errorf("notified without a round: %d rounds, %d requests", len(s.Rounds()), hits.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start returned %v", err)
	}
}

// TestARoundCountsAnInstanceNoLongerListedAsFailed: an API server that
// leaves default/kubernetes (as a stopping kube-apiserver takes itself out)
// is a target that failed, named in the status, until it is listed again.
func TestEachPolicyIsNotifiedAtItsOwnInterval(t *testing.T) {
	s := &Sampler{
		interests: map[string]Interest{
			"fast": {Interval: 10 * time.Second}, "slow": {Interval: 30 * time.Second}, "odd": {Interval: 15 * time.Second},
		},
		events:   make(chan event.GenericEvent, 100),
		notified: map[string]time.Time{},
	}
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	counts := map[string]int{}
	var at []string
	// Rounds come every 10s, the smallest interval, for two minutes, and
	// a little late each time, as scrapes take time.
	for i := range 13 {
		s.notify(t0.Add(time.Duration(i)*10*time.Second+time.Duration(i%3)*100*time.Millisecond), 10*time.Second)
		for len(s.events) > 0 {
			ev := <-s.events
			counts[ev.Object.GetName()]++
			if ev.Object.GetName() == "slow" {
				at = append(at, fmt.Sprint(i*10))
			}
		}
	}
	// 15s is halfway between rounds: every second round, 20s.
	want := map[string]int{"fast": 13, "slow": 5, "odd": 7}
	if !maps.Equal(counts, want) {
		t.Errorf("events over 2 minutes = %v, want %v", counts, want)
	}
	if got := strings.Join(at, ","); got != "0,30,60,90,120" {
		t.Errorf("the 30s policy was told at %s s, want 0,30,60,90,120", got)
	}
	s.Unregister("slow")
	s.interests["slow"] = Interest{Interval: 30 * time.Second}
	s.notify(t0.Add(130*time.Second), 10*time.Second)
	var told []string
	for len(s.events) > 0 {
		told = append(told, (<-s.events).Object.GetName())
	}
	if goslices.Sort(told); !goslices.Equal(told, []string{"fast", "slow"}) {
		t.Errorf("10s after the last round, told %v; want fast and slow (registered again: told at once)", told)
	}
}
