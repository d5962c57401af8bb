package backtest

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
)

// t0 is when the synthetic recordings start.
var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// scrape is how long each synthetic round's scrape takes: the operator
// evaluates when the round is done.
const scrape = 200 * time.Millisecond

// floodPolicy is testdata/flood.yaml.
func floodPolicy(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/flood.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readFloodPolicy(t *testing.T) *policy.Config {
	t.Helper()
	_, cfg, err := ReadPolicy(floodPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const agentUser = "system:serviceaccount:telemetry:agent"

// day describes a synthetic recording, round by round (every 10s): the
// requests in flight, and whether the round could scrape nothing. While
// more than 300 are in flight, the telemetry agent holds 80 requests and
// a shop 10; otherwise the shop holds 10.
type day struct {
	rounds   int
	inflight func(i int) float64
	blind    func(i int) bool
	// unattributed rounds could not read APF's dump.
	unattributed func(i int) bool
}

// flood is 100 requests in flight, and 600 in the rounds [from, to) of each
// pair.
func flood(spans ...[2]int) func(int) float64 {
	return func(i int) float64 {
		for _, s := range spans {
			if i >= s[0] && i < s[1] {
				return 600
			}
		}
		return 100
	}
}

func (d day) record(t *testing.T, cfg *policy.Config) []*signals.Round {
	t.Helper()
	_, queries, err := sampler.InterestOf(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := queries["inflight"].Accum.Key()
	const inst = "10.0.0.1:6443"
	out := make([]*signals.Round, d.rounds)
	for i := range out {
		r := &signals.Round{T: t0.Add(time.Duration(i) * 10 * time.Second), ScrapeSeconds: scrape.Seconds()}
		out[i] = r
		if d.blind != nil && d.blind(i) {
			r.Failed = map[string]string{inst: "connection refused"}
			continue
		}
		v := d.inflight(i)
		r.Instances = map[string]map[string]signals.Result{inst: {key: {Series: 1, Sum: v, Min: v, Max: v}}}
		byUser := map[string]apfdump.Load{"system:serviceaccount:shop:api": {Requests: 10, Seats: 10}}
		if v > 300 {
			byUser[agentUser] = apfdump.Load{Requests: 80, Seats: 80}
		}
		sum := apfdump.Summary{ByUser: byUser}
		for _, l := range byUser {
			sum.Total.Add(l)
		}
		r.Clients = map[string]apfdump.Summary{inst: sum}
		if d.unattributed != nil && d.unattributed(i) {
			r.Clients, r.ClientsFailed = nil, map[string]string{inst: "the server could not find the requested resource"}
		}
	}
	return out
}

// world is a cluster with the telemetry agent, a shop's DaemonSet, and the
// FlowSchema every ServiceAccount's requests match.
func world() World {
	ds := func(ns, name, sa string) appsv1.DaemonSet {
		d := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		d.Spec.Template.Spec.ServiceAccountName = sa
		return d
	}
	return World{
		DaemonSets:  []appsv1.DaemonSet{ds("telemetry", "agent", "agent"), ds("shop", "cache", "api")},
		FlowSchemas: []flowcontrolv1.FlowSchema{serviceAccounts()},
	}
}

func serviceAccounts() flowcontrolv1.FlowSchema {
	return flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "service-accounts"},
		Spec: flowcontrolv1.FlowSchemaSpec{
			MatchingPrecedence:         9000,
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-low"},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindGroup,
					Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"},
					Resources: []string{"*"}, ClusterScope: true, Namespaces: []string{"*"}}},
			}},
		},
	}
}

var operatorSA = types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed-controller-manager"}

// input is a back-test of the flood policy on d's recording.
func input(t *testing.T, d day) Input {
	t.Helper()
	cfg := readFloodPolicy(t)
	return Input{Name: "flood", Config: cfg, World: world(), Operator: operatorSA, Source: "recording flood.lsrec",
		Rounds: slices.Values(d.record(t, cfg)), Step: 10 * time.Second}
}

// line is an entry as the tests compare it: kind, subject and the round it
// came at.
func line(e Entry) string {
	return fmt.Sprintf("%s %s @%s", e.Kind, e.Subject, e.Time.Sub(t0))
}

// want is an entry expected after, a duration from t0.
func want(kind, subject, after string) string {
	return fmt.Sprintf("%s %s @%s", kind, subject, after)
}
