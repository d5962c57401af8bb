package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/test/harness"
)

const (
	// crashProbation is each wave's probation, and stableFor, in the crash tests.
	crashProbation = 4 * time.Second
	// crashDowntime is how long the operator stays down after a kill:
	// longer than a probation, so that were the time without an operator
	// counted as calm, the next wave would come as soon as one is back.
	crashDowntime = 6 * time.Second
)

// crashPolicy is the test policy set to pause every DaemonSet of the
// flooding ServiceAccount in the loop that throttles it, and to restore
// them in three waves (34%, 67% and 100% of the nodes, then the original
// template) with short probations and no jitter.
func crashPolicy(name string) *v1alpha1.LoadShedPolicy {
	p := harness.Policy(name)
	p.Spec.Actions.Pause.After = &metav1.Duration{}
	p.Spec.Actions.Pause.MaxPaused = 3
	p.Spec.Restore.StableFor = &metav1.Duration{Duration: crashProbation}
	p.Spec.Restore.Probation = &metav1.Duration{Duration: crashProbation}
	p.Spec.Restore.WavePercents = []int32{34, 67, 100}
	p.Spec.Restore.Backoff.JitterPercent = ptr.To[int32](0)
	return p
}

// crashTest is one run of the crash test: the shipped operator as its own
// process, killed at one step and started again.
type crashTest struct {
	t         *testing.T
	policy    *v1alpha1.LoadShedPolicy
	originals map[string]*appsv1.DaemonSet
	// agents are the DaemonSets' names, in order.
	agents  []string
	procs   *processes
	op      *replay.Operator
	history *pauseHistory
	flood   *harness.Load
	outages []outage
}

// startCrashTest creates telemetry/agent and the extra agents, starts the
// operator process, the policy and the flood.
func startCrashTest(t *testing.T, name string, extra ...string) *crashTest {
	t.Helper()
	return startCrashTestWith(t, name, runProcesses(t, nil), extra...)
}

// startCrashTestWith is startCrashTest with the operator run by procs.
func startCrashTestWith(t *testing.T, name string, procs *processes, extra ...string) *crashTest {
	t.Helper()
	ctx := context.Background()
	s := &crashTest{t: t, policy: crashPolicy(name)}
	s.originals = moreAgents(t, env.Cluster(t), extra...)
	s.agents = append([]string{"agent"}, extra...)
	s.procs = procs
	s.op = s.procs.start("operator-1")
	s.history = watchPauses(t, name)
	if err := env.Client.Create(ctx, s.policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The finalizer needs an operator.
		if !s.procs.running() {
			s.procs.start("operator-cleanup")
		}
		env.DeletePolicy(t, s.policy)
	})
	s.flood = env.StartLoad(t, "telemetry", 16, 0)
	t.Cleanup(s.flood.Stop)
	return s
}

// waitAllPaused waits until every agent is paused, and stops the flood.
func (s *crashTest) waitAllPaused() {
	s.t.Helper()
	env.Eventually(s.t, "every agent is paused", func() error {
		for _, name := range s.agents {
			if r := s.history.latest(name); r.pausedBy != s.policy.Name {
				return fmt.Errorf("%s is %s", name, r)
			}
		}
		return nil
	})
	s.flood.Stop()
}

// waitFor waits until an agent's latest record satisfies ok.
func (s *crashTest) waitFor(what, name string, ok func(pauseRecord) bool) {
	s.t.Helper()
	env.Eventually(s.t, what, func() error {
		if r := s.history.latest(name); !ok(r) {
			return fmt.Errorf("%s is %s", name, r)
		}
		return nil
	})
}

// killOn SIGKILLs the operator from the watch, within milliseconds of the
// first write that satisfies when, and returns when it was killed.
func (s *crashTest) killOn(what string, when func(name string, r pauseRecord) bool) time.Time {
	s.t.Helper()
	var killed time.Time
	op := s.op
	ran := s.history.on(when, func() { killed = s.procs.kill(op) })
	select {
	case <-ran:
	case <-time.After(harness.Timeout):
		s.t.Fatalf("%s: not reached in %v", what, harness.Timeout)
	}
	s.t.Logf("killed %s (SIGKILL) %s; the records then: %s", logFile(op), what, s.describe())
	return killed
}

// kill SIGKILLs the operator now.
func (s *crashTest) kill(what string) time.Time {
	s.t.Helper()
	killed := s.procs.kill(s.op)
	s.t.Logf("killed %s (SIGKILL) %s; the records then: %s", logFile(s.op), what, s.describe())
	return killed
}

// describe says where each agent is, and what the policy's status says.
func (s *crashTest) describe() string {
	out := ""
	for _, name := range s.agents {
		out += fmt.Sprintf("%s %s; ", name, s.history.latest(name))
	}
	p := &v1alpha1.LoadShedPolicy{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(s.policy), p); err != nil {
		return out + "policy: " + err.Error()
	}
	var actions []string
	for _, a := range p.Status.Actions {
		if a.Kind == v1alpha1.ActionPause {
			actions = append(actions, fmt.Sprintf("%s wave %d", a.Target, a.Wave))
		}
	}
	return out + fmt.Sprintf("status: %v", actions)
}

// restart keeps the operator down for crashDowntime, checking that nothing
// changes meanwhile, runs lift (if any) and starts a new process.
func (s *crashTest) restart(killed time.Time, lift func()) {
	s.t.Helper()
	blind(s.t, crashDowntime)
	if lift != nil {
		lift()
	}
	back := time.Now()
	s.op = s.procs.start(fmt.Sprintf("operator-%d", len(s.outages)+2))
	s.outages = append(s.outages, outage{killed: killed, back: back})
}

// finishRestore waits until every agent is restored with all its pods,
// checks each one's path there and that they were restored one at a time,
// then deletes the policy and checks that nothing of it is left.
func (s *crashTest) finishRestore() {
	t := s.t
	t.Helper()
	for _, name := range s.agents {
		s.waitFor(name+" is restored", name, func(r pauseRecord) bool { return r.pausedBy == "" && !r.restoredAt.IsZero() })
		env.Eventually(t, name+" has all its pods back", podsOf(name, harness.NodeCount))
	}
	type span struct {
		name       string
		start, end time.Time
	}
	spans := make([]span, 0, len(s.agents))
	for _, name := range s.agents {
		recs := s.history.records(name)
		checkRestore(t, name, recs, len(s.policy.Spec.Restore.WavePercents), crashProbation, crashProbation, s.outages)
		sp := span{name: name, end: recs[len(recs)-1].restoredAt}
		for _, r := range recs {
			if r.wave == 1 {
				sp.start = r.waveStarted
				break
			}
		}
		spans = append(spans, sp)
		got := &appsv1.DaemonSet{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(s.originals[name]), got); err != nil {
			t.Fatal(err)
		}
		checkTemplate(t, s.originals[name], got)
	}
	// One DaemonSet at a time: each restore began after the one before
	// ended (wave starts are recorded to the second).
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end.Truncate(time.Second)) {
			t.Errorf("%s's restore began at %v, before %s's ended at %v", spans[i].name, spans[i].start, spans[i-1].name,
				spans[i-1].end)
		}
	}
	env.DeletePolicy(t, s.policy)
	checkNothingLeft(t, s.policy.Name, s.originals)
}

// TestTheOperatorKilledAtAnyStepLeavesNothingHalfDone kills the shipped
// operator, running as its own process under its own ServiceAccount, with
// SIGKILL at each step of a pause and its undoing, keeps it down for
// longer than a probation, and starts a new one: right after it paused (so
// perhaps between two DaemonSets' pauses), mid-wave (within milliseconds
// of writing a wave's template, before the DaemonSet controller created
// the wave's pods), between waves (a wave's pods up, in its probation),
// and during the finalizer's undo (after it restored some of the
// DaemonSets, not all). Each time, nothing changes while no operator runs;
// the new one goes on from the wave the DaemonSets record, one wave at a
// time and none before its probation (which the time nobody watched does
// not count towards); and in the end every pod template is the original
// and nothing of the policy's is left.
func TestTheOperatorKilledAtAnyStepLeavesNothingHalfDone(t *testing.T) {
	pausedFirst := func(policyName string) func(string, pauseRecord) bool {
		return func(_ string, r pauseRecord) bool { return r.pausedBy == policyName }
	}
	for _, tc := range []struct {
		name  string
		extra []string
		run   func(s *crashTest)
	}{
		{
			name:  "right after pausing",
			extra: []string{"agent-b"},
			run: func(s *crashTest) {
				// The flood goes on: the new operator pauses whatever the
				// old one did not get to.
				killed := s.killOn("as soon as it paused a DaemonSet", pausedFirst(s.policy.Name))
				s.restart(killed, nil)
				s.waitAllPaused()
				s.finishRestore()
			},
		},
		{
			name:  "mid-wave",
			extra: []string{"agent-b"},
			run: func(s *crashTest) {
				s.waitAllPaused()
				killed := s.killOn("as soon as it wrote agent's wave 2", func(name string, r pauseRecord) bool {
					return name == "agent" && r.wave == 2
				})
				if err := podsOf("agent", 7)(); err == nil {
					s.t.Log("the DaemonSet controller had already created wave 2's pods: the kill came after the write, not mid-wave")
				}
				s.restart(killed, nil)
				s.finishRestore()
			},
		},
		{
			name:  "between waves",
			extra: []string{"agent-b"},
			run: func(s *crashTest) {
				s.waitAllPaused()
				s.waitFor("agent's wave 2 started", "agent", func(r pauseRecord) bool { return r.wave == 2 })
				// Wave 2 is 67% of the nodes: ceil(6.7) = 7 pods. Kill once
				// they are up, or halfway through the probation at the latest
				// (a busy machine), so that the wave cannot have moved on.
				up := podsOf("agent", 7)
				for deadline := s.history.latest("agent").seen.Add(crashProbation / 2); time.Now().Before(deadline) &&
					up() != nil; {
					time.Sleep(100 * time.Millisecond)
				}
				if err := up(); err != nil {
					s.t.Logf("killing before wave 2's pods are all up: %v", err)
				}
				killed := s.kill("in wave 2's probation")
				if r := s.history.latest("agent"); r.pausedBy == "" || r.wave != 2 {
					s.t.Fatalf("agent was %s when the operator was killed, not in wave 2's probation: the test was too slow", r)
				}
				s.restart(killed, nil)
				s.finishRestore()
			},
		},
		{
			// An overloaded API server may refuse the new operator's first
			// status writes: the loops that follow read the trigger states
			// the killed one wrote, from before the time nobody watched.
			name:  "between waves, the first status writes after the restart refused",
			extra: []string{"agent-b"},
			run: func(s *crashTest) {
				s.waitAllPaused()
				s.waitFor("agent's wave 2 started", "agent", func(r pauseRecord) bool { return r.wave == 2 })
				killed := s.kill("in wave 2's probation")
				lift := holdStatus(s.t)
				s.restart(killed, nil)
				time.Sleep(crashProbation)
				lift()
				s.finishRestore()
			},
		},
		{
			name:  "during the finalizer's undo",
			extra: []string{"agent-b", "agent-c"},
			run: func(s *crashTest) {
				t := s.t
				s.waitAllPaused()
				s.waitFor("agent's restore started", "agent", func(r pauseRecord) bool { return r.wave >= 1 })
				// The API server refuses agent-c's restore, so that the undo
				// stops having restored the others, as a kill between two
				// of its writes would find it.
				lift := holdDaemonSet(t, "agent-c")
				if err := env.Client.Delete(context.Background(), s.policy); err != nil {
					t.Fatal(err)
				}
				env.Eventually(t, "the undo restored agent and agent-b, not agent-c", func() error {
					for name, paused := range map[string]bool{"agent": false, "agent-b": false, "agent-c": true} {
						if r := s.history.latest(name); (r.pausedBy != "") != paused || (!paused && len(r.loadshed) > 0) {
							return fmt.Errorf("%s is %s", name, r)
						}
					}
					return nil
				})
				killed := s.kill("during the finalizer's undo")
				before := map[string]int{}
				for _, name := range s.agents {
					before[name] = len(s.history.records(name))
				}
				s.restart(killed, lift)
				waitPolicyGone(t, s.policy.Name)
				for _, name := range []string{"agent", "agent-b"} {
					if recs := s.history.records(name); len(recs) != before[name] {
						t.Errorf("%s, restored before the kill, was written again: %v", name, recs[before[name]:])
					}
				}
				for _, name := range s.agents {
					env.Eventually(t, name+" has all its pods back", podsOf(name, harness.NodeCount))
				}
				checkNothingLeft(t, s.policy.Name, s.originals)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(startCrashTest(t, "crash", tc.extra...))
		})
	}
}

// holdDaemonSet has the API server refuse every update to a telemetry
// DaemonSet (its status aside) until the returned function is called; both
// return once the API server enforces it, or no longer does.
func holdDaemonSet(t *testing.T, name string) func() {
	t.Helper()
	policyName := "hold-" + name
	remove := env.DenyPolicy(t, policyName, "apps", "daemonsets", fmt.Sprintf("object.metadata.name != %q", name))
	t.Cleanup(remove)
	refused := func() (bool, error) {
		ds := &appsv1.DaemonSet{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: "telemetry", Name: name}, ds); err != nil {
			return false, err
		}
		if ds.Annotations == nil {
			ds.Annotations = map[string]string{}
		}
		ds.Annotations["loadshed-test/probe"] = "1"
		err := env.Client.Update(context.Background(), ds, client.DryRunAll)
		switch {
		case err == nil:
			return false, nil
		case strings.Contains(err.Error(), policyName):
			return true, nil
		}
		return false, err
	}
	env.Eventually(t, "the API server refuses updates to "+name, func() error {
		if ok, err := refused(); !ok {
			return errors.Join(errors.New("not yet"), err)
		}
		return nil
	})
	return func() {
		remove()
		env.Eventually(t, "the API server allows updates to "+name+" again", func() error {
			if ok, err := refused(); ok || err != nil {
				return errors.Join(errors.New("still refused"), err)
			}
			return nil
		})
	}
}

// holdStatus has the API server refuse every write to a policy's status
// until the returned function is called; both return once the API server
// enforces it, or no longer does.
func holdStatus(t *testing.T) func() {
	t.Helper()
	const name = "hold-policy-status"
	remove := env.DenyPolicy(t, name, v1alpha1.GroupVersion.Group, "loadshedpolicies/status", "false")
	t.Cleanup(remove)
	refused := func() (bool, error) {
		list := &v1alpha1.LoadShedPolicyList{}
		if err := env.Client.List(context.Background(), list); err != nil || len(list.Items) == 0 {
			return false, errors.Join(errors.New("no policy to write the status of"), err)
		}
		p := &list.Items[0]
		base := p.DeepCopy()
		p.Status.ObservedGeneration++
		// A merge patch carries no resourceVersion: no conflict with the
		// operator's writes hides the admission's answer.
		err := env.Client.Status().Patch(context.Background(), p, client.MergeFrom(base), client.DryRunAll)
		switch {
		case err == nil:
			return false, nil
		case strings.Contains(err.Error(), name):
			return true, nil
		}
		return false, err
	}
	env.Eventually(t, "the API server refuses status writes", func() error {
		if ok, err := refused(); !ok {
			return errors.Join(errors.New("not yet"), err)
		}
		return nil
	})
	return func() {
		remove()
		env.Eventually(t, "the API server allows status writes again", func() error {
			if ok, err := refused(); ok || err != nil {
				return errors.Join(errors.New("still refused"), err)
			}
			return nil
		})
	}
}
