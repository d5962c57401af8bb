package controllers

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/backtest"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
)

// floodRounds are 160 rounds every 10s, each done 0.3s after it starts, of
// one API server: 600 requests in flight (80 of them the telemetry
// agent's) in rounds 12 to 59 and 72 to 79 (a relapse during the restore),
// nothing scraped in rounds 100 to 103, 100 in flight otherwise.
func floodRounds(t *testing.T, key string, t0 time.Time) []*signals.Round {
	t.Helper()
	const inst = "10.0.0.1:6443"
	var out []*signals.Round
	for i := range 160 {
		r := &signals.Round{T: t0.Add(time.Duration(i) * 10 * time.Second), ScrapeSeconds: 0.3}
		out = append(out, r)
		if i >= 100 && i < 104 {
			r.Failed = map[string]string{inst: "connection refused"}
			continue
		}
		v := 100.0
		byUser := map[string]apfdump.Load{"system:serviceaccount:shop:api": {Requests: 10, Seats: 10}}
		if (i >= 12 && i < 60) || (i >= 72 && i < 80) {
			v = 600
			byUser["system:serviceaccount:telemetry:agent"] = apfdump.Load{Requests: 80, Seats: 80}
		}
		sum := apfdump.Summary{ByUser: byUser}
		for _, l := range byUser {
			sum.Total.Add(l)
		}
		r.Instances = map[string]map[string]signals.Result{inst: {key: {Series: 1, Sum: v, Min: v, Max: v}}}
		r.Clients = map[string]apfdump.Summary{inst: sum}
	}
	return out
}

// TestTheBackTestIsWhatTheOperatorDoes feeds the same rounds to the
// back-test and to the reconciler itself (a fake client, a fake clock, a
// sampler that replays the rounds), woken as controller-runtime wakes it:
// after each round, and when it asked to be requeued. The events it records
// are the back-test's timeline, at the same times.
func TestTheBackTestIsWhatTheOperatorDoes(t *testing.T) {
	data, err := os.ReadFile("../internal/backtest/testdata/flood.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obj, cfg, err := backtest.ReadPolicy(data)
	if err != nil {
		t.Fatal(err)
	}
	accums, err := backtest.Accumulators(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rounds := floodRounds(t, accums[len(accums)-1].Key(), t0)
	agent, cache := daemonSet("telemetry", "agent", "agent"), daemonSet("shop", "cache", "api")
	world := backtest.World{DaemonSets: []appsv1.DaemonSet{agent, cache}, FlowSchemas: []flowcontrolv1.FlowSchema{*matchedSchema(9000)}}
	operator := types.NamespacedName{Namespace: "loadshed-system", Name: "loadshed-controller-manager"}

	res, err := backtest.Run(backtest.Input{Name: obj.Name, Config: cfg, World: world, Operator: operator, Source: "synthetic",
		Rounds: slices.Values(rounds), Step: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range res.Timeline {
		if e.Kind != backtest.KindTriggerUnknown && e.Kind != backtest.KindTriggerKnown {
			want = append(want, fmt.Sprintf("%s %s @%s: %s", e.Kind, e.Subject, e.Time.Sub(t0), why(e.Kind, e.Reason)))
		}
	}

	got := operate(t, obj, rounds, &agent, &cache, matchedSchema(9000))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the operator did:\n  %s\nthe back-test says:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	t.Logf("the operator and the back-test both did:\n  %s", strings.Join(got, "\n  "))
	if len(want) < 12 {
		t.Errorf("the back-test says only %q: the scenario does not exercise the planner", want)
	}
}

// operate runs the reconciler on the rounds and returns the events it
// recorded on the policy, as "Reason subject @time since the first round".
func operate(t *testing.T, obj *v1alpha1.LoadShedPolicy, rounds []*signals.Round, objs ...client.Object) []string {
	t.Helper()
	obj = obj.DeepCopy()
	obj.Finalizers = []string{v1alpha1.Finalizer}
	r, _ := fakeReconciler(t, append(objs, obj)...)
	clk := clocktesting.NewFakeClock(rounds[0].T)
	rec := events.NewFakeRecorder(1000)
	replay := sampler.Replay()
	r.Sampler, r.Clock, r.Recorder, r.ServiceAccount = replay, clk, rec, "loadshed-controller-manager"
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: obj.Name}}
	var got []string
	var requeue time.Time
	reconcile := func(now time.Time) {
		clk.SetTime(now)
		result, err := r.Reconcile(context.Background(), req)
		if err != nil {
			t.Fatalf("reconcile at %s: %v", now, err)
		}
		requeue = time.Time{}
		if result.RequeueAfter > 0 {
			requeue = now.Add(result.RequeueAfter)
		}
		got = append(got, policyEvents(rec, now.Sub(rounds[0].T))...)
	}
	for _, round := range rounds {
		done := round.T.Add(time.Duration(round.ScrapeSeconds * float64(time.Second)))
		for !requeue.IsZero() && requeue.Before(done) {
			reconcile(requeue)
		}
		replay.Add(round)
		reconcile(done)
	}
	return got
}

// why is the sentence of an event, but for a restore step's, which
// describes the wave by the nodes it runs on: the operator counts them (none
// here), the back-test, without nodes, gives the wave's share.
func why(kind, sentence string) string {
	if kind == string(plan.RestoreStarted) || kind == string(plan.WaveAdvanced) {
		return "(a wave)"
	}
	return sentence
}

// policyEvents drains the events recorded, and returns those recorded on
// the policy (not their copies on DaemonSets) as "Reason subject @after".
func policyEvents(rec *events.FakeRecorder, after time.Duration) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			if strings.HasSuffix(e, "(policy flood)") {
				continue
			}
			// "Type Reason Note"; a change's note is "Kind target: why",
			// a trigger's "Trigger name fired: ...".
			fields := strings.SplitN(e, " ", 5)
			reason, subject, note := fields[1], strings.TrimSuffix(fields[3], ":"), fields[2]+" "+fields[3]+" "+fields[4]
			if reason == v1alpha1.EventTriggerFired || reason == v1alpha1.EventTriggerCleared {
				subject = fields[3]
			} else {
				note = fields[4]
			}
			out = append(out, fmt.Sprintf("%s %s @%s: %s", reason, subject, after, why(reason, note)))
		default:
			return out
		}
	}
}
