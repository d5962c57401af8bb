package signals

import "time"

// Accumulators that attribution reads: APF's per-FlowSchema counters and gauges.
var (
	// DispatchedByFlowSchema folds requests dispatched, per FlowSchema.
	DispatchedByFlowSchema = Accumulator{Family: FamilyDispatched, Kind: Grouped, GroupBy: labelFlowSchema}
	// RejectedByFlowSchema folds requests rejected by APF, per FlowSchema.
	RejectedByFlowSchema = Accumulator{Family: FamilyRejected, Kind: Grouped, GroupBy: labelFlowSchema}
	// SeatsByFlowSchema folds the seats executing, per FlowSchema.
	SeatsByFlowSchema = Accumulator{Family: FamilyExecutingSeats, Kind: Grouped, GroupBy: labelFlowSchema}
)

// GroupedRates returns, per group, the per-second increase over the window
// ending at the newest round, summed across instances; counter resets are
// handled as in Query. Instances with fewer than two rounds in the window
// are left out.
func GroupedRates(rounds []*Round, a Accumulator, window time.Duration) map[string]float64 {
	out := map[string]float64{}
	if len(rounds) == 0 {
		return out
	}
	newest := rounds[len(rounds)-1]
	key := a.Key()
	for inst := range newest.Instances {
		var ts []time.Time
		var rs []Result
		for j := len(rounds) - 1; j >= 0 && !rounds[j].T.Before(newest.T.Add(-window)); j-- {
			if res, ok := rounds[j].Instances[inst][key]; ok {
				ts = append([]time.Time{rounds[j].T}, ts...)
				rs = append([]Result{res}, rs...)
			}
		}
		if len(rs) < 2 {
			continue
		}
		secs := ts[len(ts)-1].Sub(ts[0]).Seconds()
		for group := range rs[len(rs)-1].Groups {
			inc := 0.0
			prev := 0.0
			seen := false
			for k := range rs {
				cur, ok := rs[k].Groups[group]
				if !ok {
					continue
				}
				if seen {
					inc += increase(prev, cur)
				}
				prev, seen = cur, true
			}
			out[group] += inc / secs
		}
	}
	return out
}

// GroupedMeans returns, per group, the mean over the rounds in the window
// ending at the newest round of the values summed across instances: a
// gauge's level over the window, not at one instant. A round where a group
// has no value counts as 0 for it.
func GroupedMeans(rounds []*Round, a Accumulator, window time.Duration) map[string]float64 {
	out := map[string]float64{}
	if len(rounds) == 0 {
		return out
	}
	key := a.Key()
	from := rounds[len(rounds)-1].T.Add(-window)
	n := 0
	for j := len(rounds) - 1; j >= 0 && !rounds[j].T.Before(from); j-- {
		n++
		for _, results := range rounds[j].Instances {
			for group, v := range results[key].Groups {
				out[group] += v
			}
		}
	}
	for group := range out {
		out[group] /= float64(n)
	}
	return out
}
