package backtest

import (
	"strings"
	"testing"
)

func TestTheTextIsATableAndASummary(t *testing.T) {
	res, err := Run(input(t, day{rounds: 120, inflight: flood([2]int{12, 60}),
		blind: func(i int) bool { return i >= 72 && i < 78 }}))
	if err != nil {
		t.Fatal(err)
	}
	var plain, colored strings.Builder
	if err := res.WriteText(&plain, false); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteText(&colored, true); err != nil {
		t.Fatal(err)
	}
	out := plain.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"Back-test of LoadShedPolicy flood on recording flood.lsrec\nfrom 2026-12-01T10:00:00Z",
		"TIME                  AFTER    KIND            SUBJECT          VALUE    THRESHOLD  REASON\n",
		"2026-12-01T10:02:30Z  +2m30s   TriggerFired    inflight         600      400        Trigger inflight fired",
		"Summary: fired once in ", "firing 8m0s, shedding 13m40s; paused 1 DaemonSet (telemetry/agent); throttled 1 ServiceAccount (telemetry/agent).",
		"Could not see: 6 rounds in which no API server could be scraped",
		"Missing: trigger inflight had no value at 6 evaluations",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the text does not hold %q", want)
		}
	}
	if strings.Contains(out, "\x1b") || !strings.Contains(colored.String(), "\x1b[31mTriggerFired\x1b[0m") {
		t.Error("colour where it is off, or none where it is on")
	}
	// Colour codes of one width in every cell keep the columns aligned.
	pl, co := strings.Split(out, "\n"), strings.Split(colored.String(), "\n")
	for i := range pl {
		if idx := strings.Index(pl[i], "SUBJECT"); idx > 0 && strings.Index(co[i], "SUBJECT") != idx+9 {
			t.Errorf("coloured header misaligned: %q", co[i])
		}
	}
}
