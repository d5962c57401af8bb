package detection

import (
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/signals"
)

// Attributed is a ServiceAccount whose load an attribution FlowSchema measures.
type Attributed struct {
	ServiceAccount types.NamespacedName
	// FlowSchemas are the names of the FlowSchemas that match only it: its
	// attribution FlowSchema, and its throttle FlowSchema while throttled.
	FlowSchemas []string
	// DaemonSets running as it, sorted by namespace and name.
	DaemonSets []types.NamespacedName
}

// Offender is an attributed ServiceAccount with its measured load.
type Offender struct {
	Attributed
	RequestsPerSecond float64
	RejectedPerSecond float64
	// RequestShare is its share (0 to 1) of all requests APF saw, dispatched
	// or rejected: what the client asks for, not what it is let through, so
	// a throttled client that keeps trying stays on top.
	RequestShare float64
	// SeatShare is its share (0 to 1) of the seats executing, averaged over
	// the window: at one instant of a quiet cluster, one GET caught in
	// flight among three seats in use would be a third.
	SeatShare float64
}

// Shared reports whether several DaemonSets run as the ServiceAccount, so
// that their loads cannot be told apart.
func (o Offender) Shared() bool { return len(o.DaemonSets) > 1 }

// Offenders measures each attributed ServiceAccount's load over the window
// ending at the newest round, most requests first (ties by name).
func Offenders(rounds []*signals.Round, attributed []Attributed, window time.Duration) []Offender {
	dispatched := signals.GroupedRates(rounds, signals.DispatchedByFlowSchema, window)
	rejected := signals.GroupedRates(rounds, signals.RejectedByFlowSchema, window)
	seats := signals.GroupedMeans(rounds, signals.SeatsByFlowSchema, window)
	totalRate, totalSeats := sum(dispatched)+sum(rejected), sum(seats)

	out := make([]Offender, 0, len(attributed))
	for _, a := range attributed {
		o := Offender{Attributed: a}
		ownSeats := 0.0
		for _, fs := range a.FlowSchemas {
			o.RequestsPerSecond += dispatched[fs]
			o.RejectedPerSecond += rejected[fs]
			ownSeats += seats[fs]
		}
		if totalRate > 0 {
			o.RequestShare = (o.RequestsPerSecond + o.RejectedPerSecond) / totalRate
		}
		if totalSeats > 0 {
			o.SeatShare = ownSeats / totalSeats
		}
		out = append(out, o)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].RequestsPerSecond != out[j].RequestsPerSecond {
			return out[i].RequestsPerSecond > out[j].RequestsPerSecond
		}
		return out[i].ServiceAccount.String() < out[j].ServiceAccount.String()
	})
	return out
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}
