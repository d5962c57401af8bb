// Package talkers says who loads the API servers right now, from two
// rounds of their metrics an interval apart and samples of their API
// Priority and Fairness dumps: per priority level and per FlowSchema, the requests
// dispatched and rejected per second, the seats in use and the requests
// queued; and the users whose requests APF held, with their share. It is
// `kubectl loadshed top`'s arithmetic, and reads no cluster: the rounds are
// read by package scrape, the FlowSchemas by the caller.
package talkers

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/signals"
)

// Labels of APF's metrics.
const (
	labelPriorityLevel = "priority_level"
	labelFlowSchema    = "flow_schema"
)

// The accumulators per priority level; those per FlowSchema are
// attribution's (signals.DispatchedByFlowSchema, ...) and queuedBySchema.
var (
	dispatchedByLevel = byLevel(signals.FamilyDispatched)
	rejectedByLevel   = byLevel(signals.FamilyRejected)
	seatsByLevel      = byLevel(signals.FamilyExecutingSeats)
	queuedByLevel     = byLevel(signals.FamilyInqueue)
	nominalByLevel    = byLevel(signals.FamilyNominalSeats)
	queuedBySchema    = signals.Accumulator{Family: signals.FamilyInqueue, Kind: signals.Grouped, GroupBy: labelFlowSchema}
)

func byLevel(family string) signals.Accumulator {
	return signals.Accumulator{Family: family, Kind: signals.Grouped, GroupBy: labelPriorityLevel}
}

// Accumulators are what Compute reads of each round: fold the rounds for
// them (scrape.Scraper.Fold).
func Accumulators() []signals.Accumulator {
	return []signals.Accumulator{
		dispatchedByLevel, rejectedByLevel, seatsByLevel, queuedByLevel, nominalByLevel,
		signals.DispatchedByFlowSchema, signals.RejectedByFlowSchema, signals.SeatsByFlowSchema, queuedBySchema,
	}
}

// Report is who loads the API servers; `kubectl loadshed top -o json|yaml`
// prints it.
type Report struct {
	// Time is when the second round was read.
	Time time.Time `json:"time"`
	// Interval is the time between the two rounds the rates are over.
	Interval string `json:"interval"`
	// Instances are the API servers read in both rounds.
	Instances []string `json:"instances"`
	// Failed maps each API server that could not be read in a round to
	// why.
	Failed map[string]string `json:"failed,omitempty"`
	// DumpFailed maps each API server whose APF dump could not be read to
	// why: its users are missing from Users.
	DumpFailed map[string]string `json:"dumpFailed,omitempty"`
	// PriorityLevels are sorted by requests per second (dispatched and
	// rejected), then seats in use.
	PriorityLevels []Level `json:"priorityLevels"`
	// FlowSchemas are sorted as PriorityLevels.
	FlowSchemas []FlowSchema `json:"flowSchemas"`
	// Users are sorted by seats, then requests.
	Users []User `json:"users"`
}

// Load is what APF's metrics say of a priority level or a FlowSchema,
// summed over the API servers.
type Load struct {
	// DispatchedPerSecond are the requests APF let execute, per second.
	DispatchedPerSecond float64 `json:"dispatchedPerSecond"`
	// RejectedPerSecond are the requests APF rejected (429), per second.
	RejectedPerSecond float64 `json:"rejectedPerSecond"`
	// SeatsInUse are the seats its executing requests occupy
	// (apiserver_flowcontrol_current_executing_seats), the mean of the two
	// rounds.
	SeatsInUse float64 `json:"seatsInUse"`
	// Queued are its requests waiting in APF's queues, the mean of the two
	// rounds.
	Queued float64 `json:"queued"`
}

// Level is one priority level's load.
type Level struct {
	Name string `json:"name"`
	Load `json:",inline"`
	// NominalSeats are its nominal concurrency limit, summed over the API
	// servers.
	NominalSeats float64 `json:"nominalSeats"`
}

// FlowSchema is one FlowSchema's load.
type FlowSchema struct {
	Name string `json:"name"`
	// PriorityLevel is the level it routes to, from its spec.
	PriorityLevel string `json:"priorityLevel,omitempty"`
	// ServiceAccount is "namespace/name" when its rules match exactly one
	// ServiceAccount (loadshed's throttles, say).
	ServiceAccount string `json:"serviceAccount,omitempty"`
	Load           `json:",inline"`
}

// User is a client whose requests APF held, from its dumps.
type User struct {
	Name string `json:"name"`
	// ServiceAccount is "namespace/name" when the user is a ServiceAccount.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Requests and Seats are its requests held (executing or queued) and
	// the seats they reserve, summed over the API servers, the mean of the
	// samples of their dumps.
	Requests float64 `json:"requests"`
	Seats    float64 `json:"seats"`
	// Share is its part (0 to 1) of the seats held of everyone.
	Share float64 `json:"share"`
}

// Input is what Compute reads.
type Input struct {
	// First and Second are two rounds an interval apart, folded for
	// Accumulators.
	First, Second *signals.Round
	// Held are samples of the API servers' APF dumps, each mapping an
	// instance to what it held: the rounds' own (Clients), and any taken
	// between them. Users are their mean.
	Held []map[string]apfdump.Summary
	// FlowSchemas are the cluster's, for their priority levels and
	// ServiceAccounts.
	FlowSchemas []flowcontrolv1.FlowSchema
	// Limit is how many entries each list keeps (all when 0).
	Limit int
}

// Compute says who loads the API servers.
func Compute(in Input) Report {
	first, second, schemas, limit := in.First, in.Second, in.FlowSchemas, in.Limit
	rounds := []*signals.Round{first, second}
	window := second.T.Sub(first.T)
	rep := Report{Time: second.T, Interval: window.Round(time.Millisecond).String(), Failed: map[string]string{}, DumpFailed: map[string]string{}}
	for inst := range second.Instances {
		if _, ok := first.Instances[inst]; ok {
			rep.Instances = append(rep.Instances, inst)
		}
	}
	slices.Sort(rep.Instances)
	for _, r := range rounds {
		maps.Copy(rep.Failed, r.Failed)
		maps.Copy(rep.DumpFailed, r.ClientsFailed)
	}
	nominal := signals.GroupedMeans(rounds[1:], nominalByLevel, 0)
	for name, l := range loads(rounds, window, dispatchedByLevel, rejectedByLevel, seatsByLevel, queuedByLevel) {
		rep.PriorityLevels = append(rep.PriorityLevels, Level{Name: name, Load: l, NominalSeats: nominal[name]})
	}
	slices.SortFunc(rep.PriorityLevels, func(a, b Level) int { return byLoad(a.Name, a.Load, b.Name, b.Load) })
	bySchema := loads(rounds, window, signals.DispatchedByFlowSchema, signals.RejectedByFlowSchema,
		signals.SeatsByFlowSchema, queuedBySchema)
	for name, l := range bySchema {
		fs := FlowSchema{Name: name, Load: l}
		if i := slices.IndexFunc(schemas, func(s flowcontrolv1.FlowSchema) bool { return s.Name == name }); i >= 0 {
			fs.PriorityLevel = schemas[i].Spec.PriorityLevelConfiguration.Name
			fs.ServiceAccount = SoleServiceAccount(&schemas[i])
		}
		rep.FlowSchemas = append(rep.FlowSchemas, fs)
	}
	slices.SortFunc(rep.FlowSchemas, func(a, b FlowSchema) int { return byLoad(a.Name, a.Load, b.Name, b.Load) })
	rep.Users = users(in.Held)
	rep.PriorityLevels, rep.FlowSchemas, rep.Users = keepFirst(rep.PriorityLevels, limit), keepFirst(rep.FlowSchemas, limit),
		keepFirst(rep.Users, limit)
	return rep
}

// keepFirst keeps the first limit items (all when limit is 0).
func keepFirst[T any](items []T, limit int) []T {
	if limit > 0 && len(items) > limit {
		return items[:limit]
	}
	return items
}

// loads computes, per group, the rates of the two counters over the window
// and the means of the two gauges, summed over the instances.
func loads(rounds []*signals.Round, window time.Duration, dispatched, rejected, seats, queued signals.Accumulator) map[string]Load {
	out := map[string]Load{}
	set := func(values map[string]float64, field func(*Load) *float64) {
		for group, v := range values {
			l := out[group]
			*field(&l) = v
			out[group] = l
		}
	}
	set(signals.GroupedRates(rounds, dispatched, window), func(l *Load) *float64 { return &l.DispatchedPerSecond })
	set(signals.GroupedRates(rounds, rejected, window), func(l *Load) *float64 { return &l.RejectedPerSecond })
	set(signals.GroupedMeans(rounds, seats, window), func(l *Load) *float64 { return &l.SeatsInUse })
	set(signals.GroupedMeans(rounds, queued, window), func(l *Load) *float64 { return &l.Queued })
	return out
}

// byLoad orders the most requests per second first, then the most seats in
// use, then by name.
func byLoad(aName string, a Load, bName string, b Load) int {
	return cmp.Or(cmp.Compare(b.DispatchedPerSecond+b.RejectedPerSecond, a.DispatchedPerSecond+a.RejectedPerSecond),
		cmp.Compare(b.SeatsInUse, a.SeatsInUse), strings.Compare(aName, bName))
}

// users sums, over the instances, the requests APF held of each user, and
// averages them over the samples of which a dump was read.
func users(samples []map[string]apfdump.Summary) []User {
	held := map[string]apfdump.Load{}
	var total apfdump.Load
	n := 0
	for _, sample := range samples {
		if len(sample) > 0 {
			n++
		}
		for _, s := range sample {
			for user, l := range s.ByUser {
				h := held[user]
				h.Add(l)
				held[user] = h
			}
			total.Add(s.Total)
		}
	}
	out := make([]User, 0, len(held))
	for name, l := range held {
		u := User{Name: name, Requests: float64(l.Requests) / float64(n), Seats: float64(l.Seats) / float64(n)}
		if total.Seats > 0 {
			u.Share = float64(l.Seats) / float64(total.Seats)
		}
		if ns, sa, err := serviceaccount.SplitUsername(name); err == nil {
			u.ServiceAccount = ns + "/" + sa
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int {
		return cmp.Or(cmp.Compare(b.Seats, a.Seats), cmp.Compare(b.Requests, a.Requests), strings.Compare(a.Name, b.Name))
	})
	return out
}

// SoleServiceAccount returns "namespace/name" when every subject of the
// FlowSchema's rules is one and the same ServiceAccount (as loadshed's
// throttles are), and "" otherwise.
func SoleServiceAccount(fs *flowcontrolv1.FlowSchema) string {
	sole := ""
	for _, rule := range fs.Spec.Rules {
		for _, s := range rule.Subjects {
			if s.Kind != flowcontrolv1.SubjectKindServiceAccount || s.ServiceAccount == nil ||
				s.ServiceAccount.Name == flowcontrolv1.NameAll {
				return ""
			}
			sa := s.ServiceAccount.Namespace + "/" + s.ServiceAccount.Name
			if sole != "" && sole != sa {
				return ""
			}
			sole = sa
		}
	}
	return sole
}
