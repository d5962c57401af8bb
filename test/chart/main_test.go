package chart

import (
	"testing"

	"github.com/loadshed/loadshed/test/testenv"
)

// env is a kube-apiserver without loadshed's CRDs (the chart installs
// them), with kube-controller-manager (garbage collection, namespace
// deletion, the Deployment's ReplicaSet) but without its Job controller:
// helmtest plays it for the chart's hook Jobs.
var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{NoCRDs: true,
		Components: []string{"kube-controller-manager"}, DisabledControllers: []string{"job-controller"}})
}
