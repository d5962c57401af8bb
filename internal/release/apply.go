package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/shed"
)

// FieldOwner is the field manager of release's writes: the DaemonSets it
// restores show it in their managedFields.
const FieldOwner = "kubectl-loadshed"

// Change is one object release changed, or would change (DryRun).
type Change struct {
	// Kind is DaemonSet, FlowSchema or PriorityLevelConfiguration; Name
	// is namespace/name for a DaemonSet.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Action is restored, forgot-last-restore, deleted or unchanged.
	Action string `json:"action"`
	// Detail says what, e.g. the scheduling given back.
	Detail string `json:"detail,omitempty"`
}

// The actions of a Change.
const (
	ActionRestored  = "restored"
	ActionForgot    = "forgot-last-restore"
	ActionDeleted   = "deleted"
	ActionUnchanged = "unchanged"
)

// Result is what release did (or, with DryRun, would do), and what
// `kubectl loadshed release -o json|yaml` prints.
type Result struct {
	// DryRun is true when every write was sent as a server dry run.
	DryRun bool `json:"dryRun"`
	// Policies are the policies whose pauses and throttles were released.
	Policies []string `json:"policies"`
	// Leader is who held the operator's Lease, and Leading whether it led.
	Leader  string `json:"leader,omitempty"`
	Leading bool   `json:"leading"`
	// Changes are the objects changed, in order.
	Changes []Change `json:"changes"`
	// Notes are warnings: a policy an operator will act on again, say.
	Notes []string `json:"notes,omitempty"`
}

// Apply carries a plan out, saying on out what it changes, one line per
// object as it goes: the DaemonSets first (restored exactly from their
// record, each from a fresh read, again on a conflict), then the throttles.
// With dryRun every write is a server dry run: the API server checks it
// (admission, RBAC) and stores nothing.
func Apply(ctx context.Context, c client.Client, p Plan, dryRun bool, out io.Writer) (Result, error) {
	res := Result{DryRun: dryRun, Policies: p.Policies, Leader: p.Leader.Holder, Leading: p.Leading, Notes: p.Notes}
	update := []client.UpdateOption{client.FieldOwner(FieldOwner)}
	var del []client.DeleteOption
	if dryRun {
		update, del = append(update, client.DryRunAll), []client.DeleteOption{client.DryRunAll}
	}
	var errs []error
	for _, r := range p.Restore {
		ch, err := restore(ctx, c, r, update)
		errs = record(&res, out, ch, err, errs, dryRun)
	}
	for _, r := range p.Forget {
		ch, err := forget(ctx, c, r, update)
		errs = record(&res, out, ch, err, errs, dryRun)
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("releasing the DaemonSets (the throttles are left in place): %w", errors.Join(errs...))
	}
	if _, _, err := p.Throttles.Delete(ctx, c, out, del...); err != nil {
		return res, fmt.Errorf("deleting the throttles: %w", err)
	}
	for _, fs := range p.Throttles.FlowSchemas {
		res.Changes = append(res.Changes, Change{Kind: "FlowSchema", Name: fs.Name, Action: ActionDeleted})
	}
	for _, l := range p.Throttles.PriorityLevels {
		res.Changes = append(res.Changes, Change{Kind: "PriorityLevelConfiguration", Name: l.Name, Action: ActionDeleted})
	}
	return res, nil
}

// record adds a DaemonSet's change to the result and says it, or adds its error.
func record(res *Result, out io.Writer, ch Change, err error, errs []error, dryRun bool) []error {
	if err != nil {
		return append(errs, err)
	}
	res.Changes = append(res.Changes, ch)
	say := sentences[ch.Action]
	line := say.done
	if dryRun {
		line = say.would
	}
	_, _ = fmt.Fprintf(out, line+": %s.\n", ch.Name, ch.Detail)
	return errs
}

// sentences say a DaemonSet's change, done or (server dry run) would be done.
var sentences = map[string]struct{ done, would string }{
	ActionRestored: {"Restored DaemonSet %s", "Would restore DaemonSet %s (server dry run)"},
	ActionForgot: {"Removed the last-restore record of DaemonSet %s",
		"Would remove the last-restore record of DaemonSet %s (server dry run)"},
	ActionUnchanged: {"Left DaemonSet %s as it is", "Would leave DaemonSet %s as it is"},
}

// restore gives a DaemonSet back its pod template's scheduling from the
// record on it, and removes the record, as the operator's finalizer does
// (shed.Restore, remembering nothing). Each try reads the DaemonSet afresh:
// one no longer paused by the policy is left as it is.
func restore(ctx context.Context, c client.Client, r Record, opts []client.UpdateOption) (Change, error) {
	ch := Change{Kind: "DaemonSet", Name: r.Key.String()}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds := &appsv1.DaemonSet{}
		if err := c.Get(ctx, r.Key, ds); err != nil {
			if apierrors.IsNotFound(err) {
				ch.Action, ch.Detail = ActionUnchanged, "it is gone"
				return nil
			}
			return err
		}
		if by := shed.PausedBy(ds); by != r.Policy {
			ch.Action, ch.Detail = ActionUnchanged, fmt.Sprintf("no longer paused by policy %s (paused by %q now)", r.Policy, by)
			return nil
		}
		rec, _ := shed.ReadPause(ds)
		want, err := shed.Restore(ds, nil)
		if err != nil {
			return err
		}
		if err := c.Update(ctx, want, opts...); err != nil {
			return err
		}
		ch.Action = ActionRestored
		ch.Detail = fmt.Sprintf("paused by policy %s, wave %d, attempt %d; scheduling as before the pause (%s), "+
			"loadshed's record removed", r.Policy, rec.Wave, rec.Attempt, describe(want))
		return nil
	})
	if err != nil {
		return ch, fmt.Errorf("restoring DaemonSet %s: %w", r.Key, err)
	}
	return ch, nil
}

// forget removes what a policy's last restore left on a DaemonSet
// (shed.Forget), from a fresh read each try.
func forget(ctx context.Context, c client.Client, r Record, opts []client.UpdateOption) (Change, error) {
	ch := Change{Kind: "DaemonSet", Name: r.Key.String()}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ds := &appsv1.DaemonSet{}
		if err := c.Get(ctx, r.Key, ds); err != nil {
			if apierrors.IsNotFound(err) {
				ch.Action, ch.Detail = ActionUnchanged, "it is gone"
				return nil
			}
			return err
		}
		want, changed := shed.Forget(ds, r.Policy)
		if !changed {
			ch.Action, ch.Detail = ActionUnchanged, "no last-restore record of policy "+r.Policy+" any more"
			return nil
		}
		if err := c.Update(ctx, want, opts...); err != nil {
			return err
		}
		ch.Action, ch.Detail = ActionForgot, "what policy "+r.Policy+"'s last restore left (a relapse would have continued its backoff)"
		return nil
	})
	if err != nil {
		return ch, fmt.Errorf("removing the last-restore record from DaemonSet %s: %w", r.Key, err)
	}
	return ch, nil
}

// describe writes a pod template's scheduling: its nodeSelector and
// whether it has an affinity.
func describe(ds *appsv1.DaemonSet) string {
	spec := ds.Spec.Template.Spec
	parts := make([]string, 0, len(spec.NodeSelector))
	for _, k := range slices.Sorted(maps.Keys(spec.NodeSelector)) {
		parts = append(parts, k+"="+spec.NodeSelector[k])
	}
	sel := "no nodeSelector"
	if len(parts) > 0 {
		sel = "nodeSelector " + strings.Join(parts, ",")
	}
	if spec.Affinity != nil {
		return sel + ", with its affinity"
	}
	return sel + ", no affinity"
}
