// Package backtest runs a LoadShedPolicy over recorded or queried series,
// with the operator's own code: its triggers (sampler.InterestOf,
// detection.Evaluate), its attribution (detection.Offenders) and its
// planner (plan.Decide), evaluated when the operator would have evaluated,
// and what each plan leaves in place carried to the next evaluation as the
// operator carries it, through the annotations of the objects it writes
// (shed) and through its status. It returns the timeline the operator would
// have produced and a summary. It is pure: no cluster, no clock; kubectl
// loadshed evaluate reads the inputs and prints the result.
//
// What it cannot know: how the cluster would have answered the throttles
// and pauses it decides (the data are what happened without them, or with
// what an operator did while they were recorded), and, from Prometheus, who
// loads the API servers (their metrics carry no user; the operator reads
// APF's own dump), so that the planner decides there with no offenders.
package backtest

import (
	"errors"
	"fmt"
	"iter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// World is the cluster the policy acts on, as a recording saw it.
type World struct {
	// DaemonSets are every DaemonSet: namespace, name, labels,
	// ServiceAccount and priority class are what the policy reads.
	DaemonSets []appsv1.DaemonSet `json:"daemonSets,omitempty"`
	// NamespaceLabels holds every namespace's labels.
	NamespaceLabels map[string]labels.Set `json:"namespaceLabels,omitempty"`
	// FlowSchemas are every FlowSchema: a throttle goes ahead of the one
	// that matches its ServiceAccount.
	FlowSchemas []flowcontrolv1.FlowSchema `json:"flowSchemas,omitempty"`
}

// Input is what a back-test runs on.
type Input struct {
	// Name is the policy's name: what it writes on what it pauses.
	Name   string
	Config *policy.Config
	World  World
	// Operator is the operator's ServiceAccount: what runs as it is
	// protected, and it is never throttled.
	Operator types.NamespacedName
	// From and To bound the evaluations. The data before From are history
	// for the first ones, as the operator's sampler would hold it.
	From, To time.Time
	// Source says where the data come from, for the result.
	Source string
	// Rounds yields a recording's rounds of scrapes, oldest first, taken
	// every Step (the back-test goes through them once, and holds only what
	// the operator's sampler would); or Prometheus holds the triggers'
	// values. One of the two.
	Rounds     iter.Seq[*signals.Round]
	Step       time.Duration
	Prometheus *PrometheusSeries
}

// PrometheusSeries are a policy's trigger values read from Prometheus.
type PrometheusSeries struct {
	// URL is the Prometheus queried.
	URL string
	// Step is the range queries' step: the policy's interval.
	Step time.Duration
	// Points maps each trigger to its value at every step, oldest first; a
	// step where Prometheus had none is a point that is not OK.
	Points map[string][]trigger.Point
	// Queries maps each trigger to the PromQL it was read with.
	Queries map[string]string
}

// Result is a back-test's timeline and summary.
type Result struct {
	// Policy is the policy's name.
	Policy string `json:"policy"`
	// Source says where the data came from: a recording or a Prometheus.
	Source string `json:"source"`
	// From and To bound the evaluations; Interval is the policy's.
	From     time.Time       `json:"from"`
	To       time.Time       `json:"to"`
	Interval metav1.Duration `json:"interval"`
	// Timeline is what the operator would have done and seen, in order.
	Timeline []Entry `json:"timeline"`
	Summary  Summary `json:"summary"`
}

// Entry is one line of the timeline.
type Entry struct {
	Time time.Time `json:"time"`
	// Kind is the reason of the operator's event (v1alpha1.EventTriggerFired,
	// EventTriggerCleared, EventBlocked, or a plan.ChangeKind: Throttled,
	// Paused, RestoreStarted, WaveAdvanced, Restored, Repaused,
	// Unthrottled), or KindTriggerUnknown and KindTriggerKnown.
	Kind string `json:"kind"`
	// Subject is the trigger, ServiceAccount or DaemonSet.
	Subject string `json:"subject"`
	// Value and Threshold are, for a trigger's entry, its signal's value and
	// the threshold it crossed (for a clearing, its clear threshold).
	Value     string `json:"value,omitempty"`
	Threshold string `json:"threshold,omitempty"`
	// Reason is the operator's sentence: its event's note for a trigger, the
	// planner's reason for a change, why an action is blocked.
	Reason string `json:"reason"`
}

// The entries of a trigger whose signal could not be read and then could:
// the operator records no event for them, but its status shows the state
// Unknown, which holds restores as firing does.
const (
	// KindTriggerUnknown: a trigger that was not firing lost its signal.
	KindTriggerUnknown = "TriggerUnknown"
	// KindTriggerKnown: a trigger's signal can be read again.
	KindTriggerKnown = "TriggerKnown"
)

// Summary is what the timeline adds up to.
type Summary struct {
	// Evaluations counts the evaluations the operator would have made.
	Evaluations int `json:"evaluations"`
	// TimesFired counts the times the policy went from no trigger firing to
	// one firing.
	TimesFired int `json:"timesFired"`
	// Firing is the time some trigger fired; Shedding the time something
	// was throttled or paused.
	Firing   metav1.Duration `json:"firing"`
	Shedding metav1.Duration `json:"shedding"`
	// Paused are the DaemonSets it would have paused, ThrottledServiceAccounts
	// the ServiceAccounts it would have throttled ("namespace/name").
	Paused    []string `json:"paused"`
	Throttled []string `json:"throttled"`
	// Blocked are the actions it would have taken but might not, and why.
	Blocked []string `json:"blocked,omitempty"`
	// Unseen is what it could not see.
	Unseen Unseen `json:"unseen"`
	// Notes say what the back-test assumed.
	Notes []string `json:"notes,omitempty"`
}

// Unseen is what a back-test could not see.
type Unseen struct {
	// BlindRounds counts the rounds in range in which no API server could be
	// scraped, PartialRounds those in which some could not.
	BlindRounds   int `json:"blindRounds"`
	PartialRounds int `json:"partialRounds"`
	// UnattributedRounds counts the rounds in range in which who loads some
	// API server could not be read (APF's dump).
	UnattributedRounds int `json:"unattributedRounds"`
	// Missing are the triggers whose value was missing at some evaluation.
	Missing []MissingSignal `json:"missing,omitempty"`
	// NoAttribution says why no offender could be named at all, if so.
	NoAttribution string `json:"noAttribution,omitempty"`
}

// MissingSignal is a trigger whose value was missing at some evaluations.
type MissingSignal struct {
	Trigger     string `json:"trigger"`
	Evaluations int    `json:"evaluations"`
	// Reason is why, the last time.
	Reason string `json:"reason"`
}

// NoAttributionFromPrometheus says why a back-test on Prometheus names no
// offender.
const NoAttributionFromPrometheus = "Prometheus holds the API servers' metrics, which carry no user: the operator names " +
	"offenders from APF's dump of the requests each API server holds, which no Prometheus keeps; so nothing is " +
	"throttled or paused here, and the timeline shows when the policy fires and clears"

// Run runs the back-test.
func Run(in Input) (*Result, error) {
	switch {
	case in.Config == nil:
		return nil, errors.New("no policy to back-test")
	case (in.Rounds == nil) == (in.Prometheus == nil):
		return nil, errors.New("a back-test reads either a recording's rounds or Prometheus, one of the two")
	case in.To.Before(in.From):
		return nil, fmt.Errorf("the back-test ends (%s) before it starts (%s)", in.To.Format(time.RFC3339), in.From.Format(time.RFC3339))
	}
	e, err := newEngine(in)
	if err != nil {
		return nil, err
	}
	e.run()
	switch {
	case e.err != nil:
		return nil, e.err
	case len(e.marks) == 0:
		return nil, fmt.Errorf("no data to evaluate the policy on in %s", in.Source)
	}
	return e.result(), nil
}
