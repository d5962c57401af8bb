package prometheus

import (
	"context"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
)

const (
	// window is every rate's and quantile's window.
	window = 30 * time.Second
	// compareFor is how long the values are compared, once both sides
	// have a whole window of the load.
	compareFor = 40 * time.Second
)

// TestEveryCatalogueSignalAgreesWithPrometheus runs every catalogue
// signal's PromQL (Query.PromQL, what the Prometheus source sends) on a real
// Prometheus that scrapes both kube-apiservers every second, and compares
// it with what the operator computes itself (Query.Points) from the rounds
// its own sampler scrapes from the same kube-apiservers every second, at
// each round's instant, under a steady load (startLoad) that gives every
// signal a value that is not zero. Each kind of signal has its tolerance
// (toleranceOf; docs/signals.md states them), and a signal agrees when at
// least 90% of the instants compared have both values within it.
func TestEveryCatalogueSignalAgreesWithPrometheus(t *testing.T) {
	ctx := context.Background()
	prom := env.StartPrometheus(t, time.Second)
	querier, err := prom.Querier()
	if err != nil {
		t.Fatal(err)
	}
	queries := map[v1alpha1.Signal]signals.Query{}
	var accums []signals.Accumulator
	for _, sig := range signals.Catalogue() {
		q, err := signals.ForTrigger(&policy.Trigger{Name: string(sig), Signal: sig, Window: window})
		if err != nil {
			t.Fatal(err)
		}
		queries[sig] = q
		accums = append(accums, q.Accumulators()...)
	}
	smp := startSampler(t, accums)
	startLoad(t)
	// Both sides' windows hold only the steady load from then on.
	from := time.Now().Add(window + 5*time.Second)
	time.Sleep(time.Until(from.Add(compareFor)))
	rounds := smp.Rounds()
	for _, sig := range signals.Catalogue() {
		t.Run(string(sig), func(t *testing.T) {
			q := queries[sig]
			c := compare(ctx, t, querier, q, rounds, from)
			t.Logf("%s", c.summary())
			if err := c.check(); err != nil {
				t.Errorf("%s: %v\nPromQL: %s\n%s", sig, err, q.PromQL(), c.table())
			}
		})
	}
}

// startSampler runs the operator's own sampler, scraping every
// kube-apiserver each second for the accumulators, until the test ends.
func startSampler(t *testing.T, accums []signals.Accumulator) *sampler.Sampler {
	t.Helper()
	s, err := sampler.New(env.WithDialer(env.Config), env.Client, clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	s.Register("signals", sampler.Interest{Interval: time.Second, Timeout: time.Second, Retention: 10 * time.Minute,
		Accumulators: accums})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}
