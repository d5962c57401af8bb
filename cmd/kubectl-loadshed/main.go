// Command kubectl-loadshed is loadshed's kubectl plugin: on PATH, it makes
// `kubectl loadshed ...` work. It shows what the operator sees and does,
// who loads the API servers, takes everything back by hand when the
// operator cannot, and back-tests a policy on recorded or Prometheus data.
// docs/kubectl.md documents it.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/loadshed/loadshed/internal/kubectl"
)

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if err := kubectl.NewCommand(streams).Execute(); err != nil {
		os.Exit(1)
	}
}
