package replay

import (
	"fmt"
	"slices"
	"strings"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Spread is how a figure varied across repeated runs of a scenario.
type Spread struct {
	Median, Min, Max float64
	// N is how many values there were.
	N int
}

// SpreadOf returns the median (the mean of the middle two of an even
// count) and the range of values; a zero Spread for none.
func SpreadOf(values []float64) Spread {
	if len(values) == 0 {
		return Spread{}
	}
	v := slices.Clone(values)
	slices.Sort(v)
	n := len(v)
	median := v[n/2]
	if n%2 == 0 {
		median = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{Median: median, Min: v[0], Max: v[n-1], N: n}
}

// aggregateCell formats a row's figures across runs: the median and, when
// they differ, the range (min–max); "k/n" after them when only k of the n
// runs had a figure; without any, what the first run's cell read ("never"
// or "-").
func aggregateCell(r scoreRow, figs []figure) string {
	var values []float64
	for _, f := range figs {
		if f.has {
			values = append(values, f.v)
		}
	}
	if len(values) == 0 {
		if len(figs) == 0 {
			return "-"
		}
		return figs[0].none
	}
	sp := SpreadOf(values)
	cell := r.format(sp.Median)
	if lo, hi := r.format(sp.Min), r.format(sp.Max); lo != hi {
		cell += " (" + lo + "–" + hi + ")"
	}
	if sp.N < len(figs) {
		cell += fmt.Sprintf(" %d/%d", sp.N, len(figs))
	}
	return cell
}

// acted counts, in the runs of a scenario with the operator, those in
// which it took an action of the given reason at least once; "-" without
// the operator.
func acted(runs []Scenario, reason string) string {
	if len(runs) == 0 || runs[0].Operator == nil {
		return "-"
	}
	k := 0
	for _, s := range runs {
		if slices.ContainsFunc(s.Events, func(e Event) bool { return e.Reason == reason }) {
			k++
		}
	}
	return fmt.Sprintf("%d/%d", k, len(runs))
}

// byName groups the scenarios of repeated runs by name, in the order the
// names first appear.
func byName(runs [][]Scenario) (names []string, groups map[string][]Scenario) {
	groups = map[string][]Scenario{}
	for _, run := range runs {
		for _, s := range run {
			if _, ok := groups[s.Name]; !ok {
				names = append(names, s.Name)
			}
			groups[s.Name] = append(groups[s.Name], s)
		}
	}
	return names, groups
}

// aggregateCellWidth is the width of the table across runs' columns.
const aggregateCellWidth = 26

// AggregateTable formats the scores of repeated runs (runs[i] are the
// scenarios of the i-th run): for every row of the score table, each
// scenario's median and range across its runs; then in how many runs
// loadshed throttled and in how many it paused; then the runs in which
// the flood scenarios did not see the same flood (CompareOfferedLoad).
func AggregateTable(runs [][]Scenario) string {
	names, groups := byName(runs)
	scores := map[string][]Score{}
	for _, name := range names {
		for _, s := range groups[name] {
			scores[name] = append(scores[name], ScoreOf(s))
		}
	}
	var b strings.Builder
	line := func(label string, cell func(name string) string) {
		fmt.Fprintf(&b, "%-*s", labelWidth, label)
		for _, name := range names {
			fmt.Fprintf(&b, "%*s", columnWidth(name, aggregateCellWidth), cell(name))
		}
		b.WriteString("\n")
	}
	line(fmt.Sprintf("median (min–max) of %d runs", len(runs)), func(name string) string { return name })
	for _, r := range scoreRows() {
		line(r.label, func(name string) string {
			figs := make([]figure, len(groups[name]))
			for i, s := range groups[name] {
				figs[i] = r.value(s, scores[name][i])
			}
			return aggregateCell(r, figs)
		})
	}
	line("runs in which loadshed throttled", func(name string) string { return acted(groups[name], v1alpha1.EventThrottled) })
	line("runs in which loadshed paused", func(name string) string { return acted(groups[name], v1alpha1.EventPaused) })
	for i, run := range runs {
		for _, l := range offeredLoadLines(run) {
			if strings.HasPrefix(l, invalidComparison) {
				fmt.Fprintf(&b, "run %d: %s\n", i+1, l)
			}
		}
	}
	return b.String()
}
