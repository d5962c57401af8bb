// Package uninstall gives back everything loadshed holds, before the
// operator itself is removed: `loadshed-operator uninstall` runs it from
// `make undeploy` and from the Helm chart's pre-delete hook.
//
// The operator must still be running, and leading, while it runs: deleting a
// LoadShedPolicy is what makes the operator's finalizer restore every
// DaemonSet the policy paused and delete its throttles. So the order is:
//
//  1. delete every LoadShedPolicy, and wait until they are gone (their
//     finalizers have run);
//  2. check that no DaemonSet still carries loadshed's record (a pause, a
//     restore wave, or what a restore leaves for relapses): if one does, stop
//     there, because removing the operator would leave it paused for good;
//  3. delete loadshed's remaining FlowSchemas and PriorityLevelConfigurations
//     (labelled app.kubernetes.io/managed-by=loadshed): the operator's
//     self-protection schema, and anything an interrupted run left.
//
// Then the operator, its RBAC and the CRD can go.
package uninstall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Options say how long to wait and where to report.
type Options struct {
	// Timeout bounds the wait for the policies' finalizers; zero is DefaultTimeout.
	Timeout time.Duration
	// Poll is how often the policies are listed while waiting; zero is one second.
	Poll time.Duration
	// Out receives one line per step, for a person or a Job's log; nil discards them.
	Out io.Writer
}

// DefaultTimeout is long enough for the finalizers of many policies (each
// restores its DaemonSets at once, not in waves) on a busy API server.
const DefaultTimeout = 5 * time.Minute

// Result counts what Run deleted.
type Result struct {
	Policies, FlowSchemas, PriorityLevels int
}

// Run deletes every LoadShedPolicy, waits for the operator to give back what
// they held, checks that it did, and deletes loadshed's remaining APF
// objects. A cluster without the CRD has no policy: Run goes on to the APF
// objects.
func Run(ctx context.Context, c client.Client, opts Options) (Result, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	var res Result
	n, err := deletePolicies(ctx, c, opts)
	if err != nil {
		return res, err
	}
	res.Policies = n
	if err := checkDaemonSets(ctx, c); err != nil {
		return res, err
	}
	apf, err := ListAPF(ctx, c, nil)
	if err != nil {
		return res, err
	}
	if res.FlowSchemas, res.PriorityLevels, err = apf.Delete(ctx, c, opts.Out); err != nil {
		return res, err
	}
	say(opts.Out, "Done: deleted %d LoadShedPolicies, %d FlowSchemas and %d PriorityLevelConfigurations; no DaemonSet carries loadshed's record.",
		res.Policies, res.FlowSchemas, res.PriorityLevels)
	return res, nil
}

// deletePolicies deletes every policy and waits until none is left; it
// returns how many there were.
func deletePolicies(ctx context.Context, c client.Client, opts Options) (int, error) {
	var list v1alpha1.LoadShedPolicyList
	if err := c.List(ctx, &list); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			say(opts.Out, "No LoadShedPolicy CRD: no policy to delete.")
			return 0, nil
		}
		return 0, fmt.Errorf("listing LoadShedPolicies: %w", err)
	}
	for i := range list.Items {
		p := &list.Items[i]
		if err := c.Delete(ctx, p); client.IgnoreNotFound(err) != nil {
			return 0, fmt.Errorf("deleting LoadShedPolicy %s: %w", p.Name, err)
		}
		say(opts.Out, "Deleted LoadShedPolicy %s: the operator's finalizer gives back what it holds.", p.Name)
	}
	if len(list.Items) == 0 {
		say(opts.Out, "No LoadShedPolicy to delete.")
		return 0, nil
	}
	return len(list.Items), waitGone(ctx, c, opts)
}

// waitGone polls until no policy is left, printing what is being undone
// every few polls; on timeout it names the policies left and why.
func waitGone(ctx context.Context, c client.Client, opts Options) error {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	var left []v1alpha1.LoadShedPolicy
	polls := 0
	err := wait.PollUntilContextCancel(ctx, opts.Poll, true, func(ctx context.Context) (bool, error) {
		var list v1alpha1.LoadShedPolicyList
		if err := c.List(ctx, &list); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, nil // a busy API server: try again
		}
		left = list.Items
		if polls%5 == 0 && len(left) > 0 {
			say(opts.Out, "Waiting: %s.", describe(left))
		}
		polls++
		return len(left) == 0, nil
	})
	if err == nil {
		say(opts.Out, "Every LoadShedPolicy is gone.")
		return nil
	}
	if len(left) == 0 {
		return fmt.Errorf("waiting for the LoadShedPolicies to go: %w", err)
	}
	return fmt.Errorf("after %s, %s: the loadshed operator must be running, and leading, to give back what they hold "+
		"(check its pods and its leader election Lease); nothing else was removed", opts.Timeout, describe(left))
}

// describe names the policies left, with what their status says they are undoing.
func describe(ps []v1alpha1.LoadShedPolicy) string {
	parts := make([]string, 0, len(ps))
	for i := range ps {
		p := &ps[i]
		s := p.Name
		if cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReconciling); cond != nil && cond.Reason == v1alpha1.ReasonDeleting {
			s += " (" + cond.Message + ")"
		} else {
			s += " (no operator has started its deletion)"
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("%d LoadShedPolicies still hold their finalizer: %s", len(ps), strings.Join(parts, "; "))
}

// checkDaemonSets fails if a DaemonSet still carries loadshed's pause, a
// restore wave, or any loadshed.io annotation: with every policy gone,
// nothing would ever give it back.
func checkDaemonSets(ctx context.Context, c client.Client) error {
	var list appsv1.DaemonSetList
	if err := c.List(ctx, &list); err != nil {
		return fmt.Errorf("listing DaemonSets: %w", err)
	}
	var held []string
	for i := range list.Items {
		if carriesRecord(&list.Items[i]) {
			held = append(held, list.Items[i].Namespace+"/"+list.Items[i].Name)
		}
	}
	if len(held) == 0 {
		return nil
	}
	slices.Sort(held)
	return fmt.Errorf("every LoadShedPolicy is gone, but %d DaemonSets still carry loadshed's record: %s; "+
		"the operator did not give them back (see its log); nothing else was removed",
		len(held), strings.Join(held, ", "))
}

// carriesRecord reports whether a DaemonSet has anything of loadshed's.
func carriesRecord(ds *appsv1.DaemonSet) bool {
	if _, ok := ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]; ok {
		return true
	}
	for k := range ds.Annotations {
		if strings.HasPrefix(k, "loadshed.io/") {
			return true
		}
	}
	return false
}

// APF is loadshed's API Priority and Fairness objects: the FlowSchemas and
// PriorityLevelConfigurations it made (labelled
// app.kubernetes.io/managed-by=loadshed). Run deletes them all; kubectl
// loadshed release deletes the throttles among them.
type APF struct {
	FlowSchemas    []flowcontrolv1.FlowSchema
	PriorityLevels []flowcontrolv1.PriorityLevelConfiguration
}

// ListAPF lists loadshed's FlowSchemas and PriorityLevelConfigurations that
// also carry the labels in more (none: all of them).
func ListAPF(ctx context.Context, c client.Reader, more client.MatchingLabels) (APF, error) {
	sel := client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}
	for k, v := range more {
		sel[k] = v
	}
	var out APF
	fss := &flowcontrolv1.FlowSchemaList{}
	if err := c.List(ctx, fss, sel); err != nil {
		return out, fmt.Errorf("listing loadshed's FlowSchemas: %w", err)
	}
	plcs := &flowcontrolv1.PriorityLevelConfigurationList{}
	if err := c.List(ctx, plcs, sel); err != nil {
		return out, fmt.Errorf("listing loadshed's PriorityLevelConfigurations: %w", err)
	}
	out.FlowSchemas, out.PriorityLevels = fss.Items, plcs.Items
	return out, nil
}

// Delete deletes the FlowSchemas, then the priority levels, one line each
// on out, and returns how many of each it deleted (one already gone
// counts). It goes on past a failed delete and returns every error, but
// deletes no priority level once a FlowSchema could not be. opts
// go to each delete: with client.DryRunAll the API server checks each
// delete and keeps the object, and the lines say "Would delete".
func (a APF) Delete(ctx context.Context, c client.Writer, out io.Writer, opts ...client.DeleteOption) (flowSchemas, levels int, err error) {
	var errs []error
	for i := range a.FlowSchemas {
		if deleteOne(ctx, c, "FlowSchema", &a.FlowSchemas[i], out, &errs, opts) {
			flowSchemas++
		}
	}
	if len(errs) > 0 {
		// A FlowSchema left would name a priority level that is gone.
		return flowSchemas, levels, errors.Join(errs...)
	}
	for i := range a.PriorityLevels {
		if deleteOne(ctx, c, "PriorityLevelConfiguration", &a.PriorityLevels[i], out, &errs, opts) {
			levels++
		}
	}
	return flowSchemas, levels, errors.Join(errs...)
}

// deleteOne deletes one object and says so, or adds its error to errs.
func deleteOne(ctx context.Context, c client.Writer, kind string, obj client.Object, out io.Writer, errs *[]error,
	opts []client.DeleteOption) bool {
	if err := c.Delete(ctx, obj, opts...); client.IgnoreNotFound(err) != nil {
		*errs = append(*errs, fmt.Errorf("deleting %s %s: %w", kind, obj.GetName(), err))
		return false
	}
	if (&client.DeleteOptions{}).ApplyOptions(opts).DryRun != nil {
		say(out, "Would delete %s %s (server dry run).", kind, obj.GetName())
	} else {
		say(out, "Deleted %s %s.", kind, obj.GetName())
	}
	return true
}

// say writes one line of progress; a failed write to the log is no reason to stop.
func say(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format+"\n", args...)
}
