package apfdump

import (
	"os"
	"strings"
	"testing"
)

// testdata/dump_requests.txt is what a kube-apiserver 1.37.2 answered to
// dump_requests?includeRequestDetails=1 while a ServiceAccount listed 1,500
// ConfigMaps from 30 goroutines, another GOT a namespace from 10, and a
// node listed Nodes from 4 (impersonated): the dump's own GET included.
func TestParseARealDump(t *testing.T) {
	f, err := os.Open("testdata/dump_requests.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	reqs, unreadable, err := Parse(f)
	if err != nil || unreadable != 0 {
		t.Fatalf("Parse: %d unreadable, %v", unreadable, err)
	}
	if len(reqs) != 26 {
		t.Fatalf("%d requests, want 26", len(reqs))
	}
	first := Request{PriorityLevel: "exempt", FlowSchema: "exempt", Executing: true, Seats: 1, User: "admin", Verb: "get",
		Path: Path}
	if reqs[0] != first {
		t.Errorf("first request %+v, want %+v", reqs[0], first)
	}
	agent := reqs[4]
	if agent.User != "system:serviceaccount:telemetry:agent" || agent.FlowSchema != "service-accounts" ||
		agent.PriorityLevel != "workload-low" || agent.Verb != "list" || agent.Resource != "configmaps" || !agent.Executing {
		t.Errorf("an agent's LIST read as %+v", agent)
	}

	s := Summarize(reqs)
	want := map[string]Load{
		"system:serviceaccount:telemetry:agent": {Requests: 20, Seats: 20},
		"system:serviceaccount:shop:api":        {Requests: 2, Seats: 2},
		"system:node:node-1":                    {Requests: 3, Seats: 3},
	}
	if len(s.ByUser) != len(want) {
		t.Errorf("users %v, want %v (the dump's own GET, on exempt, left out)", s.ByUser, want)
	}
	for u, l := range want {
		if s.ByUser[u] != l {
			t.Errorf("%s: %+v, want %+v", u, s.ByUser[u], l)
		}
	}
	if s.Total != (Load{Requests: 25, Seats: 25}) {
		t.Errorf("total %+v, want 25 requests and seats", s.Total)
	}
}

func TestParse(t *testing.T) {
	header := "PriorityLevelName, FlowSchemaName, QueueIndex, RequestIndexInQueue, FlowDistingsher, ArriveTime, " +
		"InitialSeats, FinalSeats, AdditionalLatency, StartTime, UserName, Verb, APIPath, Namespace, Name, APIVersion, " +
		"Resource, SubResource\n"
	row := func(queueIndex, indexInQueue, seats, user string) string {
		return "workload-low, service-accounts, " + queueIndex + ", " + indexInQueue + ", " + user +
			", 2026-12-06T02:25:53Z, " + seats + ", 0, 0s, 2026-12-06T02:25:53Z, " + user +
			", list, /api/v1/pods, , , v1, pods, \n"
	}
	tests := []struct {
		name           string
		in             string
		want           []Request
		wantUnreadable int
		wantErr        string
	}{
		{name: "a request waiting in a queue, of 10 seats",
			in: header + row("7", "3", "10", "system:serviceaccount:a:b"),
			want: []Request{{PriorityLevel: "workload-low", FlowSchema: "service-accounts", Seats: 10,
				User: "system:serviceaccount:a:b", Verb: "list", Path: "/api/v1/pods", Resource: "pods"}}},
		{name: "a user with a comma is skipped and counted",
			in:             header + row("7", "-1", "1", "CN=a,O=b") + row("1", "-1", "1", "alice"),
			want:           []Request{{PriorityLevel: "workload-low", FlowSchema: "service-accounts", Executing: true, Seats: 1, User: "alice", Verb: "list", Path: "/api/v1/pods", Resource: "pods"}},
			wantUnreadable: 1},
		{name: "an idle API server holds nothing", in: header},
		{name: "nothing at all", in: "", wantErr: "no header"},
		{name: "a dump without request details names no one",
			in:      "PriorityLevelName, FlowSchemaName, QueueIndex, RequestIndexInQueue, FlowDistingsher, ArriveTime, InitialSeats, FinalSeats, AdditionalLatency, StartTime\n",
			wantErr: "with request details"},
		{name: "not a dump at all", in: "404 page not found\n", wantErr: "unexpected header"},
		{name: "seats that are not a number",
			in: header + row("1", "-1", "many", "alice"), wantErr: "line 2: initial seats"},
		{name: "a row cut short",
			in: header + "workload-low, service-accounts, 1\n", wantErr: "line 2: 3 columns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, unreadable, err := Parse(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if unreadable != tt.wantUnreadable || len(got) != len(tt.want) {
				t.Fatalf("got %+v (%d unreadable), want %+v (%d)", got, unreadable, tt.want, tt.wantUnreadable)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("request %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestSummarizeAndTrim(t *testing.T) {
	reqs := []Request{
		{User: "admin", Seats: 1, Executing: true, PriorityLevel: Exempt},
		{User: "flood", Seats: 10, Executing: true},
		{User: "flood", Seats: 10},
		{User: "busy", Seats: 1, Executing: true},
		{User: "busy", Seats: 1, Executing: true},
		{User: "busy", Seats: 1, Executing: true},
		{User: "quiet", Seats: 1, Executing: true},
		{User: "loadshed", Seats: 1, Executing: true, Path: Path},
	}
	s := Summarize(reqs)
	if s.ByUser["flood"] != (Load{Requests: 2, Waiting: 1, Seats: 20}) || s.Total != (Load{Requests: 6, Waiting: 1, Seats: 24}) {
		t.Errorf("summary %+v", s)
	}
	if _, ok := s.ByUser["loadshed"]; ok {
		t.Error("the dump's own request counted")
	}
	if _, ok := s.ByUser["admin"]; ok {
		t.Error("a request on the exempt level counted")
	}
	s.Trim(2)
	if len(s.ByUser) != 2 || s.ByUser["flood"].Seats != 20 || s.ByUser["busy"].Seats != 3 {
		t.Errorf("trimmed to %+v, want flood and busy", s.ByUser)
	}
	if s.Total.Requests != 6 {
		t.Errorf("trimming changed the total: %+v", s.Total)
	}
}
