package replay

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/localcluster"
	loadshedscheme "github.com/loadshed/loadshed/internal/scheme"
)

// TestTheOperatorRunsAsItsOwnProcess builds cmd/manager and runs it as its
// ServiceAccount with the generated RBAC, as the replay's loadshed scenario
// does, and checks that it evaluates a policy, scraping the API server at
// the address default/kubernetes publishes (through the cluster's proxy).
func TestTheOperatorRunsAsItsOwnProcess(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	c := startCluster(t, localcluster.Options{CRDs: []string{filepath.Join(root, "config", "crd", "bases")}})
	scheme, err := loadshedscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op, err := StartOperator(ctx, admin, c.Config, OperatorOptions{Root: root, Namespace: "loadshed-system",
		ServiceAccount: "loadshed-controller-manager", Dir: t.TempDir(), ProxyURL: c.ProxyURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Stop()

	p := &v1alpha1.LoadShedPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "replay"},
		Spec: v1alpha1.LoadShedPolicySpec{
			DryRun:   true,
			Interval: &metav1.Duration{Duration: time.Second},
			Triggers: []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400")}},
		},
	}
	if err := admin.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &v1alpha1.LoadShedPolicy{}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			return false, nil
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		metrics := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionMetricsAvailable)
		last = got.Status.WorstSignal
		// It scrapes the address default/kubernetes publishes, through
		// the cluster's proxy, not the configured host.
		return ready != nil && ready.Status == metav1.ConditionTrue && metrics != nil && metrics.Status == metav1.ConditionTrue &&
			strings.Contains(metrics.Message, "scraped 1 of 1 API server instances ("+c.AdvertisedURL(0)+")") &&
			got.Status.Phase == v1alpha1.PhaseHealthy, nil
	})
	if err != nil {
		t.Fatalf("the operator process did not evaluate the policy (worst signal %q)", last)
	}
	t.Logf("the operator process evaluates the policy: %s", last)
	if rss, err := op.PeakRSS(); err != nil || rss < 1<<20 {
		t.Errorf("peak RSS %d bytes, %v: want a real figure", rss, err)
	}
}
