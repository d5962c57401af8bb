package inspect

import (
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

// WhyInput is everything `kubectl loadshed why` reads.
type WhyInput struct {
	// DaemonSet is the one asked about.
	DaemonSet *appsv1.DaemonSet
	// NamespaceLabels are every namespace's labels, for namespaceSelectors.
	NamespaceLabels map[string]labels.Set
	// Policies are every LoadShedPolicy.
	Policies []v1alpha1.LoadShedPolicy
	// Recorded are the DaemonSets that carry a pause record (their metadata
	// is enough), for maxPaused and the restore in progress.
	Recorded []appsv1.DaemonSet
	// Operator is the operator's ServiceAccount: a DaemonSet running as it
	// is protected, and its namespace too.
	Operator types.NamespacedName
	// Events are the events regarding the DaemonSet, of which the last
	// LastEvents are shown.
	Events     []eventsv1.Event
	LastEvents int
	Now        time.Time
}

// Explanation is what `kubectl loadshed why` says, and prints with -o json|yaml.
type Explanation struct {
	// DaemonSet as namespace/name, and the ServiceAccount it runs as.
	DaemonSet      string `json:"daemonSet"`
	ServiceAccount string `json:"serviceAccount"`
	// Paused is true when a policy's pause record is on it.
	Paused bool `json:"paused"`
	// Summary says in one sentence why it is paused or not.
	Summary string `json:"summary"`
	// Pause is the record on it, and what would restore it.
	Pause *PauseRecord `json:"pause,omitempty"`
	// LastRestore is what its last full restore left on it, if anything.
	LastRestore *LastRestore `json:"lastRestore,omitempty"`
	// Policies are every policy, as each sees the DaemonSet.
	Policies []PolicyView `json:"policies"`
	// Events are the operator's last events on the DaemonSet, oldest
	// first: it records each pause and restore step on the DaemonSet too.
	Events []Event `json:"events"`
}

// PauseRecord is a pause record, read from the DaemonSet's annotations,
// with what would restore it.
type PauseRecord struct {
	// Policy paused it; PolicyExists is false when that policy is gone.
	Policy       string `json:"policy"`
	PolicyExists bool   `json:"policyExists"`
	// Since is when it was first paused, and Reason why.
	Since  *metav1.Time `json:"since,omitempty"`
	Reason string       `json:"reason,omitempty"`
	// Attempt counts its restores that relapsed.
	Attempt int `json:"attempt"`
	// Wave is the restore wave in progress (0 while fully paused), of
	// Waves; WaveStarted is when it began.
	Wave        int          `json:"wave"`
	Waves       int          `json:"waves"`
	WaveStarted *metav1.Time `json:"waveStarted,omitempty"`
	// NextRestore is the record's earliest time for a restore (its backoff).
	NextRestore *metav1.Time `json:"nextRestore,omitempty"`
	// Overrides counts the times loadshed put back a pause someone removed,
	// the last at OverriddenAt.
	Overrides    int          `json:"overrides,omitempty"`
	OverriddenAt *metav1.Time `json:"overriddenAt,omitempty"`
	// Original is the pod template's scheduling before the pause, which a
	// restore gives back.
	Original *shed.Scheduling `json:"originalScheduling,omitempty"`
	// Next is what comes next, and Restore the rules that would restore it,
	// one sentence each, in order.
	Next    *Outlook `json:"next,omitempty"`
	Restore []string `json:"restore"`
	// Error says why the record cannot be read, when it cannot.
	Error string `json:"error,omitempty"`
}

// LastRestore is what a full restore left on a DaemonSet: paused again
// within the policy's backoff.max after it, the DaemonSet relapses, and its
// attempt count goes on.
type LastRestore struct {
	Policy  string      `json:"policy"`
	At      metav1.Time `json:"at"`
	Attempt int         `json:"attempt"`
}

// PolicyView is how one policy sees the DaemonSet.
type PolicyView struct {
	// Policy is its name, and Phase its status.phase.
	Policy string         `json:"policy"`
	Phase  v1alpha1.Phase `json:"phase,omitempty"`
	// Selects is true when its targets take in the DaemonSet; Excluded
	// says why not; Protected why it must never act on it all the same.
	Selects   bool   `json:"selects"`
	Excluded  string `json:"excluded,omitempty"`
	Protected string `json:"protected,omitempty"`
	// Suspended, DryRun, PauseEnabled and ThrottleEnabled are the spec's.
	Suspended       bool `json:"suspended"`
	DryRun          bool `json:"dryRun"`
	PauseEnabled    bool `json:"pauseEnabled"`
	ThrottleEnabled bool `json:"throttleEnabled"`
	// Triggers are the triggers not OK (firing, pending, clearing, unknown).
	Triggers []v1alpha1.SignalStatus `json:"triggers,omitempty"`
	// Offender is the DaemonSet's ServiceAccount among status.offenders,
	// and MinSharePercent the share from which the policy acts on one.
	Offender        *v1alpha1.OffenderStatus `json:"offender,omitempty"`
	MinSharePercent int32                    `json:"minSharePercent"`
	// ThrottledSince is when the policy throttled the ServiceAccount, if
	// it does; a pause may come pause.after (PauseAfter) later.
	ThrottledSince *metav1.Time    `json:"throttledSince,omitempty"`
	PauseAfter     metav1.Duration `json:"pauseAfter"`
	// Blocked are status.blocked about the DaemonSet or its ServiceAccount.
	Blocked []v1alpha1.BlockedStatus `json:"blocked,omitempty"`
	// Says is what the policy does about the DaemonSet, one sentence each.
	Says []string `json:"says"`
}

// Explain says why a DaemonSet is paused or not.
func Explain(in WhyInput) Explanation {
	ds := in.DaemonSet
	sa := attribution.ServiceAccountOf(ds)
	out := Explanation{DaemonSet: client.ObjectKeyFromObject(ds).String(), ServiceAccount: sa.String()}
	for i := range in.Policies {
		out.Policies = append(out.Policies, view(in, &in.Policies[i], types.NamespacedName(sa)))
	}
	if by := shed.PausedBy(ds); by != "" {
		out.Paused = true
		out.Pause = pauseRecord(in, by)
	}
	if by := shed.RestoredBy(ds); by != "" {
		if last, ok := shed.ReadRestoration(ds, by); ok {
			out.LastRestore = &LastRestore{Policy: by, At: metav1.Time{Time: last.At}, Attempt: last.Attempt}
		}
	}
	out.Summary = summary(out)
	out.Events = LastEvents(in.Events, in.LastEvents)
	return out
}

// summary says in one sentence why the DaemonSet is paused or not.
func summary(e Explanation) string {
	if e.Pause != nil {
		s := fmt.Sprintf("%s is paused by policy %s", e.DaemonSet, e.Pause.Policy)
		if e.Pause.Since != nil {
			s += " since " + e.Pause.Since.UTC().Format(time.RFC3339)
		}
		if e.Pause.Wave > 0 {
			s += fmt.Sprintf(", in restore wave %d of %d", e.Pause.Wave, e.Pause.Waves)
		}
		return s + "."
	}
	var selecting, protected, acting []string
	reason := ""
	for _, v := range e.Policies {
		if !v.Selects {
			continue
		}
		selecting = append(selecting, v.Policy)
		switch {
		case v.Protected != "":
			protected = append(protected, v.Policy)
			reason = v.Protected
		case !v.Suspended && !v.DryRun && v.PauseEnabled:
			acting = append(acting, v.Policy)
		}
	}
	switch {
	case len(selecting) == 0:
		return fmt.Sprintf("%s is not paused: no policy selects it.", e.DaemonSet)
	case len(protected) == len(selecting):
		return fmt.Sprintf("%s is not paused: it is protected (%s).", e.DaemonSet, reason)
	case len(acting) == 0:
		return fmt.Sprintf("%s is not paused: no policy that selects it may pause (suspended, dryRun or pausing off).", e.DaemonSet)
	}
	return fmt.Sprintf("%s is not paused: policies %s select it and have not paused it (see below).", e.DaemonSet,
		strings.Join(acting, ", "))
}

// view is how one policy sees the DaemonSet.
func view(in WhyInput, p *v1alpha1.LoadShedPolicy, sa types.NamespacedName) PolicyView {
	ds := in.DaemonSet
	cfg, err := policy.Resolve(&p.Spec)
	v := PolicyView{Policy: p.Name, Phase: p.Status.Phase, Suspended: p.Spec.Suspend, DryRun: p.Spec.DryRun,
		PauseEnabled: cfg.Pause.Enabled, ThrottleEnabled: cfg.Throttle.Enabled,
		MinSharePercent: int32(cfg.MinShare*100 + 0.5), PauseAfter: metav1.Duration{Duration: cfg.Pause.After}}
	if err != nil {
		v.Says = append(v.Says, "its spec does not resolve, so the operator does not act on it: "+err.Error())
		return v
	}
	v.Excluded = cfg.Targets.Exclusion(ds, in.NamespaceLabels, in.Operator.Namespace)
	v.Selects = v.Excluded == ""
	if !v.Selects {
		v.Says = append(v.Says, "does not select it: "+v.Excluded+".")
		return v
	}
	v.Protected = cfg.Targets.Protection(ds, in.Operator)
	readStatus(&v, p, sa, client.ObjectKeyFromObject(ds))
	v.Says = says(v, sa)
	if shed.PausedBy(ds) == "" && v.mayPause() {
		v.Says = append(v.Says, pauseSays(v, cfg, in, sa)...)
	}
	for _, b := range v.Blocked {
		v.Says = append(v.Says, fmt.Sprintf("Blocked (%s %s): %s.", b.Kind, b.Target, b.Reason))
	}
	return v
}

// mayPause reports whether the policy may pause the DaemonSet at all.
func (v PolicyView) mayPause() bool {
	return v.Protected == "" && !v.Suspended && !v.DryRun && v.PauseEnabled
}

// readStatus fills in what the policy's status says of the DaemonSet and
// its ServiceAccount.
func readStatus(v *PolicyView, p *v1alpha1.LoadShedPolicy, sa, ds types.NamespacedName) {
	for _, s := range p.Status.Signals {
		if s.State != v1alpha1.TriggerOK {
			v.Triggers = append(v.Triggers, s)
		}
	}
	for i := range p.Status.Offenders {
		if o := p.Status.Offenders[i]; o.ServiceAccount == sa.String() {
			v.Offender = &o
			break
		}
	}
	for _, a := range p.Status.Actions {
		if a.Kind == v1alpha1.ActionThrottle && a.Target == sa.String() {
			v.ThrottledSince = a.Since
		}
	}
	for _, b := range p.Status.Blocked {
		if b.Target == ds.String() || (b.Kind == v1alpha1.ActionThrottle && b.Target == sa.String()) {
			v.Blocked = append(v.Blocked, b)
		}
	}
}

// says is what a policy that selects the DaemonSet does about it.
func says(v PolicyView, sa types.NamespacedName) []string {
	var out []string
	switch {
	case v.Protected != "":
		out = append(out, "selects it, but it is protected ("+v.Protected+"): never paused, and its ServiceAccount never throttled.")
	case v.Suspended:
		out = append(out, "selects it, but is suspended (spec.suspend): it evaluates nothing and changes nothing.")
	case v.DryRun:
		out = append(out, "selects it, but is in dryRun: it pauses nothing (its status.actions and Would... events say what it would do).")
	case !v.PauseEnabled:
		out = append(out, "selects it, but pausing is off (spec.actions.pause.enabled: false).")
	default:
		out = append(out, "selects it and may pause it.")
	}
	return append(out, triggersSay(v.Triggers, v.Phase), offenderSays(v, sa))
}

// pauseSays says, of a DaemonSet the policy may pause and has not, when a
// pause would come and what holds it back.
func pauseSays(v PolicyView, cfg *policy.Config, in WhyInput, sa types.NamespacedName) []string {
	var out []string
	if v.ThrottledSince != nil {
		out = append(out, fmt.Sprintf("It throttles %s since %s; the DaemonSet is paused if it is still an offender "+
			"%v after that (spec.actions.pause.after), at %s at the earliest.", sa, Clock(v.ThrottledSince.Time, in.Now),
			cfg.Pause.After, v.ThrottledSince.Add(cfg.Pause.After).UTC().Format(time.RFC3339)))
	}
	if n := pausedCount(in.Recorded); n >= cfg.Pause.MaxPaused {
		out = append(out, fmt.Sprintf("%s paused already, by this policy or others: no more while "+
			"spec.actions.pause.maxPaused is %d.", countOf(n, "DaemonSet is", "DaemonSets are"), cfg.Pause.MaxPaused))
	}
	return out
}

// countOf writes n with the singular or the plural.
func countOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// triggersSay says which triggers are not OK.
func triggersSay(not []v1alpha1.SignalStatus, phase v1alpha1.Phase) string {
	if len(not) == 0 {
		if phase == "" {
			return "It has not been evaluated yet."
		}
		return "No trigger fires: it pauses nothing while every trigger is OK."
	}
	parts := make([]string, 0, len(not))
	for _, s := range not {
		p := fmt.Sprintf("%s is %s", s.Name, s.State)
		if s.Value != "" {
			p += fmt.Sprintf(" (%s %s, threshold %s, clears at or below %s)", s.Signal, s.Value, s.Threshold, s.ClearThreshold)
		}
		parts = append(parts, p)
	}
	return "Triggers: " + strings.Join(parts, "; ") + "."
}

// offenderSays says whether the ServiceAccount is an offender, and how it
// compares with the share from which the policy acts.
func offenderSays(v PolicyView, sa types.NamespacedName) string {
	o := v.Offender
	if o == nil {
		return fmt.Sprintf("Its ServiceAccount %s is not among the offenders the policy measured (status.offenders): "+
			"the API servers hold few or none of its requests.", sa)
	}
	share := max(o.InFlightSharePercent, o.RequestSharePercent)
	verdict := "below"
	if share >= v.MinSharePercent || o.SeatSharePercent >= v.MinSharePercent {
		verdict = "at or above"
	}
	return fmt.Sprintf("Its ServiceAccount %s is an offender: %d%% of the requests the API servers hold "+
		"(%d%% of all requests, while throttled), %d%% of the seats; %s the policy's spec.actions.minSharePercent (%d%%).",
		sa, o.InFlightSharePercent, o.RequestSharePercent, o.SeatSharePercent, verdict, v.MinSharePercent)
}

// pausedCount counts the DaemonSets that carry a pause record.
func pausedCount(recorded []appsv1.DaemonSet) int {
	n := 0
	for i := range recorded {
		if shed.PausedBy(&recorded[i]) != "" {
			n++
		}
	}
	return n
}

// pauseRecord reads the DaemonSet's record and says what would restore it.
func pauseRecord(in WhyInput, by string) *PauseRecord {
	ds := in.DaemonSet
	out := &PauseRecord{Policy: by, Reason: ds.Annotations[v1alpha1.AnnotationReason]}
	rec, err := shed.ReadPause(ds)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	out.Attempt, out.Wave, out.Overrides = rec.Attempt, rec.Wave, rec.Overrides
	out.Since, out.WaveStarted, out.NextRestore = timeOrNil(rec.Since), timeOrNil(rec.WaveStarted), timeOrNil(rec.NextRestore)
	out.OverriddenAt = timeOrNil(shed.OverriddenAt(ds))
	if orig, err := shed.Original(ds); err == nil {
		out.Original = &orig
	}
	idx := slices.IndexFunc(in.Policies, func(p v1alpha1.LoadShedPolicy) bool { return p.Name == by })
	if idx < 0 {
		out.Restore = []string{fmt.Sprintf("Policy %s does not exist any more: no operator will restore it. "+
			"Give it back by hand: kubectl loadshed release %s/%s.", by, ds.Namespace, ds.Name)}
		return out
	}
	out.PolicyExists = true
	p := &in.Policies[idx]
	cfg, _ := policy.Resolve(&p.Spec)
	out.Waves = len(cfg.Restore.WavePercents)
	next := Next(rec, Pending{Config: cfg, Signals: p.Status.Signals, Suspended: p.Spec.Suspend,
		Restoring: restoring(in.Recorded, by, client.ObjectKeyFromObject(ds))}, in.Now)
	out.Next = &next
	out.Restore = restoreRules(rec, cfg, client.ObjectKeyFromObject(ds), p.Spec.Suspend)
	return out
}

// restoring names another DaemonSet the policy is restoring, or "".
func restoring(recorded []appsv1.DaemonSet, by string, not types.NamespacedName) string {
	for i := range recorded {
		ds := &recorded[i]
		if shed.PausedBy(ds) != by || client.ObjectKeyFromObject(ds) == not {
			continue
		}
		if rec, err := shed.ReadPause(ds); err == nil && rec.Wave > 0 {
			return client.ObjectKeyFromObject(ds).String()
		}
	}
	return ""
}

// restoreRules are the rules that would restore a paused DaemonSet, with
// the policy's figures, one sentence each.
func restoreRules(rec plan.Pause, cfg *policy.Config, key types.NamespacedName, suspended bool) []string {
	r := cfg.Restore
	var out []string
	if suspended {
		out = append(out, "The policy is suspended: nothing is restored until spec.suspend is unset.")
	}
	out = append(out, fmt.Sprintf("Every trigger must be OK (not pending, clearing or unknown) for "+
		"restore.stableFor (%v).", r.StableFor))
	if rec.Wave == 0 {
		out = append(out, "Then its restore starts, not before its backoff has passed (the record's next restore), "+
			"one DaemonSet of the policy at a time, the least loaded first.")
	}
	out = append(out, fmt.Sprintf("The restore goes in waves of %s of its nodes, each held for restore.probation (%v) "+
		"of every trigger clear; after the last, the record goes: %v at least from the first wave.",
		percents(r.WavePercents), r.Probation, time.Duration(len(r.WavePercents))*r.Probation))
	b := r.Backoff
	out = append(out, fmt.Sprintf("A trigger firing during a wave pauses it again as attempt %d: its next restore "+
		"waits %v (backoff %v × %g^(attempt-1), at most %v, ±%d%%).", rec.Attempt+1,
		plan.Backoff(b, key, rec.Attempt+1).Round(time.Second), b.Initial, b.Multiplier, b.Max, b.JitterPercent))
	out = append(out, fmt.Sprintf("By hand, at once: suspend the policy, then kubectl loadshed release %s.", key))
	return out
}

func percents(ps []int32) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%d%%", p))
	}
	return strings.Join(parts, ", ")
}

func timeOrNil(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return &metav1.Time{Time: t}
}
