package recording

import (
	"context"
	"time"

	"github.com/loadshed/loadshed/internal/scrape"
)

// Schedule says when Record reads the API servers.
type Schedule struct {
	// Start is when the first round starts; one starts every Interval
	// after it, until Duration has passed. A round that overruns the next
	// start skips it.
	Start              time.Time
	Duration, Interval time.Duration
	// Timeout bounds each instance's scrape (at most Interval).
	Timeout time.Duration
	// Progress, when set, is called after each round is written; an error
	// it returns ends recording, and Record returns it.
	Progress func(r *scrape.Round[*Sink], st scrape.Status) error
}

// Record reads every API server with sc on the schedule and writes each
// round with w, until the schedule ends or ctx is done: a round under way
// then is finished and written, so that the recording stays whole once w
// is closed. It returns the first error writing, or Progress's.
func Record(ctx context.Context, sc *scrape.Scraper, w *Writer, s Schedule) error {
	end := s.Start.Add(s.Duration)
	timeout := min(s.Timeout, s.Interval)
	for next := s.Start; next.Before(end); {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		r, st := scrape.Read(context.WithoutCancel(ctx), sc, time.Now(), timeout, w.NewSink)
		if err := w.WriteRound(r); err != nil {
			return err
		}
		if s.Progress != nil {
			if err := s.Progress(r, st); err != nil {
				return err
			}
		}
		for now := time.Now(); !next.After(now); {
			next = next.Add(s.Interval)
		}
	}
	return nil
}
