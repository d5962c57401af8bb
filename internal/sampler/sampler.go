// Package sampler scrapes /metrics of every kube-apiserver instance once per
// interval, for all policies at once, and keeps a bounded history of what
// each scrape folded. It is a manager Runnable: one goroutine, started and
// stopped by the manager, on the leader only.
//
// A scrape never blocks a reconcile: reconcilers read the rounds already
// taken, and are told through Events when a new one is in.
package sampler

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/loadshed/loadshed/internal/scrape"
	"github.com/loadshed/loadshed/internal/signals"
)

// Interest is what one policy needs scraped.
type Interest struct {
	// Interval is how often the policy wants fresh values; the sampler
	// scrapes at the smallest interval of all policies.
	Interval time.Duration
	// Timeout bounds one scrape of one instance; the largest wins.
	Timeout time.Duration
	// Retention is how much history the policy's triggers need.
	Retention time.Duration
	// Accumulators are what the policy's queries read from the API servers.
	Accumulators []signals.Accumulator
	// Prometheus is set for a policy with the Prometheus source.
	Prometheus *PrometheusInterest
}

// Status is how the last round of scrapes went.
type Status = scrape.Status

// maxRounds caps the history whatever the policies ask for.
const maxRounds = 4096

// Sampler scrapes the API servers for every registered policy.
type Sampler struct {
	scraper *scrape.Scraper
	clock   clock.WithTicker
	events  chan event.GenericEvent

	mu        sync.Mutex
	interests map[string]Interest
	rounds    []*signals.Round
	status    Status
	prom      map[string]*promPolicy
	wake      chan struct{}
	// notified is when each policy was last told of a round.
	notified map[string]time.Time
}

// New returns a sampler that reaches the API servers with cfg (its
// credentials and CA) and finds their endpoints through reader, which must
// be able to list the EndpointSlices of default/kubernetes.
func New(cfg *rest.Config, reader client.Reader, clk clock.WithTicker) (*Sampler, error) {
	sc, err := scrape.New(cfg, reader)
	if err != nil {
		return nil, err
	}
	return &Sampler{
		scraper:   sc,
		clock:     clk,
		events:    make(chan event.GenericEvent, 1024),
		interests: map[string]Interest{},
		prom:      map[string]*promPolicy{},
		wake:      make(chan struct{}, 1),
		notified:  map[string]time.Time{},
	}, nil
}

// Events delivers, after a round, one event per registered policy (its
// name) whose interval has passed since it was last told, for a
// controller's channel source: a policy is evaluated at its own interval,
// not at the smallest of all.
func (s *Sampler) Events() <-chan event.GenericEvent { return s.events }

// NeedLeaderElection makes the sampler run on the leader only.
func (s *Sampler) NeedLeaderElection() bool { return true }

// Register records, or updates, what a policy needs. A new policy wakes the
// sampler, so that its first values come without waiting a whole interval.
func (s *Sampler) Register(policy string, in Interest) {
	s.mu.Lock()
	_, known := s.interests[policy]
	s.interests[policy] = in
	s.mu.Unlock()
	if !known {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Unregister forgets a policy.
func (s *Sampler) Unregister(policy string) {
	s.mu.Lock()
	delete(s.interests, policy)
	delete(s.prom, policy)
	delete(s.notified, policy)
	s.mu.Unlock()
}

// Rounds returns the history, oldest first. Rounds are never modified once
// taken, so the caller may read them without locking.
func (s *Sampler) Rounds() []*signals.Round {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*signals.Round(nil), s.rounds...)
}

// Status returns how the last round went.
func (s *Sampler) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Failed = make(map[string]string, len(s.status.Failed))
	for k, v := range s.status.Failed {
		st.Failed[k] = v
	}
	st.Targets = append([]string(nil), s.status.Targets...)
	return st
}

// Start scrapes until ctx is done.
func (s *Sampler) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("sampler")
	log.Info("Started the API server sampler")
	var next time.Time
	for {
		interval, timeout, accums, ok := s.plan()
		wait := time.Second
		if ok {
			wait = next.Sub(s.clock.Now())
		}
		timer := s.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-s.wake:
			timer.Stop()
			interval, timeout, accums, ok = s.plan()
		case <-timer.C():
		}
		if !ok {
			continue
		}
		start := s.clock.Now()
		next = start.Add(interval)
		var wg sync.WaitGroup
		wg.Go(func() { s.queryPrometheus(ctx, start) })
		if len(accums) > 0 {
			round, st := s.scraper.Fold(ctx, start, accums, timeout)
			s.record(round, st)
			observeRound(round, st)
			if len(st.Failed) > 0 || st.Fallback != "" {
				log.V(1).Info("Scraped the API servers with problems", "failed", st.Failed, "fallback", st.Fallback)
			}
		}
		wg.Wait()
		s.notify(start, interval)
	}
}

// plan returns the interval, timeout and accumulators for the next round,
// and false when no policy is registered.
func (s *Sampler) plan() (time.Duration, time.Duration, []signals.Accumulator, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.interests) == 0 {
		return 0, 0, nil, false
	}
	var interval, timeout time.Duration
	byKey := map[string]signals.Accumulator{}
	for _, in := range s.interests {
		if interval == 0 || in.Interval < interval {
			interval = in.Interval
		}
		timeout = max(timeout, in.Timeout)
		for _, a := range in.Accumulators {
			byKey[a.Key()] = a
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	accums := make([]signals.Accumulator, len(keys))
	for i, k := range keys {
		accums[i] = byKey[k]
	}
	// A scrape must end before the next one starts.
	timeout = min(timeout, interval)
	return interval, timeout, accums, true
}

// record appends a round and trims the history to what policies need.
func (s *Sampler) record(r *signals.Round, st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = st
	s.rounds = append(s.rounds, r)
	var keep time.Duration
	for _, in := range s.interests {
		keep = max(keep, in.Retention)
	}
	s.rounds = Trim(s.rounds, roundTime, keep)
}

// notify queues one event per registered policy that is due, dropping
// events when the controller is behind: it reads the newest rounds anyway.
// Rounds come every step (the smallest interval of all policies); a policy
// is due every n rounds, n its interval in steps rounded to the nearest
// (a 30s policy every third round of 10s, a 15s one every second).
func (s *Sampler) notify(round time.Time, step time.Duration) {
	s.mu.Lock()
	names := make([]string, 0, len(s.interests))
	for name, in := range s.interests {
		n := max(math.Round(float64(in.Interval)/float64(step)), 1)
		if last, ok := s.notified[name]; ok && round.Sub(last) < time.Duration(n*float64(step))-step/2 {
			continue
		}
		s.notified[name] = round
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		ev := event.GenericEvent{Object: policyRef(name)}
		select {
		case s.events <- ev:
		default:
		}
	}
}

// roundTime is when a round started.
func roundTime(r *signals.Round) time.Time { return r.T }

// policyRef is the object an event names: the policy, by name.
func policyRef(name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
