// Package mitigation tests throttling, pausing and restoring against a real
// kube-apiserver and kube-controller-manager: the DaemonSet controller
// creates and deletes the pods, so a pause and each restore wave are seen
// in the pods that exist.
package mitigation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/testenv"
)

var env harness.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env.Env, testenv.Options{Components: []string{"kube-controller-manager"}})
}

// watchWaves polls the DaemonSet and its pods until the returned function
// is called, and returns the most pods seen running during each wave.
func watchWaves(t *testing.T) func() map[int]int {
	t.Helper()
	var mu sync.Mutex
	most := map[int]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			ds := &appsv1.DaemonSet{}
			pods := &corev1.PodList{}
			if env.Client.Get(context.Background(), client.ObjectKey{Namespace: "telemetry", Name: "agent"}, ds) != nil ||
				env.Client.List(context.Background(), pods, client.InNamespace("telemetry")) != nil {
				continue
			}
			wave, err := strconv.Atoi(ds.Annotations[v1alpha1.AnnotationWave])
			if err != nil {
				continue
			}
			alive := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp.IsZero() {
					alive++
				}
			}
			mu.Lock()
			most[wave] = max(most[wave], alive)
			mu.Unlock()
		}
	}()
	return func() map[int]int {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// TestAFloodIsThrottledPausedAndRestoredInWaves runs the whole cycle: a
// flood from the telemetry DaemonSet's ServiceAccount is throttled (its
// burst gets 429s while an innocent ServiceAccount and the operator keep
// going), then paused (its pods go), then, once quiet, restored wave by
// wave to a pod template exactly as it was; then the throttle goes, and
// deleting the policy leaves nothing behind.
func TestAFloodIsThrottledPausedAndRestoredInWaves(t *testing.T) {
	original := env.Cluster(t)
	stop := env.RunOperator(t)
	defer stop()
	ctx := context.Background()
	p := harness.Policy("flood")
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	// The operator's own requests go to exempt, which no throttle touches.
	env.Eventually(t, "the self-protection FlowSchema is in place", func() error {
		fs := &flowcontrolv1.FlowSchema{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: shed.SelfProtectionName}, fs); err != nil {
			return err
		}
		if fs.Spec.PriorityLevelConfiguration.Name != flowcontrolv1.PriorityLevelConfigurationNameExempt ||
			fs.Spec.MatchingPrecedence >= shed.MinThrottlePrecedence {
			return fmt.Errorf("self-protection routes to %s at %d",
				fs.Spec.PriorityLevelConfiguration.Name, fs.Spec.MatchingPrecedence)
		}
		return nil
	})
	innocent := env.StartLoad(t, "payments", 1, 200*time.Millisecond)
	flood := env.StartLoad(t, "telemetry", 16, 0)

	env.Eventually(t, "the telemetry ServiceAccount is throttled", func() error {
		fs := &flowcontrolv1.FlowSchema{}
		sa := attribution.ServiceAccount{Namespace: "telemetry", Name: "agent"}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: shed.ThrottleName(sa)}, fs); err != nil {
			return err
		}
		if fs.Spec.PriorityLevelConfiguration.Name != shed.ThrottleLevelName("flood") || fs.Spec.MatchingPrecedence != 8998 {
			return fmt.Errorf("throttle FlowSchema %+v", fs.Spec)
		}
		return nil
	})
	env.Eventually(t, "the flood gets 429s", func() error {
		if flood.Throttled.Load() == 0 {
			return errors.New("no 429 yet")
		}
		return nil
	})
	env.Eventually(t, "the DaemonSet is paused and its pods are gone", func() error {
		if err := env.PodsAre(0)(); err != nil {
			return err
		}
		if shed.PausedBy(env.GetDS(t)) != "flood" {
			return errors.New("not recorded as paused by flood")
		}
		return nil
	})
	// The operator caches objects without managedFields and updates the
	// DaemonSet from its cache: the API server keeps the other managers'
	// entries (an update that omits the field leaves it as it is).
	if !slices.ContainsFunc(env.GetDS(t).ManagedFields, func(e metav1.ManagedFieldsEntry) bool {
		return e.Manager != controllers.FieldOwner && e.Subresource == ""
	}) {
		t.Errorf("the paused DaemonSet lost its creator's managedFields: %+v", env.GetDS(t).ManagedFields)
	}
	// Watch the restore from now on: the pods seen during each wave.
	seen := watchWaves(t)
	flood.Stop()
	innocent.Stop()
	t.Logf("flood: %d ok, %d throttled (429), %d failed; innocent: %d ok, %d throttled, %d failed",
		flood.OK.Load(), flood.Throttled.Load(), flood.Failed.Load(),
		innocent.OK.Load(), innocent.Throttled.Load(), innocent.Failed.Load())
	if innocent.Throttled.Load() != 0 || innocent.Failed.Load() != 0 || innocent.OK.Load() == 0 {
		t.Errorf("the innocent ServiceAccount was hurt: %d ok, %d throttled, %d failed",
			innocent.OK.Load(), innocent.Throttled.Load(), innocent.Failed.Load())
	}

	env.Eventually(t, "the restore completes with every pod back", func() error {
		if err := env.PodsAre(harness.NodeCount)(); err != nil {
			return err
		}
		ds := env.GetDS(t)
		if shed.PausedBy(ds) != "" {
			return errors.New("still recorded as paused")
		}
		return nil
	})
	if got := seen(); got[1] != harness.NodeCount/2 {
		t.Errorf("during wave 1 (50%%) at most %d pods ran, want %d (all waves: %v)", got[1], harness.NodeCount/2, got)
	}

	// The pod template is exactly as it was, and of the annotations only the
	// DaemonSet controller's template generation moved (every template
	// change bumps it).
	got := env.GetDS(t)
	if !equality.Semantic.DeepEqual(got.Spec.Template, original.Spec.Template) {
		t.Errorf("the pod template after the restore differs from the original:\n%s",
			cmp.Diff(original.Spec.Template, got.Spec.Template))
	}
	annotations := func(ds *appsv1.DaemonSet) map[string]string {
		out := map[string]string{}
		for k, v := range ds.Annotations {
			if k != "deprecated.daemonset.template.generation" {
				out[k] = v
			}
		}
		return out
	}
	// The restore is remembered, for a relapse, until the policy goes.
	if _, ok := shed.ReadRestoration(got, "flood"); !ok {
		t.Errorf("the restore left no record for a relapse: %v", got.Annotations)
	}
	got, _ = shed.Forget(got, "flood")
	if !equality.Semantic.DeepEqual(annotations(got), annotations(original)) {
		t.Errorf("annotations after the restore: %v, want %v and the restore's record", got.Annotations, original.Annotations)
	}
	env.Eventually(t, "the throttle goes once quiet for stableFor again", func() error {
		if left := env.Owned(t); len(left) > 0 {
			return fmt.Errorf("still there: %v", left)
		}
		return nil
	})
	// Status is written at the end of the loop that removed the throttle.
	env.Eventually(t, "the policy reports it is healthy again", func() error {
		final := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), final); err != nil {
			return err
		}
		if final.Status.Phase != v1alpha1.PhaseHealthy || final.Status.PausedCount != 0 || final.Status.ThrottledCount != 0 {
			return fmt.Errorf("after the incident the policy is %s, %d paused, %d throttled",
				final.Status.Phase, final.Status.PausedCount, final.Status.ThrottledCount)
		}
		return nil
	})
	if err := env.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	env.Eventually(t, "the policy is deleted", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.LoadShedPolicy{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
	if got := env.GetDS(t); !equality.Semantic.DeepEqual(annotations(got), annotations(original)) {
		t.Errorf("annotations after the policy was deleted: %v, want %v", got.Annotations, original.Annotations)
	}
}
