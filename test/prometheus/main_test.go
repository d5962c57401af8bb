// Package prometheus tests loadshed against a real Prometheus server
// (bin/prometheus-<version>, LOADSHED_PROMETHEUS) scraping the two
// kube-apiservers of a local control plane: Prometheus reaches each, also
// after one restarts, and every catalogue signal's PromQL, run by
// Prometheus, agrees with what the operator computes from its own scrapes.
package prometheus

import (
	"testing"

	"github.com/loadshed/loadshed/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.Options{APIServers: 2})
}
