package replay

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Sample is one second of a scenario's timeline.
type Sample struct {
	// At is the time since the scenario began.
	At time.Duration
	// Phase of the timeline: quiet, flood, relapse, fixed; or quiet,
	// burst, tail.
	Phase string
	// Inflight is the API server's in-flight requests.
	Inflight float64
	// InnocentRequests, InnocentErrors and InnocentP99 are the innocent
	// clients' requests in the second.
	InnocentRequests int
	InnocentErrors   int
	InnocentP99      time.Duration
	// InnocentLatencies are the second's innocent requests' latencies,
	// for the score's p99 over the whole flood.
	InnocentLatencies []time.Duration
	// Paused and Throttled count what loadshed has in place.
	Paused, Throttled int
	// AgentListAttempts are the LISTs the telemetry agents meant to send in
	// the second, AgentLists those they sent (at most Parallel each in
	// flight), and AgentBytes the response bytes they read in it.
	AgentListAttempts, AgentLists, AgentBytes int64
	// AgentsRunning is how many agents ran as the second began.
	AgentsRunning int
}

// Event is something the operator did, at a time of the timeline.
type Event struct {
	At     time.Duration
	Reason string
	Note   string
	// Repeat marks a later occurrence of an Event: client-go's recorder
	// folds an Event like an earlier one (same reason, same object) within
	// six minutes into the earlier one's series, whose note stays the
	// first's; so the note may not be this occurrence's.
	Repeat bool `json:",omitempty"`
}

// Scenario is one run of the timeline.
type Scenario struct {
	Name string
	// Burst names the benign burst the scenario played instead of the
	// flood; empty in the flood's scenarios.
	Burst   string
	Samples []Sample
	Events  []Event
	// FloodStart is when the flood (or the burst) began.
	FloodStart time.Duration
	// Operator is what the operator cost, nil when it did not run.
	Operator *OperatorStats
}

// OperatorStats are the operator's own costs in a scenario.
type OperatorStats struct {
	// Requests is how many API requests it made (as APF counted them for
	// its self-protection FlowSchema).
	Requests float64
	// PeakRSS is its peak resident memory in bytes.
	PeakRSS int64
}

// Score sums up a scenario. The figures "during the flood" are read over
// the flood and relapse phases, or over the burst in a benign scenario.
type Score struct {
	// TimeToThrottle is from the flood's start to the first throttle, and
	// TimeToMitigate to the first pause; -1 if none.
	TimeToThrottle time.Duration
	TimeToMitigate time.Duration
	// Offered is the agents' offered load early in the flood; its Window
	// is 0 in a benign scenario.
	Offered OfferedLoad
	// PeakInflight is the most in-flight requests the API server had during
	// the flood.
	PeakInflight float64
	// FloodP99 and FloodSuccess are the innocent clients' p99 latency (over
	// every request) and success rate while the flood lasted (from its
	// start to the fix).
	FloodP99     time.Duration
	FloodSuccess float64
	// FloodRate is the innocent clients' requests per second while the
	// flood lasted: they send one at a time, so a slow API server shows
	// here first.
	FloodRate float64
	// TimeToRecover is from the flood's start until the innocent p99 stays
	// under the recovery latency, -1 if never.
	TimeToRecover   time.Duration
	RestoreAttempts int
	// FalseThrottles and FalsePauses count the operator's Throttled and
	// Paused (or Repaused) events in a benign scenario, where nothing
	// misbehaves: each is a mistake. -1 in the flood's scenarios.
	FalseThrottles, FalsePauses int
}

// recovered is the innocent p99 under which the API counts as recovered.
const recovered = time.Second

// ScoreOf computes a scenario's score.
func ScoreOf(s Scenario) Score {
	sc := Score{TimeToThrottle: -1, TimeToMitigate: -1, TimeToRecover: -1, FalseThrottles: -1, FalsePauses: -1}
	if s.Burst != "" {
		sc.FalseThrottles, sc.FalsePauses = 0, 0
	}
	for _, e := range s.Events {
		if e.Reason == v1alpha1.EventThrottled && sc.TimeToThrottle < 0 && e.At >= s.FloodStart {
			sc.TimeToThrottle = e.At - s.FloodStart
		}
		if e.Reason == v1alpha1.EventPaused && sc.TimeToMitigate < 0 && e.At >= s.FloodStart {
			sc.TimeToMitigate = e.At - s.FloodStart
		}
		if e.Reason == v1alpha1.EventRestoreStarted {
			sc.RestoreAttempts++
		}
		if s.Burst != "" {
			switch e.Reason {
			case v1alpha1.EventThrottled:
				sc.FalseThrottles++
			case v1alpha1.EventPaused, v1alpha1.EventRepaused:
				sc.FalsePauses++
			}
		}
	}
	sc.Offered = OfferedLoadOf(s)
	scoreInnocents(s, &sc)
	return sc
}

// scoreInnocents reads the in-flight requests and the innocent clients'
// figures over the flood (or the burst), and the time to recover.
func scoreInnocents(s Scenario, sc *Score) {
	var lats []time.Duration
	requests, errors, seconds := 0, 0, 0
	lastBad := time.Duration(-1)
	for _, x := range s.Samples {
		if x.At < s.FloodStart {
			continue
		}
		if x.Phase == PhaseFlood || x.Phase == PhaseRelapse || x.Phase == PhaseBurst {
			sc.PeakInflight = max(sc.PeakInflight, x.Inflight)
			requests += x.InnocentRequests
			errors += x.InnocentErrors
			seconds++
			lats = append(lats, x.InnocentLatencies...)
		}
		if x.InnocentP99 >= recovered || (x.InnocentRequests > 0 && x.InnocentErrors == x.InnocentRequests) {
			lastBad = x.At
		}
	}
	if requests > 0 {
		sc.FloodSuccess = float64(requests-errors) / float64(requests)
		sc.FloodRate = float64(requests) / float64(seconds)
	}
	slices.Sort(lats)
	sc.FloodP99 = percentile(lats, 99)
	if len(s.Samples) > 0 {
		sc.TimeToRecover = 0
		if lastBad >= 0 {
			sc.TimeToRecover = lastBad + time.Second - s.FloodStart
		}
	}
}

// WriteCSV writes the timelines of runs (runs[i] are the scenarios of the
// i-th run), one row per run, scenario and second.
func WriteCSV(w io.Writer, runs [][]Scenario) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"run", "scenario", "second", "phase", "inflight", "innocent_requests", "innocent_errors",
		"innocent_p99_seconds", "paused", "throttled", "agents_running", "agent_list_attempts", "agent_lists", "agent_bytes"})
	for i, run := range runs {
		for _, s := range run {
			for _, x := range s.Samples {
				_ = cw.Write([]string{strconv.Itoa(i + 1), s.Name, strconv.Itoa(int(x.At / time.Second)), x.Phase,
					strconv.FormatFloat(x.Inflight, 'f', -1, 64), strconv.Itoa(x.InnocentRequests), strconv.Itoa(x.InnocentErrors),
					strconv.FormatFloat(x.InnocentP99.Seconds(), 'f', 3, 64), strconv.Itoa(x.Paused), strconv.Itoa(x.Throttled),
					strconv.Itoa(x.AgentsRunning), strconv.FormatInt(x.AgentListAttempts, 10), strconv.FormatInt(x.AgentLists, 10),
					strconv.FormatInt(x.AgentBytes, 10)})
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// ScoreTable formats the scores side by side, for the terminal, and under
// them whether the flood scenarios saw the same flood (CompareOfferedLoad).
func ScoreTable(scenarios []Scenario) string {
	var b strings.Builder
	widths := make([]int, len(scenarios))
	fmt.Fprintf(&b, "%-*s", labelWidth, "")
	for i, s := range scenarios {
		widths[i] = columnWidth(s.Name, cellWidth)
		fmt.Fprintf(&b, "%*s", widths[i], s.Name)
	}
	b.WriteString("\n")
	scores := make([]Score, len(scenarios))
	for i, s := range scenarios {
		scores[i] = ScoreOf(s)
	}
	for _, r := range scoreRows() {
		fmt.Fprintf(&b, "%-*s", labelWidth, r.label)
		for i, s := range scenarios {
			fmt.Fprintf(&b, "%*s", widths[i], r.cell(r.value(s, scores[i])))
		}
		b.WriteString("\n")
	}
	for _, line := range offeredLoadLines(scenarios) {
		b.WriteString(line + "\n")
	}
	return b.String()
}

// columnWidth is a column's width: at least least, and room for the name
// and two spaces.
func columnWidth(name string, least int) int {
	return max(least, utf8.RuneCountInString(name)+2)
}

// The score table's columns.
const (
	labelWidth = 48
	cellWidth  = 14
)

// Timeline formats each scenario's events (the flood, the fix and what the
// operator did), for the terminal.
func Timeline(scenarios []Scenario) string {
	var b strings.Builder
	for _, s := range scenarios {
		fmt.Fprintf(&b, "%s:\n", s.Name)
		for _, e := range s.Events {
			fmt.Fprintf(&b, "  t=%4ds  %-16s %s\n", int(e.At/time.Second), e.Reason, e.Note)
		}
	}
	return b.String()
}

// Summary is a run's score table and timeline; for repeated runs (runs[i]
// are the scenarios of the i-th run), each run's, then the table across
// them (AggregateTable).
func Summary(runs [][]Scenario) string {
	if len(runs) == 1 {
		return ScoreTable(runs[0]) + "\n" + Timeline(runs[0])
	}
	var b strings.Builder
	for i, run := range runs {
		fmt.Fprintf(&b, "Run %d of %d:\n%s\n%s\n", i+1, len(runs), ScoreTable(run), Timeline(run))
	}
	fmt.Fprintf(&b, "Across the %d runs:\n%s", len(runs), AggregateTable(runs))
	return b.String()
}

// WriteReport writes the report of runs (runs[i] are the scenarios of the
// i-th run) into dir (created if needed): report.html, the time series as
// timeline.csv, and the Summary as summary.txt. It returns the HTML page's
// path.
func WriteReport(dir string, runs [][]Scenario) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	write := func(name string, fill func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fill(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("writing %s: %w", name, err)
		}
		return f.Close()
	}
	if err := write("timeline.csv", func(w io.Writer) error { return WriteCSV(w, runs) }); err != nil {
		return "", err
	}
	if err := write("summary.txt", func(w io.Writer) error {
		_, err := io.WriteString(w, Summary(runs))
		return err
	}); err != nil {
		return "", err
	}
	if err := write("report.html", func(w io.Writer) error { return WriteHTML(w, runs) }); err != nil {
		return "", err
	}
	return filepath.Join(dir, "report.html"), nil
}

// chart is one scenario's charts on the page.
type chart struct {
	Name     string
	Inflight string
	P99      string
	Marks    []mark
	Width    int
}

// WriteHTML writes a self-contained page: for each scenario of each run,
// in-flight requests and the innocent p99 over time as inline SVG, with
// the operator's actions marked, and the Summary.
func WriteHTML(w io.Writer, runs [][]Scenario) error {
	// The same scales for every scenario, so that they compare at a glance.
	maxIn, maxP99, last := 1.0, 1.0, 1.0
	for _, run := range runs {
		for _, s := range run {
			for _, x := range s.Samples {
				maxIn = math.Max(maxIn, x.Inflight)
				maxP99 = math.Max(maxP99, x.InnocentP99.Seconds())
				last = math.Max(last, x.At.Seconds())
			}
		}
	}
	var charts []chart
	for i, run := range runs {
		for _, s := range run {
			c := chartOf(s, maxIn, maxP99, last)
			if len(runs) > 1 {
				c.Name = fmt.Sprintf("%s, run %d", s.Name, i+1)
			}
			charts = append(charts, c)
		}
	}
	page, err := template.New("report").Parse(pageTemplate)
	if err != nil {
		return fmt.Errorf("parsing the report's template: %w", err)
	}
	return page.Execute(w, struct {
		Charts        []chart
		MaxIn, MaxP99 string
		Seconds       int
		Summary       string
	}{charts, fmt.Sprintf("%.0f", maxIn), fmt.Sprintf("%.2fs", maxP99), int(last), Summary(runs)})
}

// chartOf draws a scenario on the given scales.
func chartOf(s Scenario, maxIn, maxP99, last float64) chart {
	c := chart{Name: s.Name, Width: 900}
	in, p99 := make([]string, 0, len(s.Samples)), make([]string, 0, len(s.Samples))
	for _, x := range s.Samples {
		px := x.At.Seconds() / last * float64(c.Width)
		in = append(in, fmt.Sprintf("%.1f,%.1f", px, 200-x.Inflight/maxIn*190))
		p99 = append(p99, fmt.Sprintf("%.1f,%.1f", px, 200-x.InnocentP99.Seconds()/maxP99*190))
	}
	c.Inflight, c.P99 = strings.Join(in, " "), strings.Join(p99, " ")
	for _, e := range s.Events {
		c.Marks = append(c.Marks, mark{X: e.At.Seconds() / last * float64(c.Width), Label: e.Reason + ": " + e.Note})
	}
	return c
}

type mark struct {
	X     float64
	Label string
}

const pageTemplate = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>loadshed incident replay</title>
<style>body{font-family:sans-serif;margin:2em}svg{border:1px solid #ccc;background:#fafafa}pre{background:#f4f4f4;padding:1em}</style>
</head><body><h1>loadshed incident replay</h1>
<p>Blue: API server in-flight requests (top of the chart: {{.MaxIn}}). Red: innocent clients' p99 latency (top: {{.MaxP99}}).
Grey lines: the flood (or the burst), the fix and the operator's actions (hover for details). Every chart spans {{.Seconds}} seconds.</p>
{{range .Charts}}<h2>{{.Name}}</h2>
<svg width="{{.Width}}" height="210" xmlns="http://www.w3.org/2000/svg">
{{range .Marks}}<line x1="{{.X}}" x2="{{.X}}" y1="0" y2="210" stroke="#999" stroke-dasharray="3,3"><title>{{.Label}}</title></line>
{{end}}<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{{.Inflight}}"/>
<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{{.P99}}"/>
</svg>{{end}}
<h2>Score and timeline</h2><pre>{{.Summary}}</pre>
</body></html>
`
