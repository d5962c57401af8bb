package plan

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/trigger"
)

// TestFloodRecoveryRelapseRecoveryConverges feeds a synthetic incident
// through Decide and a simulated cluster, step by step: a misconfigured
// telemetry DaemonSet floods the API servers, is throttled and paused, the
// first restore brings the flood back (it is still misconfigured) and is
// paused again, then its configuration is fixed and a later restore sticks.
// It checks that the loop converges to nothing shed, never exceeds
// maxPaused, and never flaps.
func TestFloodRecoveryRelapseRecoveryConverges(t *testing.T) {
	cfg := config()
	cfg.Pause.MaxPaused = 1
	cfg.Restore.Backoff.JitterPercent = 10
	const (
		step       = 10 * time.Second
		floodStart = 5 * time.Minute
		fixAt      = 30 * time.Minute
		end        = 3 * time.Hour
	)
	spec := trigger.Spec{Threshold: 400, ClearThreshold: 150, For: 30 * time.Second, MaxGap: 25 * time.Second}

	type cluster struct {
		throttled map[types.NamespacedName]time.Time
		paused    map[types.NamespacedName]Pause
		restored  time.Time
	}
	c := cluster{throttled: map[types.NamespacedName]time.Time{}, paused: map[types.NamespacedName]Pause{}}
	var (
		points     []trigger.Point
		state      trigger.Status
		actions    = map[ChangeKind]int{}
		lastAction = map[types.NamespacedName]time.Time{}
		maxPaused  int
	)

	for now := t0; now.Before(t0.Add(end)); now = now.Add(step) {
		elapsed := now.Sub(t0)
		// The load: 100 requests in flight from everyone else; the agents add
		// 900 when misconfigured, scaled by the share of nodes running them,
		// halved while throttled.
		running := 1.0
		if rec, ok := c.paused[nn("telemetry/agent")]; ok {
			running = 0
			if rec.Wave > 0 {
				running = float64(cfg.Restore.WavePercents[rec.Wave-1]) / 100
			}
		}
		value := 100.0
		misconfigured := elapsed >= floodStart && elapsed < fixAt
		if misconfigured {
			agents := 900 * running
			if _, ok := c.throttled[nn("telemetry/agent")]; ok {
				agents /= 2
			}
			value += agents
		}
		points = append(points, trigger.Point{T: now, V: value, OK: true})
		state = trigger.Evaluate(spec, state, points, now)

		in := Input{Now: now, Config: cfg, Firing: state.Latched(), Throttled: c.throttled, Paused: c.paused, LastRestored: c.restored}
		if state.State == v1alpha1.TriggerOK {
			in.ClearSince = state.Since
		}
		if misconfigured && running > 0 {
			in.Offenders = []Offender{telemetry(0.9)}
		}
		p := Decide(in)

		for _, a := range p.Changes {
			actions[a.Kind]++
			if last, ok := lastAction[a.Target]; ok && now.Sub(last) < step {
				t.Errorf("%v: %s on %s right after another action on it: flapping", elapsed, a.Kind, a.Target)
			}
			lastAction[a.Target] = now
		}
		c.throttled, c.paused = p.Throttled, p.Paused
		if len(p.Restored) > 0 {
			c.restored = now
		}
		maxPaused = max(maxPaused, len(c.paused))
	}

	t.Logf("actions over the incident: %v", actions)
	if maxPaused > cfg.Pause.MaxPaused {
		t.Errorf("%d DaemonSets were paused at once, over maxPaused %d", maxPaused, cfg.Pause.MaxPaused)
	}
	if len(c.paused) != 0 || len(c.throttled) != 0 || state.State != v1alpha1.TriggerOK {
		t.Errorf("did not converge: paused %v, throttled %v, trigger %s", c.paused, c.throttled, state.State)
	}
	if actions[Paused] != 1 || actions[Throttled] != 1 || actions[Unthrottled] != 1 {
		t.Errorf("want one pause, one throttle and one unthrottle, got %v", actions)
	}
	if actions[Repaused] < 1 {
		t.Errorf("the relapse was not re-paused: %v", actions)
	}
	if actions[RestoreStarted] != actions[Repaused]+1 || actions[Restored] != 1 {
		t.Errorf("each restore attempt but the last should relapse: %v", actions)
	}
}
