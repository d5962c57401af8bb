package kubectl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/recording"
	"github.com/loadshed/loadshed/internal/scrape"
	"github.com/loadshed/loadshed/internal/signals"
)

// writeRecording writes a recording file as kubectl loadshed record does,
// of the same flood as fakeRecording: 30 rounds every 10s of one API
// server, 600 requests in flight from round 5 to 20 (the telemetry
// agent's), else 100. Without its end mark, it is cut short.
func writeRecording(t *testing.T, whole bool) string {
	t.Helper()
	world, err := fakeRecording(allFamilies)("flood.lsr", nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flood.lsr")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	h := recording.Header{Started: start, Families: append(signals.CatalogueFamilies(), allFamilies...),
		Snapshot: recording.Snapshot{DaemonSets: world.World.DaemonSets, FlowSchemas: world.World.FlowSchemas}}
	h.Interval.Duration, h.Timeout.Duration = 10*time.Second, 5*time.Second
	w, err := recording.NewWriter(f, h)
	if err != nil {
		t.Fatal(err)
	}
	for r := range world.Rounds {
		sink := w.NewSink("a")
		var v float64 // the fake's one result: the requests in flight
		for _, res := range r.Instances["a"] {
			v = res.Sum
		}
		sink.Add(exposition.NewSample(signals.FamilyInflight, exposition.SuffixNone, 0, v, nil))
		round := &scrape.Round[*recording.Sink]{T: r.T, Scraped: map[string]*recording.Sink{"a": sink},
			Clients: map[string]apfdump.Summary{"a": r.Clients["a"]}}
		if err := w.WriteRound(round); err != nil {
			t.Fatal(err)
		}
	}
	if whole {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestEvaluateReadsARecordingFile(t *testing.T) {
	for _, tt := range []struct {
		name  string
		whole bool
		note  string
	}{
		{name: "a whole recording", whole: true},
		{name: "a recording cut short is back-tested as far as it goes", note: "The recording stops short"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRecording(t, tt.whole)
			out, _, err := run(t, "evaluate", "-f", "../backtest/testdata/flood.yaml", "--recording", path)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"2026-12-01T10:01:20Z  +1m20s  TriggerFired", "Throttled       telemetry/agent",
				"Summary: fired once", tt.note} {
				if !strings.Contains(out, want) {
					t.Errorf("the output does not say %q:\n%s", want, out)
				}
			}
		})
	}
}
