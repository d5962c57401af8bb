// Package faults tests what loadshed does when its own process or the API
// server fails: the shipped operator binary killed (SIGKILL) at any step of
// a pause and its undoing, leader failover between two replicas, and
// kube-apiserver going down. It runs on a control plane of its own, with
// kube-controller-manager as test/mitigation does, so that the two suites
// run in parallel.
package faults

import (
	"testing"

	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/testenv"
)

var env harness.Env

func TestMain(m *testing.M) {
	// The uninstall test plays the Job controller and the kubelet for the
	// chart's pre-delete hook (test/helmtest.RunHookJobs).
	testenv.Main(m, &env.Env, testenv.Options{Components: []string{"kube-controller-manager"},
		DisabledControllers: []string{"job-controller"}})
}
