package chart

import (
	"testing"

	"github.com/loadshed/loadshed/test/testenv"
)

// env is a kube-apiserver without loadshed's CRDs (the chart installs
// them) and without kube-controller-manager (helmtest plays the Job
// controller for the chart's hook Jobs).
var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{NoCRDs: true})
}
