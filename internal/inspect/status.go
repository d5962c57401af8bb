package inspect

import (
	"cmp"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

// StatusList is what `kubectl loadshed status -o json|yaml` prints: one
// entry per policy, by name.
type StatusList struct {
	Policies []PolicyStatus `json:"policies"`
}

// PolicyStatus is one policy as `kubectl loadshed status` shows it: its
// status as the operator wrote it, the pause records on the DaemonSets it
// paused with what comes next for each, and its last events.
type PolicyStatus struct {
	// Name of the policy.
	Name string `json:"name"`
	// Phase, worstSignal and lastEvaluationTime are the policy's status.
	Phase              v1alpha1.Phase `json:"phase,omitempty"`
	WorstSignal        string         `json:"worstSignal,omitempty"`
	LastEvaluationTime *metav1.Time   `json:"lastEvaluationTime,omitempty"`
	// Suspended and DryRun are the spec's suspend and dryRun.
	Suspended bool `json:"suspended"`
	DryRun    bool `json:"dryRun"`
	// Source is where the policy reads its signals (apiServer, prometheus),
	// every Interval.
	Source   v1alpha1.SourceType `json:"source"`
	Interval metav1.Duration     `json:"interval"`
	// Invalid says why the spec does not resolve, when it does not.
	Invalid string `json:"invalid,omitempty"`
	// Triggers, Offenders, Actions and Blocked are status.signals,
	// status.offenders, status.actions and status.blocked.
	Triggers  []v1alpha1.SignalStatus   `json:"triggers"`
	Offenders []v1alpha1.OffenderStatus `json:"offenders"`
	Actions   []v1alpha1.ActionStatus   `json:"actions"`
	Blocked   []v1alpha1.BlockedStatus  `json:"blocked"`
	// Paused are the DaemonSets whose record names the policy, read from
	// the records themselves.
	Paused []PausedDaemonSet `json:"paused"`
	// Conditions are status.conditions.
	Conditions []metav1.Condition `json:"conditions"`
	// Events are the policy's last events, oldest first.
	Events []Event `json:"events"`
}

// PausedDaemonSet is a DaemonSet paused by a policy, from the record on it.
type PausedDaemonSet struct {
	// DaemonSet as namespace/name.
	DaemonSet string `json:"daemonSet"`
	// Since is when it was first paused, and Reason why.
	Since  *metav1.Time `json:"since,omitempty"`
	Reason string       `json:"reason,omitempty"`
	// Attempt counts its restores that relapsed.
	Attempt int `json:"attempt"`
	// Wave is the restore wave in progress (0 while fully paused), of Waves.
	Wave  int `json:"wave"`
	Waves int `json:"waves"`
	// Overrides counts the times loadshed put back a pause someone removed.
	Overrides int `json:"overrides,omitempty"`
	// Next is what comes next for it.
	Next Outlook `json:"next"`
	// Error says why its record cannot be read, when it cannot.
	Error string `json:"error,omitempty"`
}

// Event is one event regarding a policy or a DaemonSet.
type Event struct {
	// Time is when it last happened, and Count how many times it did.
	Time  metav1.Time `json:"time"`
	Count int32       `json:"count"`
	// Type is Normal or Warning; Reason, e.g. Paused; Note, what happened.
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Note   string `json:"note"`
}

// Status describes a policy: paused are DaemonSets (their metadata is
// enough) of which those whose record names the policy are shown; events
// are the events regarding it, of which the last `events` are shown.
func Status(p *v1alpha1.LoadShedPolicy, paused []appsv1.DaemonSet, events []eventsv1.Event, lastEvents int,
	now time.Time) PolicyStatus {
	cfg, err := policy.Resolve(&p.Spec)
	out := PolicyStatus{
		Name: p.Name, Phase: p.Status.Phase, WorstSignal: p.Status.WorstSignal,
		LastEvaluationTime: p.Status.LastEvaluationTime, Suspended: p.Spec.Suspend, DryRun: p.Spec.DryRun,
		Source: cfg.Source.Type, Interval: metav1.Duration{Duration: cfg.Interval},
		Triggers: p.Status.Signals, Offenders: p.Status.Offenders, Actions: p.Status.Actions,
		Blocked: p.Status.Blocked, Conditions: p.Status.Conditions,
		Events: LastEvents(events, lastEvents),
	}
	if err != nil {
		out.Invalid = err.Error()
	}
	out.Paused = pausedBy(p, cfg, paused, now)
	return out
}

// pausedBy describes the DaemonSets whose record names the policy, by name.
func pausedBy(p *v1alpha1.LoadShedPolicy, cfg *policy.Config, dss []appsv1.DaemonSet, now time.Time) []PausedDaemonSet {
	records := map[types.NamespacedName]plan.Pause{}
	var out []PausedDaemonSet
	restoring := ""
	for i := range dss {
		ds := &dss[i]
		if shed.PausedBy(ds) != p.Name {
			continue
		}
		key := client.ObjectKeyFromObject(ds)
		rec, err := shed.ReadPause(ds)
		if err != nil {
			out = append(out, PausedDaemonSet{DaemonSet: key.String(), Error: err.Error()})
			continue
		}
		records[key] = rec
		if rec.Wave > 0 {
			restoring = key.String()
		}
	}
	pending := Pending{Config: cfg, Signals: p.Status.Signals, Suspended: p.Spec.Suspend}
	for key, rec := range records {
		pd := PausedDaemonSet{DaemonSet: key.String(), Reason: dsReason(dss, key), Attempt: rec.Attempt,
			Wave: rec.Wave, Waves: len(cfg.Restore.WavePercents), Overrides: rec.Overrides}
		if !rec.Since.IsZero() {
			pd.Since = &metav1.Time{Time: rec.Since}
		}
		pending.Restoring = ""
		if rec.Wave == 0 && restoring != key.String() {
			pending.Restoring = restoring
		}
		pd.Next = Next(rec, pending, now)
		out = append(out, pd)
	}
	slices.SortFunc(out, func(a, b PausedDaemonSet) int { return cmp.Compare(a.DaemonSet, b.DaemonSet) })
	return out
}

// dsReason is the reason recorded on a DaemonSet.
func dsReason(dss []appsv1.DaemonSet, key types.NamespacedName) string {
	for i := range dss {
		if dss[i].Namespace == key.Namespace && dss[i].Name == key.Name {
			return dss[i].Annotations[v1alpha1.AnnotationReason]
		}
	}
	return ""
}

// LastEvents returns the last n events, oldest first, each at the time it
// last happened (a series' last observation).
func LastEvents(events []eventsv1.Event, n int) []Event {
	out := make([]Event, 0, len(events))
	for i := range events {
		e := &events[i]
		out = append(out, Event{Time: lastSeen(e), Count: count(e), Type: e.Type, Reason: e.Reason, Note: e.Note})
	}
	slices.SortStableFunc(out, func(a, b Event) int { return a.Time.Compare(b.Time.Time) })
	if n >= 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func lastSeen(e *eventsv1.Event) metav1.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return metav1.Time{Time: e.Series.LastObservedTime.Time}
	case !e.EventTime.IsZero():
		return metav1.Time{Time: e.EventTime.Time}
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp
	}
	return e.CreationTimestamp
}

func count(e *eventsv1.Event) int32 {
	switch {
	case e.Series != nil:
		return e.Series.Count
	case e.DeprecatedCount > 0:
		return e.DeprecatedCount
	}
	return 1
}
