package talkers

import (
	"math"
	"reflect"
	"testing"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/signals"
)

const a, b = "https://192.0.2.1:6443", "https://192.0.2.2:6443"

// folded is what an accumulator folded.
type folded struct {
	acc    signals.Accumulator
	groups map[string]float64
}

// results are an instance's folded groups, by accumulator key.
func results(fs ...folded) map[string]signals.Result {
	out := map[string]signals.Result{}
	for _, f := range fs {
		out[f.acc.Key()] = signals.Result{Series: len(f.groups), Groups: f.groups}
	}
	return out
}

// instance is one API server's APF metrics at one round: the flood's
// schema has dispatched d requests in all and rejected r.
func instance(d, r, seats float64) map[string]signals.Result {
	return results(
		folded{dispatchedByLevel, map[string]float64{"workload-low": d, "system": 100}},
		folded{rejectedByLevel, map[string]float64{"workload-low": r}},
		folded{seatsByLevel, map[string]float64{"workload-low": seats, "system": 1}},
		folded{queuedByLevel, map[string]float64{"workload-low": 2}},
		folded{nominalByLevel, map[string]float64{"workload-low": 245, "system": 74}},
		folded{signals.DispatchedByFlowSchema, map[string]float64{"loadshed-throttle-telemetry-agent": d, "system-nodes": 100}},
		folded{signals.RejectedByFlowSchema, map[string]float64{"loadshed-throttle-telemetry-agent": r}},
		folded{signals.SeatsByFlowSchema, map[string]float64{"loadshed-throttle-telemetry-agent": seats, "system-nodes": 1}},
		folded{queuedBySchema, map[string]float64{"loadshed-throttle-telemetry-agent": 2}},
	)
}

func held(agent, node int) apfdump.Summary {
	return apfdump.Summary{Total: apfdump.Load{Requests: agent + node + 1, Seats: agent + node + 1},
		ByUser: map[string]apfdump.Load{
			"system:serviceaccount:telemetry:agent": {Requests: agent, Seats: agent},
			"system:node:node-01":                   {Requests: node, Seats: node},
		}}
}

func throttle() flowcontrolv1.FlowSchema {
	return flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "loadshed-throttle-telemetry-agent"},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{Subjects: []flowcontrolv1.Subject{{
				Kind:           flowcontrolv1.SubjectKindServiceAccount,
				ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: "telemetry", Name: "agent"}}}}}}}
}

func near(x, y float64) bool { return math.Abs(x-y) < 1e-9 }

// TestComputeSumsTheAPIServersAndRanksTheLoudest: two API servers read
// twice 5s apart; the flood's schema and level come first, with their rates
// and seats summed over both, and its ServiceAccount named.
func TestComputeSumsTheAPIServersAndRanksTheLoudest(t *testing.T) {
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	first := &signals.Round{T: t0, Instances: map[string]map[string]signals.Result{a: instance(1000, 0, 4), b: instance(500, 0, 2)},
		Clients: map[string]apfdump.Summary{a: held(8, 1), b: held(4, 0)}}
	second := &signals.Round{T: t0.Add(5 * time.Second),
		Instances: map[string]map[string]signals.Result{a: instance(6000, 50, 6), b: instance(3000, 0, 2)},
		Clients:   map[string]apfdump.Summary{a: held(10, 1)}, ClientsFailed: map[string]string{b: "HTTP 403"}}
	in := Input{First: first, Second: second, FlowSchemas: []flowcontrolv1.FlowSchema{throttle()},
		Held: []map[string]apfdump.Summary{first.Clients, second.Clients}}
	rep := Compute(in)

	if !reflect.DeepEqual(rep.Instances, []string{a, b}) || rep.Interval != "5s" || rep.DumpFailed[b] != "HTTP 403" {
		t.Errorf("instances %v, interval %s, dump failures %v", rep.Instances, rep.Interval, rep.DumpFailed)
	}
	top := rep.FlowSchemas[0]
	if top.Name != "loadshed-throttle-telemetry-agent" || top.ServiceAccount != "telemetry/agent" || top.PriorityLevel != "workload-low" {
		t.Fatalf("top FlowSchema %+v, want the agent's throttle, on workload-low, naming telemetry/agent", top)
	}
	// (6000-1000 + 3000-500) / 5s; 50 rejected / 5s; seats (4+2 + 6+2) / 2 rounds.
	if !near(top.DispatchedPerSecond, 1500) || !near(top.RejectedPerSecond, 10) || !near(top.SeatsInUse, 7) || !near(top.Queued, 4) {
		t.Errorf("top FlowSchema %+v, want 1500/s dispatched, 10/s rejected, 7 seats, 4 queued", top)
	}
	level := rep.PriorityLevels[0]
	if level.Name != "workload-low" || !near(level.DispatchedPerSecond, 1500) || level.NominalSeats != 490 {
		t.Errorf("top level %+v, want workload-low at 1500/s with 2x245 nominal seats", level)
	}
	if rep.FlowSchemas[1].Name != "system-nodes" || rep.FlowSchemas[1].DispatchedPerSecond != 0 || rep.FlowSchemas[1].ServiceAccount != "" {
		t.Errorf("second FlowSchema %+v, want system-nodes, idle, no ServiceAccount", rep.FlowSchemas[1])
	}
	// Held: the agent 8+4, then 10 (b's dump failed): 22 over 2 rounds, of 27 seats in all.
	agent := rep.Users[0]
	if agent.ServiceAccount != "telemetry/agent" || !near(agent.Requests, 11) || !near(agent.Share, 22.0/(10+5+12)) {
		t.Errorf("top user %+v, want telemetry/agent holding 11 requests, 22 of the 27 seats", agent)
	}
	if rep.Users[1].Name != "system:node:node-01" || rep.Users[1].ServiceAccount != "" {
		t.Errorf("second user %+v, want the node, no ServiceAccount", rep.Users[1])
	}
	in.Limit = 1
	if limited := Compute(in); len(limited.FlowSchemas) != 1 || len(limited.Users) != 1 || len(limited.PriorityLevels) != 1 {
		t.Errorf("--limit 1 kept %d schemas, %d users, %d levels", len(limited.FlowSchemas), len(limited.Users), len(limited.PriorityLevels))
	}
}

// TestAnInstanceReadOnceHasNoRate: an API server read in the second round
// only (new, or back) adds its gauges but no rate, and is not among those
// read.
func TestAnInstanceReadOnceHasNoRate(t *testing.T) {
	t0 := time.Now()
	first := &signals.Round{T: t0, Instances: map[string]map[string]signals.Result{a: instance(1000, 0, 4)},
		Failed: map[string]string{b: "timed out after 5s"}}
	second := &signals.Round{T: t0.Add(time.Second), Instances: map[string]map[string]signals.Result{a: instance(1100, 0, 4), b: instance(9000, 0, 4)}}
	rep := Compute(Input{First: first, Second: second})
	if !reflect.DeepEqual(rep.Instances, []string{a}) || rep.Failed[b] == "" {
		t.Errorf("instances %v, failures %v; want a read twice, b's failure", rep.Instances, rep.Failed)
	}
	if got := rep.FlowSchemas[0].DispatchedPerSecond; !near(got, 100) {
		t.Errorf("dispatched %v/s, want a's 100/s only", got)
	}
}

func TestSoleServiceAccount(t *testing.T) {
	sa := func(ns, name string) flowcontrolv1.Subject {
		return flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindServiceAccount,
			ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: ns, Name: name}}
	}
	group := flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindGroup, Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}
	for _, tt := range []struct {
		name  string
		rules [][]flowcontrolv1.Subject
		want  string
	}{
		{"one ServiceAccount in one rule", [][]flowcontrolv1.Subject{{sa("telemetry", "agent")}}, "telemetry/agent"},
		{"the same one in every rule", [][]flowcontrolv1.Subject{{sa("telemetry", "agent")}, {sa("telemetry", "agent")}}, "telemetry/agent"},
		{"two ServiceAccounts", [][]flowcontrolv1.Subject{{sa("telemetry", "agent"), sa("telemetry", "other")}}, ""},
		{"every ServiceAccount of a namespace", [][]flowcontrolv1.Subject{{sa("telemetry", "*")}}, ""},
		{"a group", [][]flowcontrolv1.Subject{{group}}, ""},
		{"a ServiceAccount and a group", [][]flowcontrolv1.Subject{{sa("telemetry", "agent")}, {group}}, ""},
		{"no rules", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := &flowcontrolv1.FlowSchema{}
			for _, subjects := range tt.rules {
				fs.Spec.Rules = append(fs.Spec.Rules, flowcontrolv1.PolicyRulesWithSubjects{Subjects: subjects})
			}
			if got := SoleServiceAccount(fs); got != tt.want {
				t.Errorf("SoleServiceAccount = %q, want %q", got, tt.want)
			}
		})
	}
}
