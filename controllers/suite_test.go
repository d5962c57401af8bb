package controllers_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/operator"
	"github.com/loadshed/loadshed/test/testenv"
)

// operatorNamespace is the operator's namespace in these tests.
const operatorNamespace = "loadshed-system"

var env *testenv.Env

// TestMain starts a control plane and the operator, wired as cmd/manager
// wires it, as cluster admin (internal/operator tests the generated RBAC).
func TestMain(m *testing.M) {
	e, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env = e

	ctx, cancel := context.WithCancel(context.Background())
	code := func() int {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mgr, err := operator.New(env.Config, operator.Options{Namespace: operatorNamespace, MetricsAddr: "0", ProbeAddr: "0"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		done := make(chan error)
		go func() { done <- mgr.Start(ctx) }()
		code := m.Run()
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "the operator stopped with an error:", err)
			code = 1
		}
		return code
	}()
	cancel()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
	}
	os.Exit(code)
}

// timeout bounds every wait for the operator: generous, because the
// machines running the tests are shared and slow.
const timeout = 30 * time.Second

// eventually polls check until it returns nil, or fails the test with its
// last error after timeout.
func eventually(t *testing.T, check func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = check()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("gave up after %v: %v", timeout, last)
	}
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
