package mitigation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
)

func eventReasons(t *testing.T, regarding string) map[string]bool {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := env.Client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range list.Items {
		if e.Regarding.Name == regarding {
			out[e.Reason] = true
		}
	}
	return out
}

// TestDryRunChangesNothing: a dryRun policy reports what it would do, in
// status and "Would..." events, each once and in the order the policy
// would act (the pause pause.after after the throttle), and leaves the
// cluster as it is.
func TestDryRunChangesNothing(t *testing.T) {
	original := env.Cluster(t)
	stop := env.RunOperator(t)
	defer stop()
	p := harness.Policy("dry-run") // pause.after 3s
	p.Spec.DryRun = true
	apf := flowControlWrites(t)
	ds := daemonSetWrites(t)
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	defer env.DeletePolicy(t, p)

	flood := env.StartLoad(t, "telemetry", 8, 0)
	env.Eventually(t, "the dryRun policy says what it would do", func() error {
		reasons := eventReasons(t, "dry-run")
		if !reasons[v1alpha1.DryRunReason(v1alpha1.EventThrottled)] || !reasons[v1alpha1.DryRunReason(v1alpha1.EventPaused)] {
			return fmt.Errorf("events: %v", reasons)
		}
		got := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
			return err
		}
		if len(got.Status.Actions) != 2 || !strings.HasPrefix(got.Status.Actions[0].Message, "dryRun") {
			return fmt.Errorf("status actions: %+v", got.Status.Actions)
		}
		return nil
	})
	flood.Stop()
	// Nothing of APF's configuration changed (so no request's priority
	// level, FlowSchema or fair-queuing flow did), nor the DaemonSet.
	if writes := apf(); len(writes) > 0 {
		t.Errorf("dryRun wrote to APF's configuration: %v", writes)
	}
	if n := ds.stop(); n > 0 {
		t.Errorf("dryRun wrote the DaemonSet %d times", n)
	}
	for _, reason := range []string{v1alpha1.EventThrottled, v1alpha1.EventPaused} {
		if n := env.EventCount(t, "dry-run", v1alpha1.DryRunReason(reason)); n != 1 {
			t.Errorf("%d %s events, want 1", n, v1alpha1.DryRunReason(reason))
		}
	}
	if left := env.Owned(t); len(left) > 0 {
		t.Errorf("dryRun created %v", left)
	}
	if got := env.GetDS(t); !harness.SameTemplate(got, original) || shed.PausedBy(got) != "" {
		t.Errorf("dryRun changed the DaemonSet")
	}
	if err := env.PodsAre(harness.NodeCount)(); err != nil {
		t.Error(err)
	}
}

// flowControlWrites watches FlowSchemas and PriorityLevelConfigurations
// from now on, and returns a function that stops and lists every write
// seen, as "type kind/name": all but the operator's self-protection schema,
// which every replica applies as it starts.
func flowControlWrites(t *testing.T) func() []string {
	t.Helper()
	ctx := context.Background()
	fc := kubernetes.NewForConfigOrDie(env.Config).FlowcontrolV1()
	fss, err := fc.FlowSchemas().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plcs, err := fc.PriorityLevelConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fsw, err := fc.FlowSchemas().Watch(ctx, metav1.ListOptions{ResourceVersion: fss.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	plcw, err := fc.PriorityLevelConfigurations().Watch(ctx, metav1.ListOptions{ResourceVersion: plcs.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var writes []string
	var wg sync.WaitGroup
	for _, w := range []watch.Interface{fsw, plcw} {
		wg.Go(func() {
			for ev := range w.ResultChan() {
				o, ok := ev.Object.(client.Object)
				if !ok || o.GetName() == shed.SelfProtectionName {
					continue
				}
				mu.Lock()
				writes = append(writes, fmt.Sprintf("%s %T/%s", ev.Type, o, o.GetName()))
				mu.Unlock()
			}
		})
	}
	return func() []string {
		fsw.Stop()
		plcw.Stop()
		wg.Wait()
		return writes
	}
}

// TestPausesSurviveRestartsOverridesAndDeletion: a pause holds across an
// operator restart, is put back (once per backoff step) when someone removes
// it, a restore interrupted by a restart completes exactly, and deleting a
// policy in the middle of a pause undoes it.
func TestPausesSurviveRestartsOverridesAndDeletion(t *testing.T) {
	original := env.Cluster(t)
	ctx := context.Background()
	stop := env.RunOperator(t)
	p := harness.Policy("lifecycle")
	p.Spec.Actions.Pause.After = &metav1.Duration{}
	p.Spec.Restore.Backoff.Initial = &metav1.Duration{Duration: 20 * time.Second}
	p.Spec.Restore.Backoff.JitterPercent = ptr.To[int32](0) // so that the backoff step is exactly 20s
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	// Whatever fails, the policy goes (and undoes its pause) before the next test.
	t.Cleanup(func() { env.DeletePolicy(t, p) })
	flood := env.StartLoad(t, "telemetry", 8, 0)
	env.Eventually(t, "the DaemonSet is paused", func() error {
		if shed.PausedBy(env.GetDS(t)) != "lifecycle" {
			return errors.New("not paused yet")
		}
		return env.PodsAre(0)()
	})

	// Someone removes the pause: it is put back once, and recorded.
	override := func() {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			ds := env.GetDS(t)
			delete(ds.Spec.Template.Spec.NodeSelector, v1alpha1.LabelPaused)
			return env.Client.Update(ctx, ds)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	override()
	env.Eventually(t, "the removed pause is put back and reported", func() error {
		ds := env.GetDS(t)
		if ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] == "" || shed.OverriddenAt(ds).IsZero() {
			return errors.New("not put back yet")
		}
		if !eventReasons(t, "lifecycle")[v1alpha1.EventPauseOverridden] {
			return errors.New("no PauseOverridden event")
		}
		return nil
	})
	first := shed.OverriddenAt(env.GetDS(t))
	override()
	// Removed again at once: loadshed waits a backoff step (20s) before
	// putting it back, instead of fighting.
	env.Eventually(t, "the second removal is reported", func() error {
		got := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == v1alpha1.ConditionShedding && c.Reason == v1alpha1.ReasonPauseOverridden {
				return nil
			}
		}
		return errors.New("Shedding does not say PauseOverridden")
	})
	if ds := env.GetDS(t); ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] != "" {
		t.Errorf("the pause was put back again within one backoff step of %v", first)
	}
	env.Eventually(t, "after the backoff step the pause is put back", func() error {
		ds := env.GetDS(t)
		if ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] == "" {
			return errors.New("not yet")
		}
		if again := shed.OverriddenAt(ds); again.Sub(first) < 20*time.Second-time.Second {
			return fmt.Errorf("put back %v after the first time, within the backoff step", again.Sub(first))
		}
		return nil
	})
	// One event per put-back, none while the second removal waited.
	env.Eventually(t, "one PauseOverridden event per put-back", func() error {
		if n := env.EventCount(t, "lifecycle", v1alpha1.EventPauseOverridden); n != 2 {
			return fmt.Errorf("%d PauseOverridden events on the policy for 2 put-backs, want 2", n)
		}
		return nil
	})

	// A restart in the middle of the pause loses nothing.
	before := env.GetDS(t)
	stop()
	stop = env.RunOperator(t)
	env.Eventually(t, "the new operator keeps the pause", func() error {
		got := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			return err
		}
		if got.Status.PausedCount != 1 || got.Status.Phase != v1alpha1.PhaseShedding {
			return fmt.Errorf("phase %s, %d paused", got.Status.Phase, got.Status.PausedCount)
		}
		return nil
	})
	after := env.GetDS(t)
	if after.Annotations[v1alpha1.AnnotationPausedAt] != before.Annotations[v1alpha1.AnnotationPausedAt] ||
		after.Annotations[v1alpha1.AnnotationOriginal] != before.Annotations[v1alpha1.AnnotationOriginal] {
		t.Errorf("the restart rewrote the pause record: %v -> %v", before.Annotations, after.Annotations)
	}

	// The flood ends; a restart in the middle of the restore loses nothing.
	flood.Stop()
	env.Eventually(t, "the restore starts", func() error {
		if w := env.GetDS(t).Annotations[v1alpha1.AnnotationWave]; w != "1" {
			return fmt.Errorf("wave %q", w)
		}
		return nil
	})
	stop()
	stop = env.RunOperator(t)
	defer stop()
	env.Eventually(t, "the restore completes under the new operator", func() error {
		ds := env.GetDS(t)
		if shed.PausedBy(ds) != "" {
			return fmt.Errorf("still paused, wave %s", ds.Annotations[v1alpha1.AnnotationWave])
		}
		return env.PodsAre(harness.NodeCount)()
	})
	if got := env.GetDS(t); !equality.Semantic.DeepEqual(got.Spec.Template, original.Spec.Template) {
		t.Errorf("the pod template after an interrupted restore differs from the original")
	}

	// Deleting a policy in the middle of a pause undoes it all.
	flood = env.StartLoad(t, "telemetry", 8, 0)
	env.Eventually(t, "the DaemonSet is paused again", func() error {
		if shed.PausedBy(env.GetDS(t)) != "lifecycle" {
			return errors.New("not paused yet")
		}
		return nil
	})
	flood.Stop()
	env.DeletePolicy(t, p)
	if got := env.GetDS(t); !harness.SameTemplate(got, original) || shed.PausedBy(got) != "" {
		t.Errorf("deleting the policy did not restore the DaemonSet exactly")
	}
	if left := env.Owned(t); len(left) > 0 {
		t.Errorf("deleting the policy left %v", left)
	}
	env.Eventually(t, "every pod is back", env.PodsAre(harness.NodeCount))
	fss := &flowcontrolv1.FlowSchemaList{}
	err := env.Client.List(ctx, fss, client.MatchingLabels{v1alpha1.LabelPolicy: "lifecycle"})
	if err != nil || len(fss.Items) > 0 {
		t.Errorf("FlowSchemas of the policy left: %d (%v)", len(fss.Items), err)
	}
}
