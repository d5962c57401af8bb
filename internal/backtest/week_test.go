package backtest

import (
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/signals"
)

// TestAWeekIsReadOnce back-tests a week of rounds every 10s, made as
// they are read, with a flood a day: the back-test holds only the history
// the operator's sampler would, and takes seconds.
func TestAWeekIsReadOnce(t *testing.T) {
	const days = 7
	cfg := readFloodPolicy(t)
	d := day{rounds: 8640, inflight: flood([2]int{3000, 3060})}
	oneDay := d.record(t, cfg)
	rounds := func(yield func(*signals.Round) bool) {
		for day := range days {
			for _, r := range oneDay {
				c := *r
				c.T = r.T.Add(time.Duration(day) * 24 * time.Hour)
				if !yield(&c) {
					return
				}
			}
		}
	}
	in := input(t, d)
	in.Rounds = rounds
	e, err := newEngine(in)
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	e.observe = func(ev evaluation) { most = max(most, len(ev.detection.Rounds)) }
	began := time.Now()
	e.run()
	took := time.Since(began)
	if e.err != nil {
		t.Fatal(e.err)
	}
	res := e.result()
	t.Logf("%d evaluations of %d rounds in %v, at most %d rounds held; %s", res.Summary.Evaluations, days*len(oneDay), took,
		most, res.Summary.text(res.Source))
	if res.Summary.TimesFired != days || len(res.Summary.Paused) != 1 {
		t.Errorf("fired %d times and paused %v, want a firing a day and the agent paused", res.Summary.TimesFired, res.Summary.Paused)
	}
	if held := int(2*retentionOf(t)/(10*time.Second)) + 2; most > held {
		t.Errorf("held %d rounds at once, want at most %d", most, held)
	}
}

func retentionOf(t *testing.T) time.Duration {
	t.Helper()
	e, err := newEngine(input(t, day{rounds: 1, inflight: flood()}))
	if err != nil {
		t.Fatal(err)
	}
	return e.hist.keep
}
