package replay

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// timeline: 10 quiet seconds, a flood from 10s to 40s, then fixed. In the
// baseline the innocent clients suffer all along the flood; with loadshed
// the flood is paused at 15s and they recover at 17s.
func timeline(name string, mitigated bool) Scenario {
	s := Scenario{Name: name, FloodStart: 10 * time.Second}
	for i := range 60 {
		at := time.Duration(i) * time.Second
		x := Sample{At: at, Phase: "quiet", Inflight: 20, InnocentRequests: 10, InnocentP99: 50 * time.Millisecond}
		switch {
		case i >= 10 && i < 40:
			x.Phase = "flood"
			bad := !mitigated || i < 17
			if bad {
				x.Inflight, x.InnocentErrors, x.InnocentP99 = 600, 5, 3*time.Second
			}
		case i >= 40:
			x.Phase = "fixed"
		}
		s.Samples = append(s.Samples, x)
	}
	if mitigated {
		s.Events = []Event{{At: 12 * time.Second, Reason: "Throttled", Note: "telemetry/agent"},
			{At: 15 * time.Second, Reason: "Paused", Note: "telemetry/agent"},
			{At: 45 * time.Second, Reason: "RestoreStarted", Note: "telemetry/agent"}}
	}
	return s
}

func TestScoreOf(t *testing.T) {
	base, shed := ScoreOf(timeline("baseline", false)), ScoreOf(timeline("loadshed", true))
	if base.TimeToMitigate != -1 || shed.TimeToMitigate != 5*time.Second {
		t.Errorf("time to mitigate: baseline %v, loadshed %v; want never and 5s", base.TimeToMitigate, shed.TimeToMitigate)
	}
	if base.TimeToRecover != 30*time.Second || shed.TimeToRecover != 7*time.Second {
		t.Errorf("time to recover: baseline %v, loadshed %v; want 30s and 7s", base.TimeToRecover, shed.TimeToRecover)
	}
	if base.FloodSuccess != 0.5 || shed.FloodSuccess <= base.FloodSuccess {
		t.Errorf("success during the flood: baseline %v, loadshed %v", base.FloodSuccess, shed.FloodSuccess)
	}
	if base.FloodP99 != 3*time.Second || shed.RestoreAttempts != 1 {
		t.Errorf("baseline p99 %v, loadshed restores %d", base.FloodP99, shed.RestoreAttempts)
	}
}

func TestTheReportCarriesEverySecondAndAction(t *testing.T) {
	scenarios := []Scenario{timeline("baseline", false), timeline("loadshed", true)}
	var csvOut, html bytes.Buffer
	if err := WriteCSV(&csvOut, scenarios); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(csvOut.String(), "\n"); lines != 1+2*60 {
		t.Errorf("the CSV has %d lines, want a header and 120 rows", lines)
	}
	if err := WriteHTML(&html, scenarios); err != nil {
		t.Fatal(err)
	}
	page := html.String()
	for _, want := range []string{"<h2>baseline</h2>", "<h2>loadshed</h2>", "Paused: telemetry/agent", "<polyline", "time to mitigate"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	table := ScoreTable(scenarios)
	if !strings.Contains(table, "never") || !strings.Contains(table, "5s") {
		t.Errorf("score table:\n%s", table)
	}
}
