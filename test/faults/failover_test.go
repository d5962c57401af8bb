package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/replay"
)

// failoverElection is the leader election the failover tests run the
// replicas with: a Lease named id and short timings (6s, 4s, 1s), so that
// a killed leader's Lease expires in seconds; or, to measure them, the
// timings LOADSHED_TEST_LEADER_ELECTION names as "lease,renew,retry"
// (e.g. "30s,20s,5s", the binary's defaults).
func failoverElection(t *testing.T, id string) *replay.LeaderElection {
	t.Helper()
	le := &replay.LeaderElection{ID: id, LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second,
		RetryPeriod: time.Second}
	v := os.Getenv("LOADSHED_TEST_LEADER_ELECTION")
	if v == "" {
		return le
	}
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		t.Fatalf("LOADSHED_TEST_LEADER_ELECTION=%q: want lease,renew,retry", v)
	}
	for i, d := range []*time.Duration{&le.LeaseDuration, &le.RenewDeadline, &le.RetryPeriod} {
		var err error
		if *d, err = time.ParseDuration(parts[i]); err != nil {
			t.Fatalf("LOADSHED_TEST_LEADER_ELECTION=%q: %v", v, err)
		}
	}
	return le
}

// lease reads the leader election Lease named id.
func lease(id string) (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: id}, l)
	return l, err
}

// holder returns who holds a Lease; "" if no one.
func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitLeader waits until someone other than not holds the Lease named id,
// and returns the Lease.
func waitLeader(t *testing.T, id, not string) *coordinationv1.Lease {
	t.Helper()
	var got *coordinationv1.Lease
	env.Eventually(t, "a leader other than "+not, func() error {
		l, err := lease(id)
		if err != nil {
			return err
		}
		if h := holder(l); h == "" || h == not {
			return fmt.Errorf("the Lease names %q", h)
		}
		got = l
		return nil
	})
	return got
}

// standBy starts a replica and waits until it tries to take the Lease.
func standBy(t *testing.T, procs *processes, name string) {
	t.Helper()
	op := procs.start(name)
	env.Eventually(t, name+" stands by", func() error {
		b, err := os.ReadFile(op.Log)
		if err != nil {
			return err
		}
		// client-go's "Attempting to acquire leader lease..."
		if !strings.Contains(strings.ToLower(string(b)), "attempting to acquire leader lease") {
			return errors.New("no attempt to acquire the Lease in its log yet")
		}
		return nil
	})
}

// TestALeaderKilledMidRestoreIsReplacedAndTheRestoreGoesOn runs two
// replicas of the shipped binary with leader election, and SIGKILLs the
// leader as soon as it has written wave 2 of a restore. The Lease still
// names the dead leader (nothing released it); once it expires, the other
// replica takes it and goes on from wave 2, a probation after it took
// over, to the end: the pod template as it was, and nothing left once the
// policy is deleted. It logs the handover: from the kill to the Lease
// naming the new leader (its acquireTime), and to its first restore step.
func TestALeaderKilledMidRestoreIsReplacedAndTheRestoreGoesOn(t *testing.T) {
	originals := moreAgents(t, env.Cluster(t))
	le := failoverElection(t, "loadshed-failover")
	procs := runProcesses(t, le)
	ctx := context.Background()
	leader := procs.start("replica-a")
	first := holder(waitLeader(t, le.ID, ""))
	standBy(t, procs, "replica-b")

	p := crashPolicy("failover")
	s := &crashTest{t: t, policy: p, originals: originals, agents: []string{"agent"}, procs: procs,
		op: leader, history: watchPauses(t, p.Name)}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !procs.running() {
			procs.start("replica-cleanup")
		}
		env.DeletePolicy(t, p)
	})
	s.flood = env.StartLoad(t, "telemetry", 16, 0)
	t.Cleanup(s.flood.Stop)
	s.waitAllPaused()

	killed := s.killOn("the leader, as soon as it wrote agent's wave 2", func(name string, r pauseRecord) bool {
		return name == "agent" && r.wave == 2
	})
	if l, err := lease(le.ID); err != nil || holder(l) != first {
		t.Errorf("right after the kill the Lease names %q (%v), want the killed leader %q: a SIGKILL releases nothing",
			holder(l), err, first)
	}
	next := waitLeader(t, le.ID, first)
	acquired := next.Spec.AcquireTime.Time
	s.outages = append(s.outages, outage{killed: killed, back: acquired})
	s.finishRestore()

	var step time.Duration
	for _, r := range s.history.records("agent") {
		if r.seen.After(killed) {
			step = r.seen.Sub(killed)
			break
		}
	}
	t.Logf("failover: the Lease named the new leader %.1fs after the SIGKILL (lease %v, renew %v, retry %v; "+
		"transition %d); its first restore step came %.1fs after the kill",
		acquired.Sub(killed).Seconds(), le.LeaseDuration, le.RenewDeadline, le.RetryPeriod,
		*next.Spec.LeaseTransitions, step.Seconds())
}

// TestAGracefullyStoppedLeaderReleasesItsLease: a leader stopped with
// SIGINT (as the kubelet stops a container, with SIGTERM) releases the
// Lease as it goes (LeaderElectionReleaseOnCancel), so the standby replica
// takes it at its next try rather than once it expires. It logs the
// handover: from the signal to the Lease naming the new leader.
func TestAGracefullyStoppedLeaderReleasesItsLease(t *testing.T) {
	le := failoverElection(t, "loadshed-graceful")
	procs := runProcesses(t, le)
	a := procs.start("replica-a")
	first := holder(waitLeader(t, le.ID, ""))
	standBy(t, procs, "replica-b")

	signalled := time.Now()
	procs.stop(a)
	if l, err := lease(le.ID); err != nil || holder(l) == first {
		t.Errorf("once the leader stopped the Lease names %q (%v): it was not released", holder(l), err)
	}
	next := waitLeader(t, le.ID, first)
	t.Logf("graceful handover: the Lease named the new leader %.1fs after the signal (lease %v, renew %v, retry %v)",
		next.Spec.AcquireTime.Sub(signalled).Seconds(), le.LeaseDuration, le.RenewDeadline, le.RetryPeriod)
}
