package kubectl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/backtest"
	"github.com/loadshed/loadshed/internal/signals"
)

const promQLPolicyFile = `apiVersion: loadshed.io/v1alpha1
kind: LoadShedPolicy
metadata:
  name: promql
spec:
  source:
    type: prometheus
    prometheus:
      url: http://prometheus:9090
  triggers:
  - name: inflight
    promQL: max(apiserver_current_inflight_requests)
    threshold: "400"
    clearThreshold: "150"
`

var start = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// writeFile writes content to a file in a test directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeRecording is 30 rounds every 10s of one API server: 600 requests in
// flight from round 5 to 20, the telemetry agent's, else 100.
func fakeRecording(families []string) RecordingReader {
	return func(path string, accums []signals.Accumulator) (*backtest.Recording, error) {
		if !strings.HasSuffix(path, "flood.lsr") {
			return nil, fmt.Errorf("open %s: no such file", path)
		}
		var key string
		for _, a := range accums {
			if a.Family == signals.FamilyInflight {
				key = a.Key()
			}
		}
		rec := &backtest.Recording{Step: 10 * time.Second, Families: families}
		var rounds []*signals.Round
		for i := range 30 {
			v, user := 100.0, "system:serviceaccount:shop:api"
			if i >= 5 && i < 20 {
				v, user = 600, "system:serviceaccount:telemetry:agent"
			}
			sum := apfdump.Summary{ByUser: map[string]apfdump.Load{user: {Requests: 10, Seats: 10}}, Total: apfdump.Load{Requests: 10, Seats: 10}}
			rounds = append(rounds, &signals.Round{T: start.Add(time.Duration(i) * 10 * time.Second),
				Instances: map[string]map[string]signals.Result{"a": {key: {Series: 1, Sum: v, Min: v, Max: v}}},
				Clients:   map[string]apfdump.Summary{"a": sum}})
		}
		rec.Rounds = slices.Values(rounds)
		ds := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
		ds.Spec.Template.Spec.ServiceAccountName = "agent"
		rec.World = backtest.World{DaemonSets: []appsv1.DaemonSet{ds}, FlowSchemas: []flowcontrolv1.FlowSchema{{
			ObjectMeta: metav1.ObjectMeta{Name: "service-accounts"},
			Spec: flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 9000, Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindGroup,
					Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"},
					Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}}}}}}}}
		return rec, nil
	}
}

// allFamilies are those the fake recording holds.
var allFamilies = []string{signals.FamilyInflight, signals.FamilyDispatched, signals.FamilyRejected, signals.FamilyExecutingSeats}

// withRecordings makes evaluate read recordings with read for a test.
func withRecordings(t *testing.T, read RecordingReader) {
	t.Helper()
	old := readRecording
	readRecording = read
	t.Cleanup(func() { readRecording = old })
}

func TestEvaluateRefusesWhatCannotBeBackTested(t *testing.T) {
	policy := "../backtest/testdata/flood.yaml"
	promQL := writeFile(t, "promql.yaml", promQLPolicyFile)
	flood, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	two := writeFile(t, "two.yaml", string(flood)+"---\n"+string(flood))
	tests := []struct {
		name     string
		args     []string
		families []string
		want     string
	}{
		{name: "no policy", args: []string{"--recording", "flood.lsr"}, want: `required flag(s) "filename" not set`},
		{name: "no source", args: []string{"-f", policy}, want: "give one of --recording and --prometheus"},
		{name: "both sources", args: []string{"-f", policy, "--recording", "flood.lsr", "--prometheus", "http://p:9090", "--start", "-1h"},
			want: "give one of --recording and --prometheus"},
		{name: "Prometheus without a start", args: []string{"-f", policy, "--prometheus", "http://p:9090"}, want: "--prometheus needs --start"},
		{name: "an end before the start", args: []string{"-f", policy, "--prometheus", "http://p:9090", "--start", "-1h", "--end", "-2h"},
			want: "is not after --start"},
		{name: "a time that is not one", args: []string{"-f", policy, "--prometheus", "http://p:9090", "--start", "yesterday"},
			want: `--start "yesterday": want RFC3339`},
		{name: "Prometheus's CA without Prometheus", args: []string{"-f", policy, "--recording", "flood.lsr", "--prometheus-ca-file", "ca.pem"},
			want: "go with --prometheus"},
		{name: "a policy file that is not there", args: []string{"-f", "nowhere.yaml", "--recording", "flood.lsr"},
			want: "reading the policy"},
		{name: "several policies", args: []string{"-f", two, "--recording", "flood.lsr"}, want: "2 documents"},
		{name: "a promQL trigger on a recording", args: []string{"-f", promQL, "--recording", "flood.lsr"},
			want: "trigger inflight reads a promQL expression"},
		{name: "a family the recording lacks", args: []string{"-f", policy, "--recording", "flood.lsr"},
			families: allFamilies[1:], want: "does not hold apiserver_current_inflight_requests"},
		{name: "a recording that is not there", args: []string{"-f", policy, "--recording", "missing.lsr"},
			families: allFamilies, want: "reading the recording: open missing.lsr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withRecordings(t, fakeRecording(tt.families))
			_, _, err := run(t, append([]string{"evaluate"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestEvaluateARecording(t *testing.T) {
	withRecordings(t, fakeRecording(allFamilies))
	policy := "../backtest/testdata/flood.yaml"
	out, stderr, err := run(t, "evaluate", "-f", policy, "--recording", "flood.lsr")
	if err != nil || stderr != "" {
		t.Fatalf("evaluate failed (%v), or wrote %q on standard error", err, stderr)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"Back-test of LoadShedPolicy flood on recording flood.lsr",
		"2026-12-01T10:01:20Z  +1m20s  TriggerFired", "Throttled       telemetry/agent", "Summary: fired once"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	out, _, err = run(t, "evaluate", "-f", policy, "--recording", "flood.lsr", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res backtest.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json printed what is not a result: %v\n%s", err, out)
	}
	if res.Policy != "flood" || len(res.Timeline) < 3 || res.Timeline[0].Kind != "TriggerFired" || res.Summary.TimesFired != 1 {
		t.Errorf("-o json: %+v", res)
	}
	out, _, err = run(t, "evaluate", "-f", policy, "--recording", "flood.lsr", "-o", "yaml")
	if err != nil || !strings.Contains(out, "\n  timesFired: 1\n") || !strings.Contains(out, "- kind: TriggerFired\n") {
		t.Errorf("-o yaml printed (%v):\n%s", err, out)
	}
}

func TestEvaluatePrometheus(t *testing.T) {
	var asked []string
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		asked = append(asked, r.Header.Get("Authorization"))
		from, _ := strconv.ParseFloat(r.Form.Get("start"), 64)
		to, _ := strconv.ParseFloat(r.Form.Get("end"), 64)
		var values []string
		for s := from; s <= to; s += 10 {
			v := 100
			if d := s - float64(start.Unix()); d >= 60 && d < 300 {
				v = 600
			}
			values = append(values, fmt.Sprintf(`[%s,"%d"]`, strconv.FormatFloat(s, 'f', -1, 64), v))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s]}]}}`,
			strings.Join(values, ","))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	policy := "../backtest/testdata/flood.yaml"
	token := writeFile(t, "token", "s3cret\n")

	out, _, err := run(t, "evaluate", "-f", policy, "--prometheus", srv.URL, "--prometheus-bearer-token-file", token,
		"--start", start.Format(time.RFC3339), "--end", start.Add(10*time.Minute).Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{"on prometheus " + srv.URL, "+1m30s  TriggerFired", "TriggerCleared",
		"No offenders from prometheus", "Summary: fired once"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	if len(asked) != 1 || asked[0] != "Bearer s3cret" {
		t.Errorf("Prometheus was asked with %q, want once with the token", asked)
	}
}

func TestParseTime(t *testing.T) {
	now := start
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"now", now}, {"-2h", now.Add(-2 * time.Hour)}, {"-7d", now.Add(-7 * 24 * time.Hour)},
		{"2026-11-30T08:00:00Z", time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}, {"", time.Time{}},
	} {
		got, err := parseTime("--start", tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"-2x", "-xd", "Monday"} {
		if _, err := parseTime("--start", bad, now); err == nil {
			t.Errorf("parseTime(%q) did not fail", bad)
		}
	}
}

func TestEvaluateSaysWhenARecordingIsCutShort(t *testing.T) {
	read := fakeRecording(allFamilies)
	withRecordings(t, func(path string, accums []signals.Accumulator) (*backtest.Recording, error) {
		rec, err := read(path, accums)
		if err != nil {
			return nil, err
		}
		rec.Err = func() error { return errors.New("unexpected end of the recording after 30 rounds") }
		return rec, nil
	})
	_, _, err := run(t, "evaluate", "-f", "../backtest/testdata/flood.yaml", "--recording", "flood.lsr")
	if err == nil || !strings.Contains(err.Error(), "unexpected end of the recording") {
		t.Errorf("error %v, want the recording's", err)
	}
}
