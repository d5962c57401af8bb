package prometheus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/test/testutil"
)

// The load's clients and where they work.
const (
	loadNamespace = "load"
	// steadySA reads, lists and writes ConfigMaps at a steady pace, on the
	// workload-low priority level, as ServiceAccounts are.
	steadySA = "steady"
	// stuckSA sends LISTs that wait in the API server (below), routed to a
	// tiny priority level of its own: its seats are always taken, a queue
	// stands in front of them, and what does not fit is rejected.
	stuckSA = "stuck"
	// tinyLevel is that priority level: 1 share of the server's
	// concurrency (3 seats of 600), nothing lent or borrowed, one queue of
	// tinyQueue requests.
	tinyLevel = "loadshed-test-tiny"
	tinyQueue = 4
	// stuckPerServer is how many of stuckSA's LISTs each kube-apiserver is
	// sent at once: 3 executing, tinyQueue queued, the rest rejected.
	stuckPerServer = 10
	// steadyConfigMaps are the ConfigMaps the steady client reads and
	// writes.
	steadyConfigMaps = 50
)

// startLoad puts a steady load on every kube-apiserver until the test
// ends, such that every catalogue signal has a value that is not trivial
// where the load can make one (see TestEveryCatalogueSignalAgreesWithPrometheus).
//
// The steady client GETs 10, UPDATEs 2 and LISTs 1 ConfigMaps a second on
// each kube-apiserver. The stuck client's LISTs ask for a resourceVersion
// far ahead of the store's with resourceVersionMatch=NotOlderThan: the API
// server waits 3s for its watch cache to catch up, holding an APF seat
// but hardly any CPU, then answers 504 (too large resource version). On
// the tiny level that makes executing seats and a queue that stand, a
// steady rate of rejections (429) and of timed-out requests (504), and
// queue waits and LIST latencies of seconds, on a machine the test shares.
func startLoad(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := setUpLoad(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range env.APIServers() {
		steady, err := kubernetes.NewForConfig(testutil.AsServiceAccount(env.APIServerConfig(i), loadNamespace, steadySA))
		if err != nil {
			t.Fatal(err)
		}
		stuck, err := kubernetes.NewForConfig(testutil.AsServiceAccount(env.APIServerConfig(i), loadNamespace, stuckSA))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { runSteady(ctx, steady) })
		for range stuckPerServer {
			wg.Go(func() { runStuck(ctx, stuck) })
		}
	}
}

// setUpLoad creates the namespace, the ServiceAccounts and their rights,
// the ConfigMaps, and the tiny priority level with its FlowSchema.
func setUpLoad(ctx context.Context) error {
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace, Name: "configmaps"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
			Verbs: []string{"get", "list", "update"}}}}
	objs := make([]client.Object, 0, 8+steadyConfigMaps)
	objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: loadNamespace}}, role,
		tinyPriorityLevel(), stuckFlowSchema())
	for _, sa := range []string{steadySA, stuckSA} {
		objs = append(objs, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace, Name: sa}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace, Name: sa},
				Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: loadNamespace, Name: sa}},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}})
	}
	for i := range steadyConfigMaps {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace,
			Name: fmt.Sprintf("cm-%02d", i)}, Data: map[string]string{"n": "0"}})
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

func tinyPriorityLevel() *flowcontrolv1.PriorityLevelConfiguration {
	return &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: tinyLevel},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
			Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
				NominalConcurrencyShares: ptr.To[int32](1),
				LendablePercent:          ptr.To[int32](0),
				BorrowingLimitPercent:    ptr.To[int32](0),
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeQueue,
					Queuing: &flowcontrolv1.QueuingConfiguration{Queues: 1, HandSize: 1, QueueLengthLimit: tinyQueue}},
			},
		},
	}
}

func stuckFlowSchema() *flowcontrolv1.FlowSchema {
	return &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: tinyLevel},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: tinyLevel},
			MatchingPrecedence:         600,
			DistinguisherMethod: &flowcontrolv1.FlowDistinguisherMethod{
				Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
					ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: loadNamespace, Name: stuckSA}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""},
					Resources: []string{"configmaps"}, Namespaces: []string{loadNamespace}}},
			}},
		},
	}
}

// runSteady sends, each second, 10 GETs, 2 UPDATEs and a LIST, spread
// over the second, until ctx is done.
func runSteady(ctx context.Context, cs kubernetes.Interface) {
	cms := cs.CoreV1().ConfigMaps(loadNamespace)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		name := fmt.Sprintf("cm-%02d", n%steadyConfigMaps)
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil:
			continue
		case n%5 == 0:
			cm.Data["n"] = strconv.Itoa(n)
			_, _ = cms.Update(ctx, cm, metav1.UpdateOptions{})
		case n%10 == 1:
			_, _ = cms.List(ctx, metav1.ListOptions{})
		}
	}
}

// runStuck sends the stuck LISTs one after the other until ctx is done,
// with no retry of client-go's; after a rejection it waits a second (as
// Retry-After says).
func runStuck(ctx context.Context, cs kubernetes.Interface) {
	ahead := strconv.FormatInt(1<<50, 10)
	for ctx.Err() == nil {
		err := cs.CoreV1().RESTClient().Get().Namespace(loadNamespace).Resource("configmaps").
			Param("resourceVersion", ahead).Param("resourceVersionMatch", string(metav1.ResourceVersionMatchNotOlderThan)).
			MaxRetries(0).Do(ctx).Error()
		// A stuck LIST ends in a 504 after 3s; anything else is followed by
		// a second's wait.
		if err != nil && !apierrors.IsTimeout(err) && !errors.Is(err, context.Canceled) {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
