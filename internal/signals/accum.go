// Package signals turns scraped samples into the values of a policy's
// signals. It is pure: the sampler feeds it samples and keeps the rounds;
// Values computes a trigger's points from the rounds.
//
// Reading happens in two steps. While a scrape is parsed, each Accumulator
// folds the samples of one family that pass its matchers into a small
// per-instance result (a sum, a histogram, or sums grouped by one label),
// so that nothing per series is kept. Later, a Query derives a value at each
// round from those results: the latest value of a gauge, the per-second
// rate of a counter over a window (counter resets handled), or a quantile
// of a histogram's bucket increases over a window, then aggregates across
// API server instances.
package signals

import (
	"math"
	"sort"
	"strings"

	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/policy"
)

// AccumKind says what an Accumulator keeps.
type AccumKind uint8

// The accumulator kinds.
const (
	// Scalar keeps the sum, count, minimum and maximum of matching samples.
	Scalar AccumKind = iota
	// Histogram keeps, per bucket bound, the sum of matching buckets.
	Histogram
	// Grouped keeps the sum of matching samples per value of one label.
	Grouped
	// GroupedHistogram keeps a histogram per value of one label.
	GroupedHistogram
)

// Accumulator says which samples of a family to fold, and how.
type Accumulator struct {
	Family   string
	Matchers []policy.Matcher
	Kind     AccumKind
	// GroupBy is the label that Grouped and GroupedHistogram accumulators
	// group by.
	GroupBy string
}

// Key identifies an accumulator: two with the same key fold the same samples
// the same way, so policies share them.
func (a Accumulator) Key() string {
	var b strings.Builder
	b.WriteString(a.Family)
	b.WriteByte('{')
	ms := make([]string, len(a.Matchers))
	for i, m := range a.Matchers {
		ms[i] = m.String()
	}
	sort.Strings(ms)
	b.WriteString(strings.Join(ms, ","))
	b.WriteByte('}')
	switch a.Kind {
	case Histogram:
		b.WriteString(" histogram")
	case Grouped:
		b.WriteString(" by " + a.GroupBy)
	case GroupedHistogram:
		b.WriteString(" histogram by " + a.GroupBy)
	}
	return b.String()
}

// Result is what one accumulator folded from one instance's scrape.
type Result struct {
	// Series counts the matching samples (for a histogram, its buckets).
	Series int
	Sum    float64
	Min    float64
	Max    float64
	// Buckets maps a bucket's upper bound to the sum of matching buckets.
	Buckets map[float64]float64
	// Groups maps a label value to the sum of matching samples.
	Groups map[string]float64
	// GroupBuckets maps a label value to its histogram: bucket upper bound
	// to the sum of matching buckets.
	GroupBuckets map[string]map[float64]float64
}

// Folder folds one instance's samples into results, for a set of accumulators.
type Folder struct {
	byFamily map[string][]int
	accums   []Accumulator
	results  []Result
}

// NewFolder returns a Folder for the accumulators.
func NewFolder(accums []Accumulator) *Folder {
	f := &Folder{byFamily: map[string][]int{}, accums: accums, results: make([]Result, len(accums))}
	for i, a := range accums {
		f.byFamily[a.Family] = append(f.byFamily[a.Family], i)
		f.results[i] = Result{Min: math.Inf(1), Max: math.Inf(-1)}
	}
	return f
}

// Families returns the families the accumulators read.
func (f *Folder) Families() exposition.Families {
	fams := exposition.Families{}
	for name := range f.byFamily {
		fams[name] = struct{}{}
	}
	return fams
}

// Add folds one sample. It is the parser's callback.
func (f *Folder) Add(s *exposition.Sample) {
	for _, i := range f.byFamily[s.Family] {
		a := &f.accums[i]
		if !matches(a.Matchers, s) {
			continue
		}
		r := &f.results[i]
		switch a.Kind {
		case Histogram:
			if s.Suffix != exposition.SuffixBucket {
				continue
			}
			if r.Buckets == nil {
				r.Buckets = map[float64]float64{}
			}
			r.Buckets[s.Le] += s.Value
		case GroupedHistogram:
			if s.Suffix != exposition.SuffixBucket {
				continue
			}
			v, _ := s.Label(a.GroupBy)
			if r.GroupBuckets == nil {
				r.GroupBuckets = map[string]map[float64]float64{}
			}
			g := r.GroupBuckets[string(v)]
			if g == nil {
				g = map[float64]float64{}
				r.GroupBuckets[string(v)] = g
			}
			g[s.Le] += s.Value
		case Grouped:
			if s.Suffix != exposition.SuffixNone {
				continue
			}
			v, _ := s.Label(a.GroupBy)
			if r.Groups == nil {
				r.Groups = map[string]float64{}
			}
			r.Groups[string(v)] += s.Value
		default:
			if s.Suffix != exposition.SuffixNone {
				continue
			}
			r.Sum += s.Value
			r.Min = math.Min(r.Min, s.Value)
			r.Max = math.Max(r.Max, s.Value)
		}
		r.Series++
	}
}

// Results returns the results, keyed by accumulator key.
func (f *Folder) Results() map[string]Result {
	out := make(map[string]Result, len(f.accums))
	for i, a := range f.accums {
		out[a.Key()] = f.results[i]
	}
	return out
}

func matches(ms []policy.Matcher, s *exposition.Sample) bool {
	for _, m := range ms {
		v, _ := s.Label(m.Label)
		if !m.MatchesBytes(v) {
			return false
		}
	}
	return true
}
