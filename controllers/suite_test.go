package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

// operatorNamespace is the operator's namespace in these tests.
const operatorNamespace = "loadshed-system"

var env *testenv.Env

// TestMain starts a control plane and the operator, wired as cmd/manager
// wires it, as cluster admin (controllers/operator tests the generated RBAC).
func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{
		Operator: &operator.Options{Namespace: operatorNamespace, MetricsAddr: "0", ProbeAddr: "0"},
	})
}

// timeout bounds every wait for the operator: generous, because the
// machines running the tests are shared and slow.
const timeout = 30 * time.Second

// eventually polls check until it returns nil, or fails the test with its
// last error after timeout.
func eventually(t *testing.T, check func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, check)
}

// readyIs returns a check that the policy's Ready condition has a status
// and reason for the policy's current generation.
func readyIs(t *testing.T, name string, status metav1.ConditionStatus, reason string) func() error {
	t.Helper()
	return func() error {
		p := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, p); err != nil {
			return err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
		switch {
		case c == nil:
			return fmt.Errorf("no Ready condition yet: %+v", p.Status)
		case c.Status != status || c.Reason != reason:
			return fmt.Errorf("Ready is %s/%s (%s), want %s/%s", c.Status, c.Reason, c.Message, status, reason)
		case c.ObservedGeneration != p.Generation || p.Status.ObservedGeneration != p.Generation:
			return fmt.Errorf("observed generation %d (condition %d), want %d", p.Status.ObservedGeneration, c.ObservedGeneration, p.Generation)
		}
		return nil
	}
}
