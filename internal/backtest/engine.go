package backtest

import (
	"fmt"
	"maps"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// engine runs a back-test: it evaluates the policy when the operator would
// have, and keeps the timeline and what the summary adds up.
type engine struct {
	in      Input
	queries map[string]signals.Query
	hist    *history
	sim     *simulation
	err     error
	// due is when the next evaluation is due (zero before the first), and
	// early how early a round may stand for it (the operator's cadence).
	due   time.Time
	early time.Duration
	// first and last are when the first and the last round were done;
	// fromSet and toSet say whether the input bounded the back-test.
	first, last    time.Time
	fromSet, toSet bool
	// observe, when set (by tests), sees each evaluation's inputs and
	// outputs.
	observe func(evaluation)

	timeline   []Entry
	marks      []mark
	firing     bool
	timesFired int
	// known are the triggers whose signal was read at some evaluation.
	known     map[string]bool
	missing   map[string]*MissingSignal
	paused    map[string]bool
	throttled map[string]bool
	blocked   map[string]bool
	unseen    Unseen
	notes     []string
}

// evaluation is one loop's inputs and outputs.
type evaluation struct {
	detection detection.Input
	readings  []detection.Reading
	plan      plan.Input
	decided   plan.Plan
	entries   []Entry
}

// mark is what an evaluation left: whether a trigger fired, and whether
// anything was throttled or paused, until the next.
type mark struct {
	at               time.Time
	firing, shedding bool
}

func newEngine(in Input) (*engine, error) {
	e := &engine{in: in, sim: newSimulation(&in), known: map[string]bool{}, missing: map[string]*MissingSignal{},
		paused: map[string]bool{}, throttled: map[string]bool{}, blocked: map[string]bool{},
		hist:    &history{keep: detection.Retention(in.Config), points: map[string][]trigger.Point{}},
		fromSet: !in.From.IsZero(), toSet: !in.To.IsZero()}
	if in.Prometheus != nil {
		e.hist.queries = in.Prometheus.Queries
		e.unseen.NoAttribution = NoAttributionFromPrometheus
	} else {
		_, queries, err := sampler.InterestOf(in.Config, nil)
		if err != nil {
			return nil, err
		}
		e.queries = queries
		e.notes = append(e.notes, recordingNotes(&in)...)
	}
	e.notes = append(e.notes, commonNotes(&in)...)
	return e, nil
}

// run goes through the data once, round by round (or step by step), and
// evaluates when the operator would have: it is woken by each round of its
// sampler and by its own requeue (the plan's RequeueAfter, at most an
// interval), and evaluates at the first wake-up no earlier than a quarter
// of an interval before it is due (its cadence): the round, when one comes
// then, or else the requeue, on the rounds taken so far.
func (e *engine) run() {
	if p := e.in.Prometheus; p != nil {
		times, err := steps(p)
		if err != nil {
			e.err = err
			return
		}
		for i, t := range times {
			if !e.arrive(t, func() { e.hist.addStep(p, i) }, nil) {
				break
			}
		}
	} else {
		for r := range taken(e.in.Rounds, e.in.Step, e.in.Config.Interval) {
			if !e.arrive(done(r), func() { e.hist.addRound(r) }, r) {
				break
			}
		}
	}
	if !e.toSet {
		e.in.To = e.last
	}
	for !e.due.IsZero() && !e.due.After(e.in.To) && e.err == nil {
		e.evaluateAt(e.due)
	}
}

// arrive takes in a round (or step) done at n: first the evaluations due
// before it, then, once it is in the history, an evaluation if it comes
// when one is due. It returns false past the end. round, for a recording,
// is counted for what it could not see.
func (e *engine) arrive(n time.Time, add func(), round *signals.Round) bool {
	for !e.due.IsZero() && n.After(e.due) && (!e.toSet || !e.due.After(e.in.To)) && e.err == nil {
		e.evaluateAt(e.due)
	}
	if (e.toSet && n.After(e.in.To)) || e.err != nil {
		return false
	}
	add()
	if e.first.IsZero() {
		e.first = n
	}
	e.last = n
	if e.fromSet && n.Before(e.in.From) {
		return true
	}
	if round != nil {
		e.countRound(round)
	}
	if e.due.IsZero() || !n.Before(e.due.Add(-e.early)) {
		e.evaluateAt(n)
	}
	return true
}

// evaluateAt evaluates at now, and records when the next evaluation is due.
func (e *engine) evaluateAt(now time.Time) {
	d := e.evaluate(now)
	e.due, e.early = now.Add(d), min(e.in.Config.Interval/4, d)
}

// evaluate runs one loop of the operator at now on the data of round i,
// and returns when it would look again.
func (e *engine) evaluate(now time.Time) time.Duration {
	cfg := e.in.Config
	rounds, points := e.hist.rounds, e.hist.points
	if e.in.Prometheus == nil {
		points = nil
	}
	din := detection.Input{Config: cfg, Queries: e.queries, Rounds: rounds, Points: points,
		Previous: e.sim.previous, PreviousAt: e.sim.previousAt, Now: now}
	readings := detection.Evaluate(din)
	before := len(e.timeline)
	for k := range readings {
		if m := e.hist.explain(readings[k].Name); m != "" {
			readings[k].Message = m
		}
	}
	offenders := detection.Offenders(rounds, e.sim.scope(), detection.AttributionWindow(cfg))
	offenders = offenders[:min(len(offenders), detection.MaxOffenders)]
	e.noteTriggers(now, readings)
	in, err := e.sim.planInput(now, readings, offenders)
	if err != nil {
		e.err = err
		return cfg.Interval
	}
	p := plan.Decide(in)
	if e.err = e.sim.apply(now, in, p); e.err != nil {
		return cfg.Interval
	}
	e.notePlan(now, in, p)
	if e.observe != nil {
		e.observe(evaluation{detection: din, readings: readings, plan: in, decided: p, entries: e.timeline[before:]})
	}
	e.sim.carry(now, readings, p)
	e.marks = append(e.marks, mark{at: now, firing: in.Firing, shedding: e.sim.shedding()})
	return min(cfg.Interval, p.RequeueAfter)
}

// noteTriggers adds the triggers' transitions to the timeline: the events
// the operator records when one fires or clears, and when one that was not
// firing loses or finds its signal.
func (e *engine) noteTriggers(now time.Time, readings []detection.Reading) {
	started, stopped := detection.Transitions(e.sim.previous, readings)
	for _, s := range started {
		e.add(Entry{Time: now, Kind: v1alpha1.EventTriggerFired, Subject: s.Name, Value: s.Shown(),
			Threshold: detection.FormatValue(s.Threshold), Reason: detection.FiredNote(s)})
	}
	for _, s := range stopped {
		e.add(Entry{Time: now, Kind: v1alpha1.EventTriggerCleared, Subject: s.Name, Value: s.Shown(),
			Threshold: detection.FormatValue(s.ClearThreshold), Reason: detection.ClearedNote(s)})
	}
	for _, s := range readings {
		was := e.sim.previous[s.Name].State
		unknown := s.Status.State == v1alpha1.TriggerUnknown
		switch {
		case unknown && e.known[s.Name] && was != v1alpha1.TriggerUnknown:
			e.add(Entry{Time: now, Kind: KindTriggerUnknown, Subject: s.Name, Value: s.Shown(),
				Threshold: detection.FormatValue(s.Threshold), Reason: s.Message})
		case !unknown && was == v1alpha1.TriggerUnknown && e.known[s.Name] && !s.Firing():
			e.add(Entry{Time: now, Kind: KindTriggerKnown, Subject: s.Name, Value: s.Shown(),
				Threshold: detection.FormatValue(s.Threshold), Reason: fmt.Sprintf("its signal is read again: %s", s.Status.State)})
		}
		e.known[s.Name] = e.known[s.Name] || s.OK
		if !s.OK {
			m := e.missing[s.Name]
			if m == nil {
				m = &MissingSignal{Trigger: s.Name}
				e.missing[s.Name] = m
			}
			m.Evaluations++
			m.Reason = s.Message
		}
	}
	if firing := detection.Firing(readings); firing != e.firing {
		e.firing = firing
		if firing {
			e.timesFired++
		}
	}
}

// notePlan adds the plan's changes, and what it may not do (once while the
// triggers fire, as the operator's events say it), to the timeline.
func (e *engine) notePlan(now time.Time, in plan.Input, p plan.Plan) {
	for _, c := range p.Changes {
		e.add(Entry{Time: now, Kind: string(c.Kind), Subject: c.Target.String(), Reason: c.Reason})
		switch c.Kind {
		case plan.Paused:
			e.paused[c.Target.String()] = true
		case plan.Throttled:
			e.throttled[c.Target.String()] = true
		}
	}
	for _, b := range plan.NewlyBlocked(e.sim.blocked, p.Blocked, e.sim.reported) {
		e.add(Entry{Time: now, Kind: v1alpha1.EventBlocked, Subject: b.Subject(), Reason: b.String()})
		e.blocked[b.String()] = true
	}
	if !in.Firing {
		clear(e.sim.reported)
	}
}

func (e *engine) add(entry Entry) { e.timeline = append(e.timeline, entry) }

// countRound counts what a round in range could not see: a round the
// operator's sampler would have taken.
func (e *engine) countRound(r *signals.Round) {
	switch {
	case len(r.Instances) == 0:
		e.unseen.BlindRounds++
	case len(r.Failed) > 0:
		e.unseen.PartialRounds++
	}
	if len(r.ClientsFailed) > 0 || (len(r.Instances) > 0 && len(r.Clients) == 0) {
		e.unseen.UnattributedRounds++
	}
}

// result adds the summary up.
func (e *engine) result() *Result {
	sum := Summary{Evaluations: len(e.marks), TimesFired: e.timesFired, Notes: e.notes,
		Paused: sorted(e.paused), Throttled: sorted(e.throttled), Blocked: sorted(e.blocked), Unseen: e.unseen}
	var firing, shedding time.Duration
	for k, m := range e.marks {
		end := e.in.To
		if k+1 < len(e.marks) {
			end = e.marks[k+1].at
		}
		if m.firing {
			firing += end.Sub(m.at)
		}
		if m.shedding {
			shedding += end.Sub(m.at)
		}
	}
	sum.Firing, sum.Shedding = metav1.Duration{Duration: firing}, metav1.Duration{Duration: shedding}
	for _, name := range slices.Sorted(maps.Keys(e.missing)) {
		sum.Unseen.Missing = append(sum.Unseen.Missing, *e.missing[name])
	}
	timeline := e.timeline
	if timeline == nil {
		timeline = []Entry{}
	}
	from := e.in.From
	if !e.fromSet {
		from = e.first
	}
	return &Result{Policy: e.in.Name, Source: e.in.Source, From: from, To: e.in.To,
		Interval: metav1.Duration{Duration: e.in.Config.Interval}, Timeline: timeline, Summary: sum}
}

// sorted returns a set's members in order, never nil (JSON lists them as []).
func sorted(set map[string]bool) []string {
	out := slices.Sorted(maps.Keys(set))
	if out == nil {
		out = []string{}
	}
	return out
}

// recordingNotes say what a back-test on a recording assumes.
func recordingNotes(in *Input) []string {
	var out []string
	if in.Step > in.Config.Interval {
		out = append(out, fmt.Sprintf("The recording's step (%v) is longer than the policy's interval (%v): the policy is "+
			"evaluated at each recorded round, less often than the operator would", in.Step, in.Config.Interval))
	}
	return append(out, "No nodes are recorded: restore waves are described by their share of a DaemonSet's nodes")
}

// commonNotes say what every back-test assumes.
func commonNotes(in *Input) []string {
	out := []string{"It starts with nothing of loadshed's in place, no other policy acts, and every write the " +
		"operator would make succeeds; what the cluster would have done after them is not in the data"}
	if in.Config.DryRun {
		out = append(out, "The policy is in dryRun: the timeline shows what it would do were it not (in dryRun, the operator "+
			"records these as Would... events and changes nothing)")
	}
	return out
}
