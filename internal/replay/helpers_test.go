package replay

import (
	"os"
	"testing"

	"github.com/loadshed/loadshed/internal/localcluster"
)

// startCluster starts a local cluster from the binaries `make test` found or
// built, and stops it when the test ends.
func startCluster(t *testing.T, opts localcluster.Options) *localcluster.Cluster {
	t.Helper()
	opts.Assets = os.Getenv("KUBEBUILDER_ASSETS")
	if opts.Assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make test`")
	}
	c, err := localcluster.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	return c
}
