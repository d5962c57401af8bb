package kubectl

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/loadshed/loadshed/internal/talkers"
)

func report() talkers.Report {
	return talkers.Report{
		Time: time.Date(2024, 12, 11, 15, 17, 5, 0, time.UTC), Interval: "5s",
		Instances:  []string{"https://192.0.2.1:6443", "https://192.0.2.2:6443"},
		DumpFailed: map[string]string{"https://192.0.2.2:6443": "HTTP 403"},
		PriorityLevels: []talkers.Level{{Name: "workload-low", NominalSeats: 490,
			Load: talkers.Load{DispatchedPerSecond: 1500, RejectedPerSecond: 10, SeatsInUse: 7, Queued: 4}}},
		FlowSchemas: []talkers.FlowSchema{{Name: "service-accounts", PriorityLevel: "workload-low",
			Load: talkers.Load{DispatchedPerSecond: 1500}}},
		Users: []talkers.User{{Name: "system:serviceaccount:telemetry:agent", ServiceAccount: "telemetry/agent",
			Requests: 11, Seats: 11, Share: 0.8148}},
	}
}

func TestTopPrintsAlignedTables(t *testing.T) {
	var out bytes.Buffer
	if err := printTop(&out, report()); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"Read 2 API servers 5s apart, at 2024-12-11T15:17:05Z: https://192.0.2.1:6443, https://192.0.2.2:6443",
		"APF dump not read: https://192.0.2.2:6443: HTTP 403",
		"PRIORITY LEVEL  REQUESTS/S  REJECTED/S  SEATS IN USE  NOMINAL SEATS  QUEUED",
		"workload-low    1500.0      10.0        7.0           490.0          4.0",
		"service-accounts  workload-low    -               1500.0",
		"system:serviceaccount:telemetry:agent  telemetry/agent  11.0      11.0   81%",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("top printed\n%s\nwithout %q", text, want)
		}
	}
}

// TestTopsJSONFieldsAreStable: -o json prints the report's documented
// field names.
func TestTopsJSONFieldsAreStable(t *testing.T) {
	var out bytes.Buffer
	o := &Options{Output: "json", Streams: genericiooptions.IOStreams{Out: &out}}
	if err := o.Print(report(), nil); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	level := got["priorityLevels"].([]any)[0].(map[string]any)
	user := got["users"].([]any)[0].(map[string]any)
	if level["dispatchedPerSecond"] != 1500.0 || level["nominalSeats"] != 490.0 || user["serviceAccount"] != "telemetry/agent" ||
		got["interval"] != "5s" || got["dumpFailed"] == nil {
		t.Errorf("-o json printed %s", out.String())
	}
}
