package helmtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/test/testutil"
)

// StartLikeDeployment runs the operator's binary as the Deployment named
// by key would run it in a pod: as the Deployment's ServiceAccount (a
// TokenRequest token, through base's rights), with its container's
// arguments, with leader election as those say; but without metrics or
// probe servers, whose ports are the host's here. opts give the binary, the
// directory, the process's name and the proxy; its Namespace,
// ServiceAccount, LeaderElection and Args are set here.
func StartLikeDeployment(ctx context.Context, c client.Client, base *rest.Config, key client.ObjectKey,
	opts replay.OperatorOptions) (*replay.Operator, error) {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, key, d); err != nil {
		return nil, fmt.Errorf("reading Deployment %s: %w", key, err)
	}
	args := slices.DeleteFunc(slices.Clone(d.Spec.Template.Spec.Containers[0].Args), func(a string) bool {
		return strings.HasPrefix(a, "--metrics-bind-address") || strings.HasPrefix(a, "--health-probe-bind-address")
	})
	opts.Namespace, opts.ServiceAccount = key.Namespace, d.Spec.Template.Spec.ServiceAccountName
	// Leader election is on here and the Deployment's own --leader-elect
	// flag, in args, comes last and wins.
	opts.LeaderElection, opts.Args = &replay.LeaderElection{}, args
	return replay.StartOperatorAs(ctx, base, opts)
}

// StopWhenDeleted stops op once the Deployment named by key is gone, as the
// kubelet stops a deleted Deployment's pods (or after timeout), and closes
// the returned channel then.
func StopWhenDeleted(c client.Client, key client.ObjectKey, op *replay.Operator,
	timeout time.Duration) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = testutil.Poll(timeout, 100*time.Millisecond, func() error {
			err := c.Get(context.Background(), key, &appsv1.Deployment{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("the Deployment %s is still there: %w", key, err)
		})
		op.Stop()
	}()
	return stopped
}
