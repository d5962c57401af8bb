package scrapes

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/loadshed/loadshed/internal/talkers"
)

// TestTopNamesTheFloodingServiceAccount: on a cluster without loadshed,
// top, with only the permissions the docs list, reads both kube-apiservers
// at their own addresses and puts the ServiceAccount that floods them on
// top, its FlowSchema and priority level first.
func TestTopNamesTheFloodingServiceAccount(t *testing.T) {
	bin := setUp(t)
	noLoadshedAPI(t)
	kc := kubeconfig(t, topSA)

	out, stderr := plugin(t, bin, kc, "top", "--interval", "2s", "-o", "json")
	var rep talkers.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("top -o json printed %q: %v", out, err)
	}
	if err := sameStrings(rep.Instances, both()); err != nil || len(rep.Failed) > 0 || len(rep.DumpFailed) > 0 {
		t.Errorf("top read %v (failed %v, dumps failed %v)", err, rep.Failed, rep.DumpFailed)
	}
	if strings.Contains(stderr, "warning") {
		t.Errorf("top warned: %s", stderr)
	}
	if len(rep.Users) == 0 || rep.Users[0].ServiceAccount != "telemetry/agent" || rep.Users[0].Share < 0.5 {
		t.Errorf("top users %+v, want telemetry/agent first, with most seats", rep.Users)
	}
	if len(rep.FlowSchemas) == 0 || rep.FlowSchemas[0].Name != "service-accounts" ||
		rep.FlowSchemas[0].PriorityLevel != "workload-low" || rep.FlowSchemas[0].DispatchedPerSecond < 20 {
		t.Errorf("top FlowSchemas %+v, want service-accounts (workload-low) first, flooded", rep.FlowSchemas)
	}
	if len(rep.PriorityLevels) == 0 || rep.PriorityLevels[0].Name != "workload-low" ||
		rep.PriorityLevels[0].NominalSeats == 0 {
		t.Errorf("top levels %+v, want workload-low first", rep.PriorityLevels)
	}

	text, _ := plugin(t, bin, kc, "top", "--interval", "2s", "--limit", "4")
	t.Logf("kubectl loadshed top --interval 2s --limit 4:\n%s", text)
	for _, want := range []string{"PRIORITY LEVEL", "FLOW SCHEMA",
		"system:serviceaccount:telemetry:agent  telemetry/agent"} {
		if !strings.Contains(text, want) {
			t.Errorf("top printed no %q", want)
		}
	}
}
