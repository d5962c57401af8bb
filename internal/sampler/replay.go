package sampler

import (
	"sort"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/loadshed/loadshed/internal/signals"
)

// Replay returns a sampler that scrapes nothing: Add hands it its rounds,
// as if it had taken them. Tests drive the operator with it on synthetic
// or recorded rounds (kubectl loadshed's back-test is checked against the
// operator so).
func Replay() *Sampler {
	return &Sampler{
		events:    make(chan event.GenericEvent, 1024),
		interests: map[string]Interest{},
		prom:      map[string]*promPolicy{},
		wake:      make(chan struct{}, 1),
		notified:  map[string]time.Time{},
	}
}

// Add records a round as taken: its instances scraped, its failures
// failed.
func (s *Sampler) Add(r *signals.Round) {
	st := Status{LastRound: r.T, Failed: map[string]string{}}
	for inst := range r.Instances {
		st.Targets = append(st.Targets, inst)
	}
	for inst, why := range r.Failed {
		st.Targets = append(st.Targets, inst)
		st.Failed[inst] = why
	}
	sort.Strings(st.Targets)
	s.record(r, st)
}
