package detection

import (
	"cmp"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/signals"
)

// MaxOffenders is how many offenders, most load first, a policy's status
// lists and its planner decides on.
const MaxOffenders = 5

// Offender is a client of the API servers with its measured load: anyone
// the API servers held requests of (see package apfdump), and every
// ServiceAccount the policy throttles.
type Offender struct {
	// User is the name the API servers authenticated the client as.
	User string
	// ServiceAccount is the ServiceAccount User names; zero when User is
	// not one (a node, a person, a component with a certificate).
	ServiceAccount types.NamespacedName
	// DaemonSets are those the policy targets that run as ServiceAccount,
	// sorted by namespace and name.
	DaemonSets []types.NamespacedName
	// InFlightShare is its share (0 to 1) of the requests the API servers
	// held, executing or queued, over the window's samples: a client's
	// requests count as long as they take, what they cost the others.
	InFlightShare float64
	// SeatShare is its share (0 to 1) of the seats those requests reserved:
	// a LIST of thousands of objects reserves up to 10, a GET 1.
	SeatShare float64
	// RequestsPerSecond, RejectedPerSecond and RequestShare are measured on
	// its throttle FlowSchema, so only while it is throttled: the requests
	// dispatched and rejected there, and their share of all requests APF
	// saw. A throttle that rejects keeps its client out of the samples (its
	// requests are gone at once); this keeps it on top while it keeps
	// trying.
	RequestsPerSecond, RejectedPerSecond float64
	RequestShare                         float64
}

// Share is the larger of its shares: how much of the API servers it takes.
func (o Offender) Share() float64 {
	return max(o.InFlightShare, o.SeatShare, o.RequestShare)
}

// Shared reports whether several DaemonSets run as the ServiceAccount, so
// that their loads cannot be told apart.
func (o Offender) Shared() bool { return len(o.DaemonSets) > 1 }

// Scope is what Offenders needs to know of the policy's cluster.
type Scope struct {
	// DaemonSets maps each ServiceAccount to the DaemonSets the policy
	// targets that run as it.
	DaemonSets map[types.NamespacedName][]types.NamespacedName
	// Throttles maps each ServiceAccount the policy throttles to its
	// throttle FlowSchema's name.
	Throttles map[types.NamespacedName]string
}

// DaemonSetsByServiceAccount groups DaemonSets by the ServiceAccount they
// run as, each group sorted by namespace and name: Scope.DaemonSets, from
// the DaemonSets a policy targets.
func DaemonSetsByServiceAccount(dss []appsv1.DaemonSet) map[types.NamespacedName][]types.NamespacedName {
	out := map[types.NamespacedName][]types.NamespacedName{}
	for i := range dss {
		sa := types.NamespacedName(attribution.ServiceAccountOf(&dss[i]))
		out[sa] = append(out[sa], types.NamespacedName{Namespace: dss[i].Namespace, Name: dss[i].Name})
	}
	for sa := range out {
		slices.SortFunc(out[sa], func(a, b types.NamespacedName) int {
			return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		})
	}
	return out
}

// Offenders measures every client's load over the window ending at the
// newest round, most load first (ties by user name).
func Offenders(rounds []*signals.Round, scope Scope, window time.Duration) []Offender {
	held, total := heldOver(rounds, window)
	byUser := map[string]*Offender{}
	offender := func(user string) *Offender {
		if o := byUser[user]; o != nil {
			return o
		}
		o := &Offender{User: user}
		if ns, name, err := serviceaccount.SplitUsername(user); err == nil {
			o.ServiceAccount = types.NamespacedName{Namespace: ns, Name: name}
			o.DaemonSets = scope.DaemonSets[o.ServiceAccount]
		}
		byUser[user] = o
		return o
	}
	// Requests APF turned away are in no sample: the held shares are shares
	// of the part it let in, and count for that part only. Without this, a
	// flood rejected at its throttle would leave whoever else is held on
	// top of an API server it barely loads.
	dispatched := signals.GroupedRates(rounds, signals.DispatchedByFlowSchema, window)
	rejected := signals.GroupedRates(rounds, signals.RejectedByFlowSchema, window)
	all := sum(dispatched) + sum(rejected)
	admitted := 1.0
	if all > 0 {
		admitted = 1 - sum(rejected)/all
	}
	for user, l := range held {
		o := offender(user)
		o.InFlightShare = ratio(l.Requests, total.Requests) * admitted
		o.SeatShare = ratio(l.Seats, total.Seats) * admitted
	}
	for sa, fs := range scope.Throttles {
		o := offender(serviceaccount.MakeUsername(sa.Namespace, sa.Name))
		o.RequestsPerSecond, o.RejectedPerSecond = dispatched[fs], rejected[fs]
		if all > 0 {
			o.RequestShare = (o.RequestsPerSecond + o.RejectedPerSecond) / all
		}
	}
	out := make([]Offender, 0, len(byUser))
	for _, o := range byUser {
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b Offender) int {
		return cmp.Or(cmp.Compare(b.Share(), a.Share()), strings.Compare(a.User, b.User))
	})
	return out
}

// heldOver sums, over the rounds in the window ending at the newest, the
// load of each user the API servers held requests of, and everyone's.
func heldOver(rounds []*signals.Round, window time.Duration) (map[string]apfdump.Load, apfdump.Load) {
	held := map[string]apfdump.Load{}
	var total apfdump.Load
	if len(rounds) == 0 {
		return held, total
	}
	since := rounds[len(rounds)-1].T.Add(-window)
	for _, r := range rounds {
		if !r.T.After(since) {
			continue
		}
		for _, s := range r.Clients {
			for user, l := range s.ByUser {
				h := held[user]
				h.Add(l)
				held[user] = h
			}
			total.Add(s.Total)
		}
	}
	return held, total
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}
