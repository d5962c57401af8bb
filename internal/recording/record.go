package recording

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

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
	// Snapshot, when set, reads the cluster's snapshot again after a round
	// once SnapshotEvery has passed since the last read; one that changed
	// since the last written (Last, the header's at first) is written. A
	// read that fails is tried again after the next round.
	Snapshot      func(context.Context) (Snapshot, error)
	SnapshotEvery time.Duration
	Last          Snapshot
}

// DefaultSnapshotEvery is how often record reads the cluster's DaemonSets,
// namespaces and FlowSchemas again: three lists a minute cost the API
// servers nothing, and a DaemonSet made while recording is attributed.
const DefaultSnapshotEvery = 30 * time.Second

// Record reads every API server with sc on the schedule and writes each
// round with w, until the schedule ends or ctx is done: a round under way
// then is finished and written, so that the recording stays whole once w
// is closed. It returns the first error writing, or Progress's.
func Record(ctx context.Context, sc *scrape.Scraper, w *Writer, s Schedule) error {
	end := s.Start.Add(s.Duration)
	timeout := min(s.Timeout, s.Interval)
	lastRead := s.Start
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
		if err := s.snapshotAgain(ctx, w, &lastRead); err != nil {
			return err
		}
		for now := time.Now(); !next.After(now); {
			next = next.Add(s.Interval)
		}
	}
	return nil
}

// snapshotAgain reads and writes the snapshot when it is due and changed.
func (s *Schedule) snapshotAgain(ctx context.Context, w *Writer, lastRead *time.Time) error {
	if s.Snapshot == nil || time.Since(*lastRead) < s.SnapshotEvery {
		return nil
	}
	snap, err := s.Snapshot(context.WithoutCancel(ctx))
	if err != nil {
		return nil // tried again after the next round
	}
	*lastRead = time.Now()
	if equality.Semantic.DeepEqual(snap, s.Last) {
		return nil
	}
	s.Last = snap
	return w.WriteSnapshot(snap)
}
