package replay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/localcluster"
)

// fakeBurst's Run waits for release (closed at once when nil), then
// returns err.
type fakeBurst struct {
	release chan struct{}
	err     error
}

func (fakeBurst) Name() string                             { return "fake" }
func (fakeBurst) Describe(*BurstEnv) string                { return "a fake burst" }
func (fakeBurst) Prepare(context.Context, *BurstEnv) error { return nil }
func (f fakeBurst) Run(ctx context.Context, _ *BurstEnv) error {
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.err
}

// phases steps a burst from second 0 on and returns the phase of each
// second until the timeline is over or fails; release, when set, is
// closed at second releaseAt. Before each step after the burst's start
// it waits for the burst's Run to have returned if it was released, so
// that the steps see it.
func phases(t *testing.T, b fakeBurst, releaseAt int) ([]string, error) {
	t.Helper()
	r := &runner{cfg: Config{Name: "fake", Quiet: 2 * time.Second, BurstFor: 3 * time.Second, Tail: 2 * time.Second, Burst: b},
		res: &Result{}, cluster: &localcluster.Cluster{}}
	ld := &burstLoad{r: r, snap: &snapshot{}, ctx: context.Background()}
	defer ld.stop()
	var got []string
	released := b.release == nil
	for s := range 30 {
		if !released && s == releaseAt {
			close(b.release)
			released = true
		}
		if ld.started && released {
			deadline := time.Now().Add(5 * time.Second)
			for len(ld.done) == 0 && !ld.finished && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		phase, done, err := ld.step(context.Background(), time.Duration(s)*time.Second)
		if err != nil || done {
			return got, err
		}
		got = append(got, phase)
	}
	t.Fatal("the timeline did not end")
	return nil, nil
}

func TestABurstsTimeline(t *testing.T) {
	for _, tc := range []struct {
		name      string
		burst     fakeBurst
		releaseAt int
		want      string
		wantErr   string
	}{
		{"a burst done at once lasts BurstFor", fakeBurst{}, 0,
			"quiet quiet burst burst burst tail tail", ""},
		{"a burst that takes longer lasts until it is done", fakeBurst{release: make(chan struct{})}, 7,
			"quiet quiet burst burst burst burst burst tail tail", ""},
		{"a failed burst fails the timeline", fakeBurst{release: make(chan struct{}), err: errors.New("no eviction")}, 3,
			"quiet quiet burst", "the fake burst: no eviction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := phases(t, tc.burst, tc.releaseAt)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("phases %q, want %q", g, tc.want)
			}
		})
	}
}
