package replay

import (
	"fmt"
	"time"
)

// figure is one cell of the score table: a number, or why there is none.
type figure struct {
	v   float64
	has bool
	// none is what a cell without a figure reads: "never" (it did not
	// happen) or "-" (it does not apply to the scenario).
	none string
}

// notApplicable is a row that does not apply to a scenario.
var notApplicable = figure{none: "-"}

func number(v float64) figure { return figure{v: v, has: true} }

// duration is a figure for a time that is -1 when it never came.
func duration(d time.Duration) figure {
	if d < 0 {
		return figure{none: "never"}
	}
	return number(float64(d))
}

// scoreRow is one row of the score table: the same rows, in the same
// order, in a single run's table and in the table across repeated runs.
type scoreRow struct {
	label string
	// value reads the row's figure from a scenario and its score.
	value func(Scenario, Score) figure
	// format writes a figure's number.
	format func(float64) string
}

// cell formats a figure.
func (r scoreRow) cell(f figure) string {
	if !f.has {
		return f.none
	}
	return r.format(f.v)
}

func seconds(v float64) string { return time.Duration(v).Round(time.Second).String() }
func millis(v float64) string  { return time.Duration(v).Round(time.Millisecond).String() }
func whole(v float64) string   { return fmt.Sprintf("%.0f", v) }
func tenths(v float64) string  { return fmt.Sprintf("%.1f", v) }
func percent(v float64) string { return fmt.Sprintf("%.1f%%", v*100) }
func mib(v float64) string     { return fmt.Sprintf("%.0f MiB", v/(1<<20)) }
func mbps(v float64) string    { return fmt.Sprintf("%.1f", v/1e6) }

// scoreRows are the score table's rows.
func scoreRows() []scoreRow {
	flood := func(f func(Scenario, Score) figure) func(Scenario, Score) figure {
		return func(s Scenario, sc Score) figure {
			if s.Burst != "" {
				return notApplicable
			}
			return f(s, sc)
		}
	}
	benign := func(f func(Score) int) func(Scenario, Score) figure {
		return func(s Scenario, sc Score) figure {
			if s.Burst == "" {
				return notApplicable
			}
			return number(float64(f(sc)))
		}
	}
	operator := func(f func(*OperatorStats) float64) func(Scenario, Score) figure {
		return func(s Scenario, _ Score) figure {
			if s.Operator == nil {
				return notApplicable
			}
			return number(f(s.Operator))
		}
	}
	return []scoreRow{
		{"time to throttle (flood to throttle)", flood(func(_ Scenario, sc Score) figure { return duration(sc.TimeToThrottle) }), seconds},
		{"time to mitigate (flood to pause)", flood(func(_ Scenario, sc Score) figure { return duration(sc.TimeToMitigate) }), seconds},
		{"offered load: agents' LIST attempts/s", flood(func(_ Scenario, sc Score) figure { return number(sc.Offered.AttemptsPerSecond) }), tenths},
		{"offered load: agents' LISTs sent/s", flood(func(_ Scenario, sc Score) figure { return number(sc.Offered.ListsPerSecond) }), tenths},
		{"offered load: agents' MB/s read", flood(func(_ Scenario, sc Score) figure { return number(sc.Offered.BytesPerSecond) }), mbps},
		{"offered load: measured over the flood's first", flood(func(_ Scenario, sc Score) figure { return number(float64(sc.Offered.Window)) }), seconds},
		{"peak in-flight requests during the flood/burst", func(_ Scenario, sc Score) figure { return number(sc.PeakInflight) }, whole},
		{"innocent p99 during the flood/burst", func(_ Scenario, sc Score) figure { return number(float64(sc.FloodP99)) }, millis},
		{"innocent success rate during the flood/burst", func(_ Scenario, sc Score) figure { return number(sc.FloodSuccess) }, percent},
		{"innocent requests/s during the flood/burst", func(_ Scenario, sc Score) figure { return number(sc.FloodRate) }, tenths},
		{"time to recover (p99 under 1s)", func(_ Scenario, sc Score) figure { return duration(sc.TimeToRecover) }, seconds},
		{"restore attempts", func(_ Scenario, sc Score) figure { return number(float64(sc.RestoreAttempts)) }, whole},
		{"false throttles (benign burst)", benign(func(sc Score) int { return sc.FalseThrottles }), whole},
		{"false pauses (benign burst)", benign(func(sc Score) int { return sc.FalsePauses }), whole},
		{"operator's API requests", operator(func(o *OperatorStats) float64 { return o.Requests }), whole},
		{"operator's peak memory (RSS)", operator(func(o *OperatorStats) float64 { return float64(o.PeakRSS) }), mib},
	}
}
