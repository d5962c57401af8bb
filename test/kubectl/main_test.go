// Package kubectl tests kubectl loadshed's cluster commands (status, why,
// release) end to end: the plugin binary, built as it ships, run as its own
// process against a real kube-apiserver, as people bound to the
// ClusterRoles of config/kubectl, while the shipped operator runs as its
// own process with leader election and a flood gets a DaemonSet paused.
package kubectl

import (
	"testing"

	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/testenv"
)

var env harness.Env

func TestMain(m *testing.M) {
	// kube-controller-manager runs the DaemonSets' pods and the
	// ServiceAccounts' default accounts.
	testenv.Main(m, &env.Env, testenv.Options{Components: []string{"kube-controller-manager"}})
}
