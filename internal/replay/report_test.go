package replay

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// timeline: 10 quiet seconds, a flood from 10s to 40s, then fixed. In the
// baseline the innocent clients suffer all along the flood; with loadshed
// the flood is paused at 15s and they recover at 17s.
func timeline(name string, mitigated bool) Scenario {
	s := Scenario{Name: name, FloodStart: 10 * time.Second}
	for i := range 60 {
		at := time.Duration(i) * time.Second
		x := Sample{At: at, Phase: "quiet", Inflight: 20, InnocentRequests: 10, InnocentP99: 50 * time.Millisecond,
			InnocentLatencies: latencies(10, 50*time.Millisecond)}
		switch {
		case i >= 10 && i < 40:
			x.Phase = "flood"
			bad := !mitigated || i < 17
			if bad {
				x.Inflight, x.InnocentErrors, x.InnocentP99 = 600, 5, 3*time.Second
				x.InnocentLatencies = latencies(10, 3*time.Second)
			}
		case i >= 40:
			x.Phase = "fixed"
		}
		s.Samples = append(s.Samples, x)
	}
	if mitigated {
		s.Events = []Event{{At: 12 * time.Second, Reason: v1alpha1.EventThrottled, Note: "telemetry/agent"},
			{At: 15 * time.Second, Reason: v1alpha1.EventPaused, Note: "telemetry/agent"},
			{At: 45 * time.Second, Reason: v1alpha1.EventRestoreStarted, Note: "telemetry/agent"}}
	}
	return s
}

func latencies(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
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
	// 7 bad seconds of 30: 70 of 300 requests took 3s, more than 1%.
	if shed.FloodP99 != 3*time.Second {
		t.Errorf("loadshed p99 %v, want 3s", shed.FloodP99)
	}
	if base.TimeToThrottle != -1 || shed.TimeToThrottle != 2*time.Second {
		t.Errorf("time to throttle: baseline %v, loadshed %v; want never and 2s", base.TimeToThrottle, shed.TimeToThrottle)
	}
	if base.PeakInflight != 600 || base.FloodRate != 10 {
		t.Errorf("baseline peak in-flight %v, innocent rate %v; want 600 and 10/s", base.PeakInflight, base.FloodRate)
	}
}

func TestTheReportCarriesEverySecondAndAction(t *testing.T) {
	scenarios := []Scenario{timeline("baseline", false), timeline("loadshed", true)}
	var csvOut, html bytes.Buffer
	if err := WriteCSV(&csvOut, [][]Scenario{scenarios}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(csvOut.String(), "\n"); lines != 1+2*60 {
		t.Errorf("the CSV has %d lines, want a header and 120 rows", lines)
	}
	if err := WriteHTML(&html, [][]Scenario{scenarios}); err != nil {
		t.Fatal(err)
	}
	page := html.String()
	for _, want := range []string{"<h2>baseline</h2>", "<h2>loadshed</h2>", "Paused: telemetry/agent", "<polyline", "time to mitigate"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	scenarios[1].Operator = &OperatorStats{Requests: 1234, PeakRSS: 48 << 20}
	table := ScoreTable(scenarios)
	for _, want := range []string{"1234", "48 MiB"} {
		if !strings.Contains(table, want) {
			t.Errorf("the score table lacks the operator's %q:\n%s", want, table)
		}
	}
	if !strings.Contains(table, "never") || !strings.Contains(table, "5s") {
		t.Errorf("score table:\n%s", table)
	}
}

func TestWriteReportWritesThePageTheSeriesAndTheSummary(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	page, err := WriteReport(dir, [][]Scenario{{timeline("baseline", false), timeline("loadshed", true)}})
	if err != nil {
		t.Fatal(err)
	}
	if page != filepath.Join(dir, "report.html") {
		t.Errorf("page %s", page)
	}
	summary, err := os.ReadFile(filepath.Join(dir, "summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"time to mitigate", "loadshed:", "t=  15s  Paused"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary.txt lacks %q:\n%s", want, summary)
		}
	}
	for _, name := range []string{"report.html", "timeline.csv"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestFalseActionsAreCountedInBenignScenariosOnly(t *testing.T) {
	benign := func(events ...Event) Scenario {
		s := timeline("drain", false)
		s.Burst, s.Events = "drain", events
		return s
	}
	for _, tc := range []struct {
		name                    string
		s                       Scenario
		wantThrottles, wantPaus int
	}{
		{"a flood's actions are not false", timeline("loadshed", true), -1, -1},
		{"a quiet burst makes no mistake", benign(), 0, 0},
		{"a throttle and a pause are counted",
			benign(at(12*time.Second, v1alpha1.EventThrottled), at(15*time.Second, v1alpha1.EventPaused)), 1, 1},
		{"a pause again after a restore counts as a pause",
			benign(at(15*time.Second, v1alpha1.EventPaused), at(30*time.Second, v1alpha1.EventRestoreStarted), at(35*time.Second, v1alpha1.EventRepaused)), 0, 2},
		{"what dryRun would have done is not done",
			benign(at(12*time.Second, v1alpha1.DryRunReason(v1alpha1.EventThrottled)), at(15*time.Second, v1alpha1.DryRunReason(v1alpha1.EventPaused))), 0, 0},
		{"other events are not actions",
			benign(at(12*time.Second, v1alpha1.EventTriggerFired), at(15*time.Second, v1alpha1.EventTriggerCleared)), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := ScoreOf(tc.s)
			if sc.FalseThrottles != tc.wantThrottles || sc.FalsePauses != tc.wantPaus {
				t.Errorf("false throttles %d, false pauses %d; want %d and %d", sc.FalseThrottles, sc.FalsePauses, tc.wantThrottles, tc.wantPaus)
			}
		})
	}
}

func TestTheScoreTablesColumnsStayApart(t *testing.T) {
	long := timeline("apiserver-restart", false)
	long.Burst = "apiserver-restart"
	for _, table := range []string{
		ScoreTable([]Scenario{timeline("relist", false), long}),
		AggregateTable([][]Scenario{{timeline("relist", false), long}}),
	} {
		header := strings.Fields(strings.Split(table, "\n")[0])
		if got := header[len(header)-2:]; got[0] != "relist" || got[1] != "apiserver-restart" {
			t.Errorf("the header's last columns read %q:\n%s", got, table)
		}
	}
}

func TestTheScoreTableShowsWhatAppliesToEachScenario(t *testing.T) {
	drain := timeline("drain", false)
	drain.Burst = "drain"
	drain.Events = []Event{at(15*time.Second, v1alpha1.EventPaused)}
	table := ScoreTable([]Scenario{timeline("baseline", false), drain})
	for _, tc := range []struct{ row, want string }{
		{"time to throttle (flood to throttle)", "never -"},
		{"false pauses (benign burst)", "- 1"},
		{"false throttles (benign burst)", "- 0"},
		{"offered load: agents' LIST attempts/s", "0.0 -"},
	} {
		line := ""
		for _, l := range strings.Split(table, "\n") {
			if strings.HasPrefix(l, tc.row) {
				line = strings.Join(strings.Fields(strings.TrimPrefix(l, tc.row)), " ")
			}
		}
		if line != tc.want {
			t.Errorf("row %q reads %q, want %q:\n%s", tc.row, line, tc.want, table)
		}
	}
}

func TestTheReportOfRepeatedRunsHasEachRunAndTheTableAcrossThem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	runs := [][]Scenario{
		{timeline("baseline", false), timeline("loadshed", true)},
		{timeline("baseline", false), timeline("loadshed", true)},
	}
	if _, err := WriteReport(dir, runs); err != nil {
		t.Fatal(err)
	}
	for file, wants := range map[string][]string{
		"summary.txt":  {"Run 1 of 2:", "Run 2 of 2:", "Across the 2 runs:", "runs in which loadshed paused"},
		"report.html":  {"<h2>baseline, run 1</h2>", "<h2>loadshed, run 2</h2>", "median (min–max) of 2 runs"},
		"timeline.csv": {"run,scenario,second", "\n2,loadshed,59,"},
	} {
		got, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range wants {
			if !strings.Contains(string(got), want) {
				t.Errorf("%s lacks %q", file, want)
			}
		}
	}
}
