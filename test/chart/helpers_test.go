package chart

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/replay"
	loadshedscheme "github.com/loadshed/loadshed/internal/scheme"
	"github.com/loadshed/loadshed/test/helmtest"
	"github.com/loadshed/loadshed/test/testenv"
	"github.com/loadshed/loadshed/test/testutil"
)

// kube is a cluster-admin client that also knows CustomResourceDefinitions.
var kube = sync.OnceValues(func() (client.Client, error) {
	s, err := loadshedscheme.New()
	if err != nil {
		return nil, err
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.New(env.Config, client.Options{Scheme: s})
})

// getCRD reads the LoadShedPolicy CRD.
func getCRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	c, err := kube()
	if err != nil {
		return nil, err
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	return crd, c.Get(context.Background(), client.ObjectKey{Name: crdName}, crd)
}

func run(t *testing.T, h *helmtest.Helm, args ...string) string {
	t.Helper()
	out, err := h.Run(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := testutil.Poll(timeout, 200*time.Millisecond, check); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func crdEstablished() error {
	crd, err := getCRD()
	if err != nil {
		return err
	}
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return nil
		}
	}
	return errors.New("not established yet")
}

func deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := env.Client.Get(context.Background(), deploymentKey, d); err != nil {
		t.Fatal(err)
	}
	return d
}

// startLikeDeployment runs the operator's binary as the chart's Deployment
// would (helmtest.StartLikeDeployment), until the test ends.
func startLikeDeployment(t *testing.T, bin, name string) *replay.Operator {
	t.Helper()
	op, err := helmtest.StartLikeDeployment(context.Background(), env.Client, env.Config, deploymentKey,
		replay.OperatorOptions{Binary: bin, Dir: t.TempDir(), Name: name, ProxyURL: env.ProxyURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Stop)
	return op
}

// createPolicy creates the sample policy of config/samples under name.
func createPolicy(t *testing.T, name string) client.ObjectKey {
	t.Helper()
	objs, err := testenv.ReadObjects("config/samples/loadshed_v1alpha1_loadshedpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := objs[0]
	p.SetName(name)
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKey{Name: name}
}

// actedOn checks that the operator took a policy on: its finalizer, and a
// Ready condition for the policy's generation.
func actedOn(key client.ObjectKey) func() error {
	return func() error {
		p := &v1alpha1.LoadShedPolicy{}
		if err := env.Client.Get(context.Background(), key, p); err != nil {
			return err
		}
		if !slices.Contains(p.Finalizers, v1alpha1.Finalizer) {
			return fmt.Errorf("policy %s has no finalizer yet", key.Name)
		}
		ready := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != p.Generation {
			return fmt.Errorf("policy %s is not Ready: %+v", key.Name, ready)
		}
		return nil
	}
}
