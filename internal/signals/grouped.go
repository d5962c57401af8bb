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

// GroupedLatest returns, per group, the newest round's values summed across instances.
func GroupedLatest(rounds []*Round, a Accumulator) map[string]float64 {
	out := map[string]float64{}
	if len(rounds) == 0 {
		return out
	}
	key := a.Key()
	for _, results := range rounds[len(rounds)-1].Instances {
		for group, v := range results[key].Groups {
			out[group] += v
		}
	}
	return out
}
