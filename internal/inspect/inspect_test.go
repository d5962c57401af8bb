package inspect

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func d(s string) *metav1.Duration {
	v, _ := time.ParseDuration(s)
	return &metav1.Duration{Duration: v}
}

// testPolicy targets the telemetry namespace, fires on pod LISTs, pauses
// 3s after a throttle, and restores in two waves (50%, 100%) of 3s each
// after 3s of calm.
func testPolicy() *v1alpha1.LoadShedPolicy {
	const name = "p"
	clear := resource.MustParse("12")
	return &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.LoadShedPolicySpec{
			Interval: d("1s"),
			Targets: v1alpha1.Targets{NamespaceSelector: &v1alpha1.LabelSelector{
				MatchLabels: map[string]v1alpha1.LabelValue{corev1.LabelMetadataName: "telemetry"}}},
			Triggers: []v1alpha1.Trigger{{Name: "pod-lists", Signal: v1alpha1.SignalListRequestsPerSecond,
				Threshold: resource.MustParse("30"), ClearThreshold: &clear, For: d("2s"), Window: d("3s")}},
			Actions: v1alpha1.Actions{MinSharePercent: 50, Pause: v1alpha1.PauseAction{MaxPaused: 1, After: d("3s")}},
			Restore: v1alpha1.Restore{StableFor: d("3s"), Probation: d("3s"), WavePercents: []int32{50, 100},
				Backoff: v1alpha1.Backoff{Initial: d("5s"), Max: d("1m")}},
		},
	}
}

func withSignal(p *v1alpha1.LoadShedPolicy, state v1alpha1.TriggerState, since time.Time, value string) *v1alpha1.LoadShedPolicy {
	p.Status.Phase = v1alpha1.PhaseShedding
	if state == v1alpha1.TriggerOK {
		p.Status.Phase = v1alpha1.PhaseRestoring
	}
	p.Status.Signals = []v1alpha1.SignalStatus{{Name: "pod-lists", Signal: "listRequestsPerSecond", Value: value,
		Threshold: "30", ClearThreshold: "12", State: state, Since: &metav1.Time{Time: since}}}
	return p
}

func resolved(t *testing.T, p *v1alpha1.LoadShedPolicy) *policy.Config {
	t.Helper()
	cfg, err := policy.Resolve(&p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func agent(namespace, name string) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	ds.Spec.Template.Spec.ServiceAccountName = "agent"
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	return ds
}

// paused returns ds as the operator leaves it paused by policyName with rec.
func paused(t *testing.T, ds *appsv1.DaemonSet, policyName string, rec plan.Pause) *appsv1.DaemonSet {
	t.Helper()
	node := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-0",
		Labels: map[string]string{"kubernetes.io/os": "linux", corev1.LabelHostname: "node-0"}}}
	out, err := shed.Apply(ds, policyName, "its ServiceAccount telemetry/agent makes 90% of the requests", rec,
		[]int32{50, 100}, []corev1.Node{node})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func contains(t *testing.T, what string, got []string, want string) {
	t.Helper()
	for _, g := range got {
		if strings.Contains(g, want) {
			return
		}
	}
	t.Errorf("%s: no line says %q:\n%s", what, want, strings.Join(got, "\n"))
}

func TestNext(t *testing.T) {
	base := testPolicy()
	cfg := resolved(t, base)
	now := at(100)
	tests := []struct {
		name      string
		rec       plan.Pause
		p         *v1alpha1.LoadShedPolicy
		suspended bool
		restoring string
		wantStep  string
		wantAt    time.Time
		waiting   []string
	}{
		{"paused while the trigger fires", plan.Pause{Since: at(90)}, withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250"),
			false, "", "restore wave 1 of 2 (50% of its nodes)", time.Time{},
			[]string{"every trigger OK for restore.stableFor (3s): pod-lists is Firing"}},
		{"paused, the trigger OK for 1s of the 3s", plan.Pause{Since: at(90)}, withSignal(testPolicy(), v1alpha1.TriggerOK, at(99), "3"),
			false, "", "restore wave 1 of 2", at(102), []string{"OK since 2026-05-01T12:01:39Z (1s ago), so until 2026-05-01T12:01:42Z (in 2s)"}},
		{"paused after two relapses, its backoff longer than the calm", plan.Pause{Since: at(10), Attempt: 2, NextRestore: at(130)},
			withSignal(testPolicy(), v1alpha1.TriggerOK, at(50), "3"), false, "", "restore wave 1 of 2", at(130),
			[]string{"its backoff after 2 relapsed restores, until 2026-05-01T12:02:10Z (in 30s)"}},
		{"paused, calm and past its backoff: due", plan.Pause{Since: at(10), NextRestore: at(60)},
			withSignal(testPolicy(), v1alpha1.TriggerOK, at(50), "3"), false, "", "restore wave 1 of 2", at(60), nil},
		{"in wave 1, on probation", plan.Pause{Since: at(10), Wave: 1, WaveStarted: at(99)},
			withSignal(testPolicy(), v1alpha1.TriggerOK, at(50), "3"), false, "", "wave 2 of 2 (100% of its nodes)", at(102),
			[]string{"the probation of wave 1 (restore.probation 3s of every trigger clear), until"}},
		{"in the last wave, past its probation", plan.Pause{Since: at(10), Wave: 2, WaveStarted: at(90)},
			withSignal(testPolicy(), v1alpha1.TriggerOK, at(50), "3"), false, "", "complete the restore", at(93), nil},
		{"in a wave when the trigger fires", plan.Pause{Since: at(10), Wave: 1, WaveStarted: at(90)},
			withSignal(testPolicy(), v1alpha1.TriggerFiring, at(95), "90"), false, "", "wave 2 of 2", time.Time{},
			[]string{"a trigger firing during a wave pauses it again (attempt 1)"}},
		{"suspended", plan.Pause{Since: at(10), NextRestore: at(60)},
			withSignal(testPolicy(), v1alpha1.TriggerOK, at(50), "3"), true, "", "restore wave 1 of 2", at(60),
			[]string{"the policy is suspended (spec.suspend)"}},
		{"behind another restore", plan.Pause{Since: at(10)}, withSignal(testPolicy(), v1alpha1.TriggerOK, at(50), "3"),
			false, "telemetry/other", "restore wave 1 of 2", at(53), []string{"the restore of telemetry/other, in progress"}},
		{"never evaluated", plan.Pause{Since: at(10)}, testPolicy(), false, "", "restore wave 1 of 2", time.Time{},
			[]string{"the policy has not been evaluated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Next(tt.rec, Pending{Config: cfg, Signals: tt.p.Status.Signals, Suspended: tt.suspended,
				Restoring: tt.restoring}, now)
			if !strings.HasPrefix(got.Step, tt.wantStep) {
				t.Errorf("step %q, want %q", got.Step, tt.wantStep)
			}
			if (got.At == nil) != tt.wantAt.IsZero() || got.At != nil && !got.At.Time.Equal(tt.wantAt) {
				t.Errorf("at %v, want %v", got.At, tt.wantAt)
			}
			if got.Due != (len(tt.waiting) == 0) || len(got.Waiting) < len(tt.waiting) {
				t.Errorf("due %v, waiting %q; want waiting %q", got.Due, got.Waiting, tt.waiting)
			}
			for _, w := range tt.waiting {
				contains(t, "waiting", got.Waiting, w)
			}
		})
	}
}

func event(reason string, when time.Time, count int32) eventsv1.Event {
	e := eventsv1.Event{Reason: reason, Type: corev1.EventTypeNormal, Note: reason + " note",
		EventTime: metav1.NewMicroTime(when)}
	if count > 1 {
		e.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(when.Add(time.Minute))}
	}
	return e
}

func TestStatusReadsTheRecordsOfThePolicysPauses(t *testing.T) {
	p := withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250")
	p.Status.Actions = []v1alpha1.ActionStatus{{Kind: v1alpha1.ActionThrottle, Target: "telemetry/agent"}}
	mine := paused(t, agent("telemetry", "agent"), "p", plan.Pause{Since: at(90), Attempt: 1, NextRestore: at(200)})
	other := paused(t, agent("telemetry", "other"), "q", plan.Pause{Since: at(90)})
	events := []eventsv1.Event{event("Paused", at(90), 1), event("TriggerFired", at(80), 1), event("Throttled", at(85), 3)}

	got := Status(p, []appsv1.DaemonSet{*other, *mine}, events, 2, at(100))
	if got.Name != "p" || got.Phase != v1alpha1.PhaseShedding || got.Source != v1alpha1.SourceAPIServer ||
		got.Interval.Duration != time.Second || got.Invalid != "" || len(got.Triggers) != 1 || len(got.Actions) != 1 {
		t.Errorf("status %+v", got)
	}
	if len(got.Paused) != 1 {
		t.Fatalf("paused %+v, want telemetry/agent only", got.Paused)
	}
	pd := got.Paused[0]
	if pd.DaemonSet != "telemetry/agent" || pd.Attempt != 1 || pd.Wave != 0 || pd.Waves != 2 || !pd.Since.Equal(ptrTime(at(90))) ||
		!strings.Contains(pd.Reason, "90% of the requests") || pd.Next.At == nil || !pd.Next.At.Equal(ptrTime(at(200))) {
		t.Errorf("paused %+v", pd)
	}
	// The last two by when they last happened: the throttle's series ran until 85s+1m.
	if len(got.Events) != 2 || got.Events[0].Reason != "Paused" || got.Events[1].Reason != "Throttled" ||
		got.Events[1].Count != 3 || !got.Events[1].Time.Equal(ptrTime(at(145))) {
		t.Errorf("events %+v", got.Events)
	}
}

func ptrTime(t time.Time) *metav1.Time { return &metav1.Time{Time: t} }

func TestStatusSaysWhenTheRecordCannotBeRead(t *testing.T) {
	ds := paused(t, agent("telemetry", "agent"), "p", plan.Pause{Since: at(90)})
	ds.Annotations[v1alpha1.AnnotationAttempt] = "many"
	got := Status(testPolicy(), []appsv1.DaemonSet{*ds}, nil, 10, at(100))
	if len(got.Paused) != 1 || !strings.Contains(got.Paused[0].Error, v1alpha1.AnnotationAttempt) {
		t.Errorf("paused %+v, want the record's error", got.Paused)
	}
}

func whyInput(ds *appsv1.DaemonSet, policies ...*v1alpha1.LoadShedPolicy) WhyInput {
	in := WhyInput{DaemonSet: ds, Now: at(100),
		Operator: types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed-controller-manager"},
		NamespaceLabels: map[string]labels.Set{
			"telemetry": {corev1.LabelMetadataName: "telemetry"}, "payments": {corev1.LabelMetadataName: "payments"}}}
	for _, p := range policies {
		in.Policies = append(in.Policies, *p)
	}
	if shed.PausedBy(ds) != "" {
		in.Recorded = []appsv1.DaemonSet{*ds}
	}
	return in
}

func TestExplainAPausedDaemonSet(t *testing.T) {
	p := withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250")
	ds := paused(t, agent("telemetry", "agent"), "p", plan.Pause{Since: at(90), Attempt: 1, NextRestore: at(200)})
	got := Explain(whyInput(ds, p))
	if !got.Paused || got.Pause == nil || got.ServiceAccount != "telemetry/agent" ||
		!strings.HasPrefix(got.Summary, "telemetry/agent is paused by policy p since 2026-05-01T12:01:30Z") {
		t.Fatalf("explanation %+v", got)
	}
	rec := got.Pause
	if !rec.PolicyExists || rec.Attempt != 1 || rec.Wave != 0 || rec.Waves != 2 || !rec.NextRestore.Equal(ptrTime(at(200))) ||
		rec.Original == nil || rec.Original.NodeSelector["kubernetes.io/os"] != "linux" || rec.Next == nil || rec.Next.Due {
		t.Errorf("record %+v", rec)
	}
	contains(t, "restore", rec.Restore, "Every trigger must be OK (not pending, clearing or unknown) for restore.stableFor (3s)")
	contains(t, "restore", rec.Restore, "waves of 50%, 100% of its nodes, each held for restore.probation (3s)")
	contains(t, "restore", rec.Restore, "pauses it again as attempt 2: its next restore waits")
	contains(t, "restore", rec.Restore, "kubectl loadshed release telemetry/agent")
	contains(t, "next", rec.Next.Waiting, "pod-lists is Firing")
	if len(got.Policies) != 1 || !got.Policies[0].Selects || len(got.Policies[0].Triggers) != 1 {
		t.Errorf("policies %+v", got.Policies)
	}
}

func TestExplainAPauseWhosePolicyIsGone(t *testing.T) {
	ds := paused(t, agent("telemetry", "agent"), "gone", plan.Pause{Since: at(90)})
	got := Explain(whyInput(ds))
	if got.Pause == nil || got.Pause.PolicyExists || len(got.Pause.Restore) != 1 ||
		!strings.Contains(got.Pause.Restore[0], "does not exist any more") {
		t.Errorf("explanation %+v", got.Pause)
	}
}

func TestExplainADaemonSetNotPaused(t *testing.T) {
	firing := withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250")
	protected := agent("telemetry", "canary")
	protected.Labels = map[string]string{v1alpha1.LabelProtected: "true"}
	offending := func(p *v1alpha1.LoadShedPolicy, share int32) *v1alpha1.LoadShedPolicy {
		p.Status.Offenders = []v1alpha1.OffenderStatus{{User: "system:serviceaccount:telemetry:agent",
			ServiceAccount: "telemetry/agent", InFlightSharePercent: share, SeatSharePercent: share}}
		return p
	}
	throttled := offending(withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250"), 90)
	throttled.Status.Actions = []v1alpha1.ActionStatus{{Kind: v1alpha1.ActionThrottle, Target: "telemetry/agent",
		Since: ptrTime(at(98))}}
	suspended := testPolicy()
	suspended.Spec.Suspend = true
	dryRun := testPolicy()
	dryRun.Spec.DryRun = true
	noPause := testPolicy()
	noPause.Spec.Actions.Pause.Enabled = new(bool)
	tests := []struct {
		name    string
		ds      *appsv1.DaemonSet
		policy  *v1alpha1.LoadShedPolicy
		summary string
		says    []string
	}{
		{"in a namespace no policy selects", agent("payments", "agent"), firing,
			"payments/agent is not paused: no policy selects it.",
			[]string{"does not select it: its namespace payments is not one spec.targets.namespaceSelector selects."}},
		{"protected", protected, firing, "telemetry/canary is not paused: it is protected (labelled loadshed.io/protected).",
			[]string{"never paused, and its ServiceAccount never throttled"}},
		{"selected, no trigger firing", agent("telemetry", "agent"), withSignal(testPolicy(), v1alpha1.TriggerOK, at(80), "3"),
			"telemetry/agent is not paused: policies p select it", []string{"No trigger fires"}},
		{"selected, firing, not an offender", agent("telemetry", "agent"), firing, "policies p select it",
			[]string{"Triggers: pod-lists is Firing (listRequestsPerSecond 250, threshold 30, clears at or below 12)",
				"is not among the offenders the policy measured"}},
		{"an offender below the share", agent("telemetry", "agent"), offending(withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250"), 30),
			"policies p select it", []string{"30% of the requests the API servers hold", "below the policy's spec.actions.minSharePercent (50%)"}},
		{"throttled, the pause not yet due", agent("telemetry", "agent"), throttled, "policies p select it",
			[]string{"at or above the policy's spec.actions.minSharePercent (50%)",
				"It throttles telemetry/agent since 2026-05-01T12:01:38Z (2s ago)", "at 2026-05-01T12:01:41Z at the earliest"}},
		{"suspended", agent("telemetry", "agent"), suspended, "no policy that selects it may pause", []string{"is suspended (spec.suspend)"}},
		{"dryRun", agent("telemetry", "agent"), dryRun, "no policy that selects it may pause", []string{"is in dryRun"}},
		{"pausing off", agent("telemetry", "agent"), noPause, "no policy that selects it may pause", []string{"pausing is off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(whyInput(tt.ds, tt.policy))
			if got.Paused || got.Pause != nil || !strings.Contains(got.Summary, tt.summary) {
				t.Errorf("summary %q, want %q", got.Summary, tt.summary)
			}
			if len(got.Policies) != 1 {
				t.Fatalf("policies %+v", got.Policies)
			}
			for _, w := range tt.says {
				contains(t, "says", got.Policies[0].Says, w)
			}
		})
	}
}

func TestExplainMaxPausedAndTheLastRestore(t *testing.T) {
	p := withSignal(testPolicy(), v1alpha1.TriggerFiring, at(80), "250")
	other := paused(t, agent("telemetry", "other"), "p", plan.Pause{Since: at(90)})
	ds, err := shed.Restore(paused(t, agent("telemetry", "agent"), "p", plan.Pause{Since: at(10)}),
		&plan.Restoration{At: at(60), Attempt: 2})
	if err != nil {
		t.Fatal(err)
	}
	in := whyInput(ds, p)
	in.Recorded = []appsv1.DaemonSet{*other, *ds}
	got := Explain(in)
	contains(t, "says", got.Policies[0].Says, "1 DaemonSet is paused already, by this policy or others: no more while spec.actions.pause.maxPaused is 1")
	if got.LastRestore == nil || got.LastRestore.Policy != "p" || got.LastRestore.Attempt != 2 || !got.LastRestore.At.Equal(ptrTime(at(60))) {
		t.Errorf("last restore %+v", got.LastRestore)
	}
}
