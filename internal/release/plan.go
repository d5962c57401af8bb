// Package release is kubectl loadshed release, the break-glass: it gives
// back what loadshed holds without the operator. It restores paused
// DaemonSets exactly from the record on them and removes loadshed's
// throttles, with the operator's own code (internal/shed Restore and
// Forget) and uninstall's (internal/uninstall APF.Delete). Decide is pure:
// what to give back, and whether to refuse; Apply carries it out.
package release

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/inspect"
	"github.com/loadshed/loadshed/internal/operatorref"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/internal/uninstall"
)

// Scope says what to release: one DaemonSet, what one policy holds, or
// everything. Exactly one is set.
type Scope struct {
	// DaemonSet: its pause, what its last restore left, and the throttle
	// of its ServiceAccount (with its policy's priority level, when
	// nothing else of that policy is left).
	DaemonSet *types.NamespacedName
	// Policy: every pause and last-restore record naming it, its throttle
	// FlowSchemas and its throttling priority level, as deleting the
	// policy would, the policy itself kept.
	Policy string
	// All: every pause, last-restore record and throttle of every policy.
	All bool
}

// Input is what Decide reads.
type Input struct {
	Scope Scope
	// DaemonSet is the one Scope.DaemonSet names, as read (nil if it does not exist).
	DaemonSet *appsv1.DaemonSet
	// Recorded are the DaemonSets that carry a record of loadshed's (their
	// metadata is enough).
	Recorded []appsv1.DaemonSet
	// Throttles are loadshed's throttle FlowSchemas and priority levels
	// (labelled loadshed.io/role=throttle); never the self-protection one.
	Throttles uninstall.APF
	// Policies are every LoadShedPolicy.
	Policies []v1alpha1.LoadShedPolicy
	// Lease is the operator's leader election Lease (nil when there is
	// none), LeaseKey where it was looked for, and LeaseErr why it could
	// not be read.
	Lease    *coordinationv1.Lease
	LeaseKey types.NamespacedName
	LeaseErr error
	// Force releases even while an operator leads and a policy is not suspended.
	Force bool
	Now   time.Time
}

// Plan is what to give back.
type Plan struct {
	// Restore are the paused DaemonSets to restore, each with the policy
	// that paused it.
	Restore []Record
	// Forget are the DaemonSets to remove a last-restore record from.
	Forget []Record
	// Throttles are the FlowSchemas and priority levels to delete.
	Throttles uninstall.APF
	// Policies are the policies whose pauses or throttles these are.
	Policies []string
	// Leader is the Lease's holder; Leading whether it leads now.
	Leader  operatorref.Leader
	Leading bool
	// Notes are warnings for the person: a policy left active, say.
	Notes []string
}

// Record is a DaemonSet and the policy its record names.
type Record struct {
	Key    types.NamespacedName
	Policy string
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool {
	return len(p.Restore)+len(p.Forget)+len(p.Throttles.FlowSchemas)+len(p.Throttles.PriorityLevels) == 0
}

// Decide says what to release, or why not: it refuses while an operator
// leads (its Lease held and renewed within its lease duration) and a
// policy whose pause or throttle it would release exists and is not
// suspended, unless Force; the operator would put back what it takes away.
func Decide(in Input) (Plan, error) {
	var p Plan
	switch {
	case in.Scope.DaemonSet != nil:
		if in.DaemonSet == nil {
			return p, fmt.Errorf("no DaemonSet %s", in.Scope.DaemonSet)
		}
		p = forDaemonSet(in)
	case in.Scope.Policy != "":
		p = matching(in, func(policyName string) bool { return policyName == in.Scope.Policy })
		if p.Empty() && findPolicy(in.Policies, in.Scope.Policy) == nil {
			return p, fmt.Errorf("no LoadShedPolicy named %q, and nothing of a policy of that name to release", in.Scope.Policy)
		}
	case in.Scope.All:
		p = matching(in, func(string) bool { return true })
	default:
		return p, fmt.Errorf("name a DaemonSet, --policy or --all")
	}
	p.Policies = involved(p)
	p.Leader, p.Leading = operatorref.Leading(in.Lease, in.Now)
	if p.Empty() {
		return p, nil
	}
	if err := refusal(in, p); err != nil {
		return p, err
	}
	p.Notes = notes(in, p)
	return p, nil
}

// matching releases every record and throttle of the policies keep accepts.
func matching(in Input, keep func(policyName string) bool) Plan {
	var p Plan
	for i := range in.Recorded {
		ds := &in.Recorded[i]
		key := client.ObjectKeyFromObject(ds)
		if by := shed.PausedBy(ds); by != "" && keep(by) {
			p.Restore = append(p.Restore, Record{Key: key, Policy: by})
		} else if by := shed.RestoredBy(ds); by != "" && keep(by) {
			p.Forget = append(p.Forget, Record{Key: key, Policy: by})
		}
	}
	for _, fs := range in.Throttles.FlowSchemas {
		if keep(fs.Labels[v1alpha1.LabelPolicy]) {
			p.Throttles.FlowSchemas = append(p.Throttles.FlowSchemas, fs)
		}
	}
	for _, l := range in.Throttles.PriorityLevels {
		if keep(l.Labels[v1alpha1.LabelPolicy]) {
			p.Throttles.PriorityLevels = append(p.Throttles.PriorityLevels, l)
		}
	}
	sortRecords(p.Restore)
	sortRecords(p.Forget)
	return p
}

// forDaemonSet releases one DaemonSet: its pause or last-restore record,
// the throttles of its ServiceAccount, and the priority level of the
// policies these name that would have nothing left.
func forDaemonSet(in Input) Plan {
	var p Plan
	ds := in.DaemonSet
	key := client.ObjectKeyFromObject(ds)
	if by := shed.PausedBy(ds); by != "" {
		p.Restore = append(p.Restore, Record{Key: key, Policy: by})
	} else if by := shed.RestoredBy(ds); by != "" {
		p.Forget = append(p.Forget, Record{Key: key, Policy: by})
	}
	sa := types.NamespacedName(attribution.ServiceAccountOf(ds))
	for _, fs := range in.Throttles.FlowSchemas {
		if throttled, ok := shed.ThrottledServiceAccount(&fs); ok && throttled == sa {
			p.Throttles.FlowSchemas = append(p.Throttles.FlowSchemas, fs)
		}
	}
	concerned := map[string]bool{shed.PausedBy(ds): true}
	for _, fs := range p.Throttles.FlowSchemas {
		concerned[fs.Labels[v1alpha1.LabelPolicy]] = true
	}
	for _, l := range in.Throttles.PriorityLevels {
		if name := l.Labels[v1alpha1.LabelPolicy]; name != "" && concerned[name] && nothingLeft(in, p, name, key) {
			p.Throttles.PriorityLevels = append(p.Throttles.PriorityLevels, l)
		}
	}
	return p
}

// nothingLeft reports whether, once the plan is carried out, the policy
// keeps no throttle and no DaemonSet paused but the released one: its
// priority level has nothing left to hold.
func nothingLeft(in Input, p Plan, policyName string, released types.NamespacedName) bool {
	for _, fs := range in.Throttles.FlowSchemas {
		if fs.Labels[v1alpha1.LabelPolicy] == policyName && !slices.ContainsFunc(p.Throttles.FlowSchemas,
			func(d flowcontrolv1.FlowSchema) bool { return d.Name == fs.Name }) {
			return false
		}
	}
	for i := range in.Recorded {
		ds := &in.Recorded[i]
		if shed.PausedBy(ds) == policyName && client.ObjectKeyFromObject(ds) != released {
			return false
		}
	}
	return true
}

// involved are the policies the plan's records and throttles name, sorted.
func involved(p Plan) []string {
	seen := map[string]bool{}
	for _, r := range append(slices.Clone(p.Restore), p.Forget...) {
		seen[r.Policy] = true
	}
	for _, fs := range p.Throttles.FlowSchemas {
		seen[fs.Labels[v1alpha1.LabelPolicy]] = true
	}
	for _, l := range p.Throttles.PriorityLevels {
		seen[l.Labels[v1alpha1.LabelPolicy]] = true
	}
	delete(seen, "")
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// refusal is why not to release now, or nil.
func refusal(in Input, p Plan) error {
	if in.Force {
		return nil
	}
	if in.LeaseErr != nil {
		return fmt.Errorf("cannot tell whether an operator leads: reading the Lease %s: %w; "+
			"pass --force if you know that no operator runs", in.LeaseKey, in.LeaseErr)
	}
	if !p.Leading {
		return nil
	}
	var active []string
	for _, name := range p.Policies {
		if pol := findPolicy(in.Policies, name); pol != nil && !pol.Spec.Suspend {
			active = append(active, name)
		}
	}
	if len(active) == 0 {
		return nil
	}
	var how strings.Builder
	for _, name := range active {
		fmt.Fprintf(&how, "\n  kubectl patch loadshedpolicy %s --type=merge -p '{\"spec\":{\"suspend\":true}}'", name)
	}
	return fmt.Errorf("refusing to release: an operator leads (Lease %s held by %s, renewed %s) and policy %s "+
		"is not suspended, so the operator would act on it again. Suspend it first:%s\n"+
		"or pass --force if the operator itself is broken",
		in.LeaseKey, p.Leader.Holder, inspect.Clock(p.Leader.RenewedAt, in.Now), strings.Join(active, ", "), how.String())
}

// notes warn of what may undo the release later.
func notes(in Input, p Plan) []string {
	var out []string
	for _, name := range p.Policies {
		if pol := findPolicy(in.Policies, name); pol != nil && !pol.Spec.Suspend {
			out = append(out, fmt.Sprintf("policy %s is not suspended: an operator that leads will act on it again "+
				"(kubectl patch loadshedpolicy %s --type=merge -p '{\"spec\":{\"suspend\":true}}')", name, name))
		}
	}
	return out
}

func findPolicy(ps []v1alpha1.LoadShedPolicy, name string) *v1alpha1.LoadShedPolicy {
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i]
		}
	}
	return nil
}

func sortRecords(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Key.Namespace, b.Key.Namespace), cmp.Compare(a.Key.Name, b.Key.Name))
	})
}
