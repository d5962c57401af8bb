package replay

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A load is what the timeline plays after its quiet phase: the incident's
// flood, or a benign burst.
type load interface {
	// step is called once a second, with the time since the timeline
	// began. It starts and ends the load at their times and returns the
	// second's phase, or done when the timeline is over.
	step(ctx context.Context, at time.Duration) (phase string, done bool, err error)
	// stop ends what the load still runs, and waits for it.
	stop()
}

// newLoad returns the scenario's load: its burst, or the flood.
func (r *runner) newLoad(ctx context.Context, snap *snapshot) load {
	if r.cfg.Burst != nil {
		return &burstLoad{r: r, snap: snap, ctx: ctx}
	}
	return &floodLoad{r: r, snap: snap}
}

// floodLoad is the incident: at the end of the quiet phase the bad
// configuration rolls out and every agent floods; FixAfter later (or once
// loadshed paused the relapse, with HoldFixForRelapse) the fix rolls out;
// Tail later the timeline ends.
type floodLoad struct {
	r               *runner
	snap            *snapshot
	flooding, fixed bool
	fixedAt         time.Duration
}

func (f *floodLoad) step(ctx context.Context, at time.Duration) (string, bool, error) {
	cfg := f.r.cfg
	if f.fixed && at >= f.fixedAt+cfg.Tail {
		return "", true, nil
	}
	if !f.flooding && at >= cfg.Quiet {
		f.flooding = true
		if err := f.r.configure(ctx, modeMisconfigure, Work{Path: floodPath, Rate: cfg.AgentRate, List: true}); err != nil {
			return "", false, err
		}
		f.r.addEvent(f.snap, at, EventFloodStarted,
			fmt.Sprintf("the agents' new configuration lists every ConfigMap %.1f times a second", cfg.AgentRate))
	}
	f.snap.mu.Lock()
	repaused, relapsed := f.snap.repaused, f.snap.relapsed
	f.snap.mu.Unlock()
	fixAt := cfg.Quiet + cfg.FixAfter
	if !f.fixed && at >= fixAt && (!cfg.HoldFixForRelapse || repaused || at >= fixAt+cfg.FixAfter) {
		f.fixed, f.fixedAt = true, at
		if err := f.r.configure(ctx, modeNormal, Work{Path: normalPath, Rate: normalRate}); err != nil {
			return "", false, err
		}
		f.r.addEvent(f.snap, at, EventConfigFixed, "the configuration fix is out: the agents read their own Node only")
	}
	switch {
	case f.fixed:
		return PhaseFixed, false, nil
	case f.flooding && relapsed:
		return PhaseRelapse, false, nil
	case f.flooding:
		return PhaseFlood, false, nil
	}
	return PhaseQuiet, false, nil
}

func (f *floodLoad) stop() {}

// Replay's timeline events of a benign burst.
const (
	EventBurstStarted = "BurstStarted"
	EventBurstEnded   = "BurstEnded"
)

// DefaultBurstFor is a benign burst's least length by default: ample time
// for the sample policy, six times faster (a trigger fires after 5s over
// a window of 10s, and a pause comes 10s after the throttle), to act on a
// burst it mistook for a flood.
const DefaultBurstFor = time.Minute

// burstLimit bounds a burst's Run, as a multiple of Config.BurstFor.
const burstLimit = 4

// burstLoad is a benign burst: the agents behave all along; at the end of
// the quiet phase the burst starts, and the burst phase lasts until it is
// done but at least BurstFor (at most burstLimit times that); Tail later
// the timeline ends.
type burstLoad struct {
	r    *runner
	snap *snapshot
	// ctx is the timeline's: the burst stops with it.
	ctx            context.Context
	cancel         context.CancelFunc
	done           chan error
	runErr         error
	started, ended bool
	finished       bool
	startAt, endAt time.Duration
}

func (b *burstLoad) step(_ context.Context, at time.Duration) (string, bool, error) {
	cfg := b.r.cfg
	switch {
	case b.ended && at >= b.endAt+cfg.Tail:
		return "", true, nil
	case !b.started && at >= cfg.Quiet:
		b.start(at)
	}
	if b.started && !b.finished {
		select {
		case b.runErr = <-b.done:
			b.finished = true
		default:
		}
	}
	if b.finished && b.runErr != nil {
		if errors.Is(b.runErr, context.DeadlineExceeded) {
			return "", false, fmt.Errorf("the %s burst did not end within %v: %w", cfg.Burst.Name(), burstLimit*cfg.BurstFor, b.runErr)
		}
		return "", false, fmt.Errorf("the %s burst: %w", cfg.Burst.Name(), b.runErr)
	}
	if b.started && !b.ended && b.finished && at >= b.startAt+cfg.BurstFor {
		b.ended, b.endAt = true, at
		b.r.addEvent(b.snap, at, EventBurstEnded, fmt.Sprintf("the %s burst is over", cfg.Burst.Name()))
	}
	switch {
	case b.ended:
		return PhaseTail, false, nil
	case b.started:
		return PhaseBurst, false, nil
	}
	return PhaseQuiet, false, nil
}

// start runs the burst in the background, for at most burstLimit times
// BurstFor.
func (b *burstLoad) start(at time.Duration) {
	cfg := b.r.cfg
	b.started, b.startAt = true, at
	b.done = make(chan error, 1)
	ctx, cancel := context.WithTimeout(b.ctx, burstLimit*cfg.BurstFor)
	b.cancel = cancel
	env := b.r.burstEnv()
	go func() { b.done <- cfg.Burst.Run(ctx, env) }()
	b.r.addEvent(b.snap, at, EventBurstStarted, cfg.Burst.Describe(env))
}

func (b *burstLoad) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	if !b.finished {
		b.runErr = <-b.done
		b.finished = true
	}
}
