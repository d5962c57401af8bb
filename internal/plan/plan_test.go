package plan

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/policy"
)

var t0 = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func config() *policy.Config {
	return &policy.Config{
		Interval: 10 * time.Second,
		MinShare: 0.2,
		Throttle: policy.Throttle{Enabled: true},
		Pause:    policy.Pause{Enabled: true, MaxPaused: 2, After: time.Minute},
		Restore: policy.Restore{
			StableFor: 2 * time.Minute, Probation: time.Minute, WavePercents: []int32{10, 50, 100},
			Backoff: policy.Backoff{Initial: time.Minute, Multiplier: 2, Max: 10 * time.Minute},
		},
	}
}

func telemetry(share float64, ds ...DaemonSet) Offender {
	if len(ds) == 0 {
		ds = []DaemonSet{{Key: nn("telemetry/agent")}}
	}
	return Offender{ServiceAccount: nn("telemetry/agent"), Share: share, RequestsPerSecond: share * 1000, DaemonSets: ds}
}

func kinds(p Plan) string {
	out := make([]string, 0, len(p.Changes))
	for _, a := range p.Changes {
		out = append(out, string(a.Kind)+" "+a.Target.String())
	}
	return strings.Join(out, "; ")
}

// nn reads "namespace/name": the tables read better with strings.
func nn(s string) types.NamespacedName {
	ns, name, _ := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

// names returns a map's keys, sorted, as "namespace/name".
func names[V any](m map[types.NamespacedName]V) string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k.String())
	}
	return strings.Join(out, ",")
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name        string
		mutate      func(*policy.Config)
		in          Input
		wantActions string
		wantPaused  []string
		wantThrottl []string
		wantBlocked string
	}{
		{
			name:        "a firing trigger throttles an offender above the share threshold first",
			in:          Input{Now: at(0), Firing: true, Offenders: []Offender{telemetry(0.8)}},
			wantActions: "Throttled telemetry/agent",
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name: "an offender under the share threshold is left alone",
			in: Input{Now: at(0), Firing: true, Offenders: []Offender{
				{ServiceAccount: nn("payments/web"), Share: 0.1, DaemonSets: []DaemonSet{{Key: nn("payments/web")}}}}},
			wantActions: "",
		},
		{
			name: "a few requests that hold most of the seats make an offender",
			in: Input{Now: at(0), Firing: true, Offenders: []Offender{
				{ServiceAccount: nn("telemetry/agent"), Share: 0.05, SeatShare: 0.9, RequestsPerSecond: 5, DaemonSets: []DaemonSet{{Key: nn("telemetry/agent")}}}}},
			wantActions: "Throttled telemetry/agent",
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name: "a throttled offender is paused once throttling had pause.after to work",
			in: Input{Now: at(60), Firing: true, Offenders: []Offender{telemetry(0.7)},
				Throttled: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(0)}},
			wantActions: "Paused telemetry/agent",
			wantPaused:  []string{"telemetry/agent"},
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name: "a throttled offender is not paused before pause.after",
			in: Input{Now: at(30), Firing: true, Offenders: []Offender{telemetry(0.7)},
				Throttled: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(0)}},
			wantActions: "",
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name:        "with pause.after 0 an offender is throttled and paused at once",
			mutate:      func(c *policy.Config) { c.Pause.After = 0 },
			in:          Input{Now: at(0), Firing: true, Offenders: []Offender{telemetry(0.7)}},
			wantActions: "Throttled telemetry/agent; Paused telemetry/agent",
			wantPaused:  []string{"telemetry/agent"},
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name:        "with throttling off an offender is paused at once",
			mutate:      func(c *policy.Config) { c.Throttle.Enabled = false },
			in:          Input{Now: at(0), Firing: true, Offenders: []Offender{telemetry(0.7)}},
			wantActions: "Paused telemetry/agent",
			wantPaused:  []string{"telemetry/agent"},
		},
		{
			name:   "a protected DaemonSet is never paused, nor its ServiceAccount throttled",
			mutate: func(c *policy.Config) { c.Pause.After = 0 },
			in: Input{Now: at(0), Firing: true,
				Offenders: []Offender{telemetry(0.7, DaemonSet{Key: nn("kube-system/kube-proxy"), Protected: "system-node-critical"})}},
			wantActions: "",
			wantBlocked: "would throttle telemetry/agent, but it runs kube-system/kube-proxy, which is protected (system-node-critical)\n" +
				"would pause kube-system/kube-proxy, but it is protected (system-node-critical)",
		},
		{
			name:   "a ServiceAccount that runs no DaemonSet (a Deployment's) is throttled, and nothing is paused",
			mutate: func(c *policy.Config) { c.Pause.After = 0 },
			in: Input{Now: at(0), Firing: true,
				Offenders: []Offender{{User: "system:serviceaccount:shop:api", ServiceAccount: nn("shop/api"), Share: 0.8}}},
			wantActions: "Throttled shop/api",
			wantThrottl: []string{"shop/api"},
		},
		{
			name:   "a client that is not a ServiceAccount is named, and neither throttled nor paused",
			mutate: func(c *policy.Config) { c.Pause.After = 0 },
			in: Input{Now: at(0), Firing: true,
				Offenders: []Offender{{User: "system:node:node-7", SeatShare: 0.9}}},
			wantActions: "",
			wantBlocked: "would throttle system:node:node-7, but it is not a ServiceAccount",
		},
		{
			name: "a client below minShare is left alone, whatever it is",
			in: Input{Now: at(0), Firing: true,
				Offenders: []Offender{{User: "alice", Share: 0.1, SeatShare: 0.19}}},
			wantActions: "",
		},
		{
			name: "an offender that cannot be throttled is reported, not claimed",
			in: Input{Now: at(30), Firing: true, FiringSince: at(0),
				Offenders: []Offender{func() Offender { o := telemetry(0.8); o.CannotThrottle = "no room"; return o }()}},
			wantActions: "",
			wantBlocked: "would throttle telemetry/agent, but no room",
		},
		{
			name: "and is paused pause.after after the triggers started firing",
			in: Input{Now: at(60), Firing: true, FiringSince: at(0),
				Offenders: []Offender{func() Offender { o := telemetry(0.8); o.CannotThrottle = "no room"; return o }()}},
			wantActions: "Paused telemetry/agent",
			wantPaused:  []string{"telemetry/agent"},
			wantBlocked: "would throttle telemetry/agent, but no room",
		},
		{
			name:   "a DaemonSet another policy paused is left to it",
			mutate: func(c *policy.Config) { c.Pause.After = 0; c.Throttle.Enabled = false },
			in: Input{Now: at(0), Firing: true, Offenders: []Offender{telemetry(0.7)},
				PausedByOthers: map[types.NamespacedName]string{nn("telemetry/agent"): "other-policy"}},
			wantActions: "",
			wantBlocked: "policy other-policy paused it first",
		},
		{
			name:   "never more than maxPaused, most load first",
			mutate: func(c *policy.Config) { c.Pause.After = 0; c.Throttle.Enabled = false; c.Pause.MaxPaused = 1 },
			in: Input{Now: at(0), Firing: true, Offenders: []Offender{
				{ServiceAccount: nn("a/a"), Share: 0.5, RequestsPerSecond: 500, DaemonSets: []DaemonSet{{Key: nn("a/a")}}},
				{ServiceAccount: nn("b/b"), Share: 0.3, RequestsPerSecond: 300, DaemonSets: []DaemonSet{{Key: nn("b/b")}}},
			}},
			wantActions: "Paused a/a",
			wantPaused:  []string{"a/a"},
			wantBlocked: "would pause b/b, but 1 DaemonSets are paused already, 0 of them by other policies (maxPaused 1)",
		},
		{
			name: "a ServiceAccount another policy throttles is left to it",
			in: Input{Now: at(0), Firing: true, FiringSince: at(0), Offenders: []Offender{telemetry(0.8)},
				ThrottledByOthers: map[types.NamespacedName]string{nn("telemetry/agent"): "first"}},
			wantActions: "",
			wantBlocked: "would throttle telemetry/agent, but policy first throttles it already",
		},
		{
			name:   "maxPaused counts what other policies paused",
			mutate: func(c *policy.Config) { c.Pause.After = 0; c.Throttle.Enabled = false; c.Pause.MaxPaused = 2 },
			in: Input{Now: at(0), Firing: true, Offenders: []Offender{telemetry(0.7)},
				PausedByOthers: map[types.NamespacedName]string{nn("x/x"): "p2", nn("y/y"): "p2"}},
			wantActions: "",
			wantBlocked: "would pause telemetry/agent, but 2 DaemonSets are paused already, 2 of them by other policies (maxPaused 2)",
		},
		{
			name: "a trigger firing during probation re-pauses with a longer backoff",
			in: Input{Now: at(400), Firing: true,
				Paused:    map[types.NamespacedName]Pause{nn("telemetry/agent"): {Since: at(0), Wave: 2, WaveStarted: at(380), Attempt: 1}},
				Throttled: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(0)}},
			wantActions: "Repaused telemetry/agent",
			wantPaused:  []string{"telemetry/agent"},
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name: "nothing is restored before the triggers were clear for stableFor",
			in: Input{Now: at(100), ClearSince: at(0),
				Paused: map[types.NamespacedName]Pause{nn("telemetry/agent"): {Since: at(-300)}}},
			wantActions: "",
			wantPaused:  []string{"telemetry/agent"},
		},
		{
			name: "nothing is restored while a trigger is pending, clearing or unknown",
			in: Input{Now: at(1000),
				Paused: map[types.NamespacedName]Pause{nn("telemetry/agent"): {Since: at(-300)}}},
			wantActions: "",
			wantPaused:  []string{"telemetry/agent"},
		},
		{
			name: "after stableFor the least loaded paused DaemonSet starts its restore",
			in: Input{Now: at(120), ClearSince: at(0), Paused: map[types.NamespacedName]Pause{
				nn("a/heavy"): {Since: at(-300), Load: 900},
				nn("b/light"): {Since: at(-300), Load: 100},
			}},
			wantActions: "RestoreStarted b/light",
			wantPaused:  []string{"a/heavy", "b/light"},
		},
		{
			name: "a restore waits for its backoff",
			in: Input{Now: at(120), ClearSince: at(0), Paused: map[types.NamespacedName]Pause{
				nn("telemetry/agent"): {Since: at(-300), Attempt: 1, NextRestore: at(200)}}},
			wantActions: "",
			wantPaused:  []string{"telemetry/agent"},
		},
		{
			name: "a wave advances after its probation, one DaemonSet at a time",
			in: Input{Now: at(200), ClearSince: at(0), Paused: map[types.NamespacedName]Pause{
				nn("a/a"): {Since: at(-300), Wave: 1, WaveStarted: at(130)},
				nn("b/b"): {Since: at(-300)},
			}},
			wantActions: "WaveAdvanced a/a",
			wantPaused:  []string{"a/a", "b/b"},
		},
		{
			name: "a wave is held during its probation",
			in: Input{Now: at(150), ClearSince: at(0), Paused: map[types.NamespacedName]Pause{
				nn("a/a"): {Since: at(-300), Wave: 1, WaveStarted: at(130)}}},
			wantActions: "",
			wantPaused:  []string{"a/a"},
		},
		{
			name: "a gap in the data after the wave began restarts its probation",
			// Probation is a minute: 70s after the wave began, but every
			// trigger has been seen clear for 30s only.
			in: Input{Now: at(200), ClearSince: at(170), Paused: map[types.NamespacedName]Pause{
				nn("a/a"): {Since: at(-300), Wave: 1, WaveStarted: at(130)}}},
			wantActions: "",
			wantPaused:  []string{"a/a"},
		},
		{
			name: "the last wave's probation completes the restore",
			in: Input{Now: at(400), ClearSince: at(0), Paused: map[types.NamespacedName]Pause{
				nn("a/a"): {Since: at(-300), Wave: 3, WaveStarted: at(330)}},
				Throttled: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(-400)}},
			wantActions: "Restored a/a",
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name: "throttles stay until the triggers stayed clear for stableFor after the last restore",
			in: Input{Now: at(450), ClearSince: at(0), LastRestored: at(400),
				Throttled: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(-400)}},
			wantActions: "",
			wantThrottl: []string{"telemetry/agent"},
		},
		{
			name: "then the throttles go",
			in: Input{Now: at(520), ClearSince: at(0), LastRestored: at(400),
				Throttled: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(-400)}},
			wantActions: "Unthrottled telemetry/agent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config()
			if tt.mutate != nil {
				tt.mutate(cfg)
			}
			tt.in.Config = cfg
			p := Decide(tt.in)
			if got := kinds(p); got != tt.wantActions {
				t.Errorf("actions = %q, want %q", got, tt.wantActions)
			}
			if got := names(p.Paused); got != strings.Join(tt.wantPaused, ",") {
				t.Errorf("paused = %v, want %v", got, tt.wantPaused)
			}
			if got := names(p.Throttled); got != strings.Join(tt.wantThrottl, ",") {
				t.Errorf("throttled = %v, want %v", got, tt.wantThrottl)
			}
			blocked := make([]string, 0, len(p.Blocked))
			for _, b := range p.Blocked {
				blocked = append(blocked, b.String())
			}
			if got := strings.Join(blocked, "\n"); !strings.Contains(got, tt.wantBlocked) || (tt.wantBlocked == "" && got != "") {
				t.Errorf("blocked = %v, want it to say %q", p.Blocked, tt.wantBlocked)
			}
			if p.RequeueAfter <= 0 || p.RequeueAfter > cfg.Interval {
				t.Errorf("requeue after %v, want within (0, interval]", p.RequeueAfter)
			}
		})
	}
}

func TestARepauseWaitsLongerEachTime(t *testing.T) {
	cfg := config()
	cfg.Restore.Backoff.JitterPercent = 10
	prev := time.Duration(0)
	for attempt := 1; attempt <= 6; attempt++ {
		d := Backoff(cfg.Restore.Backoff, nn("telemetry/agent"), attempt)
		if d < prev && d < time.Duration(float64(cfg.Restore.Backoff.Max)*0.9) {
			t.Errorf("attempt %d waits %v, less than attempt %d's %v", attempt, d, attempt-1, prev)
		}
		if d > time.Duration(float64(cfg.Restore.Backoff.Max)*1.1) {
			t.Errorf("attempt %d waits %v, past max %v plus jitter", attempt, d, cfg.Restore.Backoff.Max)
		}
		prev = d
	}
	if a, b := Backoff(cfg.Restore.Backoff, nn("a/a"), 2), Backoff(cfg.Restore.Backoff, nn("a/a"), 2); a != b {
		t.Errorf("the jitter differs between two computations: %v, %v", a, b)
	}
	cfg.Restore.Backoff.JitterPercent = 0
	if d := Backoff(cfg.Restore.Backoff, nn("a/a"), 3); d != 4*time.Minute {
		t.Errorf("without jitter attempt 3 waits %v, want 1m x 2^2", d)
	}
}

func TestTheRepauseRecordsAttemptAndNextRestore(t *testing.T) {
	cfg := config()
	cfg.Restore.Backoff.JitterPercent = 0
	p := Decide(Input{Config: cfg, Now: at(400), Firing: true,
		Paused: map[types.NamespacedName]Pause{nn("telemetry/agent"): {Since: at(0), Wave: 2, WaveStarted: at(380), Attempt: 1}}})
	rec := p.Paused[nn("telemetry/agent")]
	if rec.Attempt != 2 || rec.Wave != 0 || !rec.NextRestore.Equal(at(400).Add(2*time.Minute)) {
		t.Errorf("after a relapse the record is %+v; want attempt 2, wave 0, next restore in 2m", rec)
	}
}

func TestAnOverriddenPauseIsPutBackAtMostOncePerBackoffStep(t *testing.T) {
	cfg := config()
	cfg.Restore.Backoff.JitterPercent = 0 // the step for attempt 1 is exactly initial: 1m
	paused := map[types.NamespacedName]Pause{nn("telemetry/agent"): {Since: at(0)}}
	tests := []struct {
		name        string
		overridden  map[types.NamespacedName]time.Time
		now         time.Time
		wantPutBack bool
		wantHeld    bool
	}{
		{"a pause removed for the first time is put back at once",
			map[types.NamespacedName]time.Time{nn("telemetry/agent"): {}}, at(100), true, false},
		{"removed again within the step, it is held",
			map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(80)}, at(100), false, true},
		{"removed again after the step, it is put back",
			map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(30)}, at(100), true, false},
		{"a pause nobody removed is left alone", nil, at(100), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(Input{Config: cfg, Now: tt.now, Firing: true, Paused: paused, Overridden: tt.overridden})
			if got := len(p.PutBack) == 1; got != tt.wantPutBack {
				t.Errorf("put back = %v, want %v", p.PutBack, tt.wantPutBack)
			}
			if got := len(p.Held) == 1; got != tt.wantHeld {
				t.Errorf("held = %v, want %v", p.Held, tt.wantHeld)
			}
			if tt.wantHeld && p.RequeueAfter > 10*time.Second {
				t.Errorf("requeue after %v, want at most the interval", p.RequeueAfter)
			}
		})
	}
}

// TestARelapseAfterAFullRestoreKeepsItsAttempt: a DaemonSet paused again
// within the cool-down (backoff max) after its last restore continues its
// backoff; after the cool-down it starts over.
func TestARelapseAfterAFullRestoreKeepsItsAttempt(t *testing.T) {
	cfg := config()
	cfg.Pause.After = 0
	cfg.Restore.Backoff.JitterPercent = 0
	tests := []struct {
		name        string
		restoredAt  time.Time
		wantAttempt int
		wantNext    time.Time
	}{
		{"just after the last wave", at(-5), 3, at(0).Add(4 * time.Minute)},
		{"within the cool-down", at(-9 * 60), 3, at(0).Add(4 * time.Minute)},
		{"after the cool-down", at(-11 * 60), 0, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(Input{Config: cfg, Now: at(0), Firing: true, Offenders: []Offender{telemetry(0.8)},
				Throttled:    map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(-60)},
				Restorations: map[types.NamespacedName]Restoration{nn("telemetry/agent"): {At: tt.restoredAt, Attempt: 2}}})
			rec, ok := p.Paused[nn("telemetry/agent")]
			if !ok {
				t.Fatalf("not paused: %s", kinds(p))
			}
			if rec.Attempt != tt.wantAttempt || !rec.NextRestore.Equal(tt.wantNext) {
				t.Errorf("record %+v, want attempt %d and next restore %v", rec, tt.wantAttempt, tt.wantNext)
			}
		})
	}
}

// TestEachPutBackWaitsLonger: a pause removed again and again (a GitOps
// tool re-applying the manifest) is put back after a step that grows.
func TestEachPutBackWaitsLonger(t *testing.T) {
	cfg := config()
	cfg.Restore.Backoff.JitterPercent = 0
	ds := nn("telemetry/agent")
	paused := map[types.NamespacedName]Pause{ds: {Since: at(0)}}
	var last time.Time
	var putBacks []time.Duration
	for now := at(0); now.Before(at(30 * 60)); now = now.Add(5 * time.Second) {
		p := Decide(Input{Config: cfg, Now: now, Firing: true, Paused: paused,
			Overridden: map[types.NamespacedName]time.Time{ds: last}})
		if len(p.PutBack) == 1 {
			if !last.IsZero() {
				putBacks = append(putBacks, now.Sub(last))
			}
			last = now
		}
		paused = p.Paused
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute}
	if len(putBacks) < len(want) {
		t.Fatalf("put back after %v, want at least %v", putBacks, want)
	}
	for i, w := range want {
		if putBacks[i] != w {
			t.Errorf("put-back %d came %v after the one before, want %v (all: %v)", i+2, putBacks[i], w, putBacks)
		}
	}
	if got := paused[ds].Overrides; got != len(putBacks)+1 {
		t.Errorf("the record counts %d overrides, want %d", got, len(putBacks)+1)
	}
}

// TestARefusedChangeIsTakenBack: what the API server refused is neither in
// the plan's sets nor among its changes, and is reported as blocked; what
// was in place before stays.
func TestARefusedChangeIsTakenBack(t *testing.T) {
	cfg := config()
	cfg.Pause.After = 0
	in := Input{Config: cfg, Now: at(0), Firing: true, FiringSince: at(0),
		Offenders: []Offender{telemetry(0.8)},
		Paused:    map[types.NamespacedName]Pause{nn("old/one"): {Since: at(-600), Wave: 1, WaveStarted: at(-30)}}}
	p := Decide(in)
	if got := kinds(p); got != "Repaused old/one; Throttled telemetry/agent; Paused telemetry/agent" {
		t.Fatalf("changes %q", got)
	}
	p.Refuse(in, Block{Kind: Throttled, Target: nn("telemetry/agent"), Reason: "the API server refused: denied"})
	p.Refuse(in, Block{Kind: Repaused, Target: nn("old/one"), Reason: "the API server refused: denied"})
	if got := kinds(p); got != "Paused telemetry/agent" {
		t.Errorf("changes after the refusals %q, want only the pause that was made", got)
	}
	if _, ok := p.Throttled[nn("telemetry/agent")]; ok {
		t.Error("the refused throttle is still in the plan")
	}
	if rec := p.Paused[nn("old/one")]; rec.Wave != 1 || rec.Attempt != 0 {
		t.Errorf("the refused re-pause changed the record in the plan: %+v", rec)
	}
	if len(p.Blocked) != 2 || p.Blocked[0].String() != "would throttle telemetry/agent, but the API server refused: denied" ||
		p.Blocked[1].String() != "would pause old/one, but the API server refused: denied" {
		t.Errorf("blocked %v", p.Blocked)
	}
}

// TestAFailedChangeIsTakenBackUnblocked: a write that failed otherwise (a
// timeout, retried by a later loop) leaves the plan as a refusal does,
// but is not reported as blocked.
func TestAFailedChangeIsTakenBackUnblocked(t *testing.T) {
	cfg := config()
	cfg.Pause.After = 0
	in := Input{Config: cfg, Now: at(0), Firing: true, FiringSince: at(0), Offenders: []Offender{telemetry(0.8)}}
	p := Decide(in)
	p.TakeBack(in, Paused, nn("telemetry/agent"))
	if got := kinds(p); got != "Throttled telemetry/agent" {
		t.Errorf("changes after the failed pause %q, want only the throttle", got)
	}
	if _, ok := p.Paused[nn("telemetry/agent")]; ok || len(p.Blocked) != 0 {
		t.Errorf("the failed pause is in the plan (%v) or blocked (%v)", ok, p.Blocked)
	}
}

// TestARefusedThrottleDoesNotHoldThePauseBack: tried again every loop and
// refused every time, a throttle's pause clock runs from the first refusal.
func TestARefusedThrottleDoesNotHoldThePauseBack(t *testing.T) {
	cfg := config() // pause.after 1m
	in := Input{Config: cfg, Now: at(70), Firing: true, FiringSince: at(0), Offenders: []Offender{telemetry(0.8)},
		ThrottleBlockedSince: map[types.NamespacedName]time.Time{nn("telemetry/agent"): at(5)}}
	p := Decide(in)
	if _, ok := p.Paused[nn("telemetry/agent")]; !ok {
		t.Errorf("not paused 65s after the throttle was first refused: %s", kinds(p))
	}
	in.ThrottleBlockedSince = nil
	if p := Decide(in); len(p.Paused) != 0 {
		t.Errorf("paused at once by a throttle made now: %s", kinds(p))
	}
}

func TestAWaveIsDescribedByTheNodesItRunsOn(t *testing.T) {
	percents := []int32{10, 25, 50, 100}
	sizes := []WaveSize{{Nodes: 500, Eligible: 5000}, {Nodes: 952, Eligible: 5000, Capped: true},
		{Nodes: 952, Eligible: 5000, Capped: true}, {Nodes: 5000, Eligible: 5000}}
	tests := []struct {
		name  string
		wave  int
		sizes []WaveSize
		want  string
	}{
		{"a wave that runs on its percentage", 1, sizes, "wave 1 of 4: 500 of 5,000 nodes (10%)"},
		{"a capped wave says so, with its real share", 3, sizes, "wave 3 of 4: 952 of 5,000 nodes (19%), capped at the wave size limit"},
		{"the last wave", 4, sizes, "wave 4 of 4: 5,000 of 5,000 nodes (100%)"},
		{"a share under 1%", 1, []WaveSize{{Nodes: 952, Eligible: 120000, Capped: true}},
			"wave 1 of 4: 952 of 120,000 nodes (<1%), capped at the wave size limit"},
		{"a wave with no eligible node", 1, []WaveSize{{}}, "wave 1 of 4: 0 of 0 nodes (0%)"},
		{"without sizes (the nodes could not be read), its percentage", 2, nil, "wave 2 of 4: 25% of its nodes"},
		{"a wave beyond the policy's (its waves changed)", 5, sizes, "wave 5 of 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DescribeWave(tt.wave, percents, tt.sizes); got != tt.want {
				t.Errorf("DescribeWave(%d) = %q, want %q", tt.wave, got, tt.want)
			}
		})
	}
}

// TestARestoreStepSaysHowManyNodesItsWaveRunsOn: the reasons of the
// RestoreStarted and WaveAdvanced changes, which their events carry, give
// the wave's nodes as counted for the DaemonSet.
func TestARestoreStepSaysHowManyNodesItsWaveRunsOn(t *testing.T) {
	key := nn("telemetry/agent")
	sizes := map[types.NamespacedName][]WaveSize{key: {{Nodes: 500, Eligible: 5000}, {Nodes: 952, Eligible: 5000, Capped: true},
		{Nodes: 5000, Eligible: 5000}}}
	tests := []struct {
		name  string
		rec   Pause
		sizes map[types.NamespacedName][]WaveSize
		want  string
	}{
		{"a restore starts", Pause{Since: at(-300)}, sizes,
			"triggers clear for 2m0s; attempt 1, wave 1 of 3: 500 of 5,000 nodes (10%)"},
		{"a wave advances to a capped one", Pause{Since: at(-300), Wave: 1, WaveStarted: at(130)}, sizes,
			"wave 2 of 3: 952 of 5,000 nodes (19%), capped at the wave size limit"},
		{"without sizes, its percentage", Pause{Since: at(-300), Wave: 1, WaveStarted: at(130)}, nil,
			"wave 2 of 3: 50% of its nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(Input{Now: at(200), Config: config(), ClearSince: at(0), Paused: map[types.NamespacedName]Pause{key: tt.rec},
				WaveSizes: tt.sizes})
			if len(p.Changes) != 1 || p.Changes[0].Reason != tt.want {
				t.Errorf("changes %+v, want one whose reason is %q", p.Changes, tt.want)
			}
		})
	}
}
