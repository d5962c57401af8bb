package operator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/scale"
	"github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/test/testenv"
)

// BenchmarkReconcileAtScale measures one quiet reconcile of one policy on a
// cluster of 5,000 Nodes (8 KB each, as kubelets report them) and 1,000
// DaemonSets in 100 namespaces with 10 policies, against the real API
// server, with the operator's own cache (its transforms included) and
// sampler. Each iteration reconciles the next policy with a new reconciler,
// so that none is skipped as not yet due: it is the cost of an evaluation.
//
//	go test -run '^$' -bench ReconcileAtScale -benchmem ./controllers/operator/
func BenchmarkReconcileAtScale(b *testing.B) {
	const policies = scalePolicies
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	list, err := scaleWorld()
	if err != nil {
		b.Fatal(err)
	}
	s, err := scheme.New()
	if err != nil {
		b.Fatal(err)
	}
	mgrOpts, err := operator.ManagerOptions(s, operator.Options{Namespace: namespace, MetricsAddr: "0", ProbeAddr: "0"})
	if err != nil {
		b.Fatal(err)
	}
	mgr, err := ctrl.NewManager(env.Config, mgrOpts)
	if err != nil {
		b.Fatal(err)
	}
	smp, err := sampler.New(mgr.GetConfig(), mgr.GetClient(), clock.RealClock{})
	if err != nil {
		b.Fatal(err)
	}
	if err := mgr.Add(smp); err != nil {
		b.Fatal(err)
	}
	go func() { _ = mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		b.Fatal("the cache did not sync")
	}
	reconcile := func(i int) {
		r := &controllers.LoadShedPolicyReconciler{Client: mgr.GetClient(), Namespace: namespace, ServiceAccount: serviceAccount,
			Sampler: smp, Recorder: mgr.GetEventRecorder("loadshed-operator"), Clock: clock.RealClock{}}
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(list[i%policies])}); err != nil {
			b.Fatal(err)
		}
	}
	// The first loops register the policies with the sampler and fill the
	// cache; the measured ones read rounds of real scrapes.
	for i := range policies {
		reconcile(i)
	}
	for deadline := time.Now().Add(time.Minute); len(smp.Rounds()) < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no round of scrapes in a minute")
		}
	}
	for i := range policies {
		reconcile(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		reconcile(i)
	}
}

// The cluster of BenchmarkReconcileAtScale.
const scaleNodes, scaleNamespaces, scaleDaemonSets, scalePolicies = 5000, 100, 1000, 10

// scaleWorld creates the benchmark's cluster and policies once for the
// test binary (-count runs the benchmark again on the same API server).
var scaleWorld = sync.OnceValues(func() ([]*v1alpha1.LoadShedPolicy, error) {
	return createScaleWorld(context.Background(), scaleNodes, scaleNamespaces, scaleDaemonSets, scalePolicies)
})

func createScaleWorld(ctx context.Context, nodes, namespaces, daemonSets, policies int) ([]*v1alpha1.LoadShedPolicy, error) {
	cfg := *env.Config
	cfg.QPS, cfg.Burst = 2000, 4000
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return nil, err
	}
	if err := scale.Populate(ctx, cs, nodes, namespaces, daemonSets, policies); err != nil {
		return nil, err
	}
	list, err := scale.Policies(testenv.RepoRoot(), policies, 10*time.Second)
	if err != nil {
		return nil, err
	}
	for _, p := range list {
		if err := env.Client.Create(ctx, p); err != nil {
			return nil, err
		}
	}
	return list, nil
}
