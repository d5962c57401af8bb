package faults

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/testutil"
)

// TestAnAPIServerOutageDoesNotCountAsCalm: the flood is paused and has
// stopped, and the trigger is clear, when kube-apiserver goes down for 12s.
// The restore waits stableFor after it is back: none of the time in which
// nothing could be read counts as calm. And its counters starting again
// from zero fire nothing. (Here a loop usually evaluates, and writes, the
// trigger as Unknown just as the server comes back, which restarts the
// streak anyway; the trigger's table tests cover the loop that does not.)
func TestAnAPIServerOutageDoesNotCountAsCalm(t *testing.T) {
	env.Cluster(t)
	t.Cleanup(env.RunOperator(t)) // stops after the policy is deleted: its finalizer needs the operator
	ctx := context.Background()
	const stableFor = 30 * time.Second
	p := harness.Policy("outage")
	p.Spec.Restore.StableFor = &metav1.Duration{Duration: stableFor}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, p) })
	flood := env.StartLoad(t, "telemetry", 16, 0)
	env.Eventually(t, "the DaemonSet is paused", func() error {
		if shed.PausedBy(env.GetDS(t)) != "outage" {
			return errors.New("not paused yet")
		}
		return nil
	})
	flood.Stop()
	env.Eventually(t, "the trigger is clear", func() error {
		for _, s := range env.GetPolicy(t, "outage").Status.Signals {
			if s.State != v1alpha1.TriggerOK {
				return fmt.Errorf("%s is %s", s.Name, s.State)
			}
		}
		return nil
	})
	if at := testutil.FirstEventAt(t, env.Client, "outage", v1alpha1.EventRestoreStarted); !at.IsZero() {
		t.Fatalf("the restore started at %v, before the outage: the test took too long to get there", at)
	}
	stopped, err := env.RestartAPIServerAfter(12 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	t.Logf("kube-apiserver %s, down 12s, back at %s", stopped, back.Format(time.RFC3339))

	env.Eventually(t, "the restore starts", func() error {
		if testutil.FirstEventAt(t, env.Client, "outage", v1alpha1.EventRestoreStarted).IsZero() {
			return errors.New("no RestoreStarted yet")
		}
		return nil
	})
	// The first value after the outage is read within an interval (1s) of
	// the server answering again.
	restored := testutil.FirstEventAt(t, env.Client, "outage", v1alpha1.EventRestoreStarted)
	t.Logf("the restore started %v after kube-apiserver was back (stableFor %v)",
		restored.Sub(back).Round(time.Second), stableFor)
	if restored.Before(back.Add(stableFor - 2*time.Second)) {
		t.Errorf("the restore started %v after kube-apiserver was back, before stableFor (%v) of calm could be seen",
			restored.Sub(back).Round(time.Second), stableFor)
	}
	if n := env.EventCount(t, "outage", v1alpha1.EventTriggerFired); n != 1 {
		t.Errorf("%d TriggerFired events, want 1: the counters starting again from zero fired it again", n)
	}
}
