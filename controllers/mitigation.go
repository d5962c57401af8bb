package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/shed"
)

// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// inPlace is what a policy has in place now, read from the cluster.
type inPlace struct {
	// throttles are the policy's throttle FlowSchemas, by ServiceAccount.
	throttles map[types.NamespacedName]*flowcontrolv1.FlowSchema
	// level is the policy's throttling priority level; nil if none.
	level *flowcontrolv1.PriorityLevelConfiguration
	// paused are the DaemonSets the policy paused, and records their records.
	paused  map[types.NamespacedName]*appsv1.DaemonSet
	records map[types.NamespacedName]plan.Pause
	// others maps DaemonSets other policies paused to the policy, and
	// othersThrottled ServiceAccounts other policies throttle.
	others          map[types.NamespacedName]string
	othersThrottled map[types.NamespacedName]string
	// remembered are the DaemonSets the policy restored that keep the
	// record of it, for a relapse; deleting the policy forgets them.
	remembered []*appsv1.DaemonSet
}

// inPlaceFrom finds, in the shed state, what the policy has in place.
func inPlaceFrom(policyName string, st *shedState) (*inPlace, error) {
	out := &inPlace{
		throttles:       map[types.NamespacedName]*flowcontrolv1.FlowSchema{},
		level:           st.level,
		paused:          map[types.NamespacedName]*appsv1.DaemonSet{},
		records:         map[types.NamespacedName]plan.Pause{},
		others:          map[types.NamespacedName]string{},
		othersThrottled: map[types.NamespacedName]string{},
	}
	for i := range st.schemas {
		fs := &st.schemas[i]
		if !attribution.IsOwned(fs) || fs.Labels[v1alpha1.LabelRole] != v1alpha1.RoleThrottle {
			continue
		}
		sa, ok := shed.ThrottledServiceAccount(fs)
		switch {
		case !ok:
		case fs.Labels[v1alpha1.LabelPolicy] == policyName:
			out.throttles[sa] = fs
		default:
			out.othersThrottled[sa] = fs.Labels[v1alpha1.LabelPolicy]
		}
	}
	for i := range st.daemonSets {
		if err := out.addPause(policyName, &st.daemonSets[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addPause records a DaemonSet if a policy paused it.
func (c *inPlace) addPause(policyName string, ds *appsv1.DaemonSet) error {
	by := shed.PausedBy(ds)
	key := client.ObjectKeyFromObject(ds)
	if _, ok := shed.ReadRestoration(ds, policyName); ok {
		c.remembered = append(c.remembered, ds)
	}
	switch {
	case by == "":
	case by != policyName:
		c.others[key] = by
	default:
		rec, err := shed.ReadPause(ds)
		if err != nil {
			return fmt.Errorf("reading the pause record of %s: %w", key, err)
		}
		c.paused[key] = ds
		c.records[key] = rec
	}
	return nil
}

// planInput gathers the planner's input from what the loop observed.
func (r *LoadShedPolicyReconciler) planInput(state *reconcileState, w *world) plan.Input {
	cur := w.inPlace
	in := plan.InputFrom(state.evaluated, state.config, state.readings)
	in.Paused = cur.records
	in.PausedByOthers = cur.others
	in.ThrottledByOthers = cur.othersThrottled
	in.LastRestored = shed.LastRestored(cur.level)
	for sa, fs := range cur.throttles {
		since, err := shed.ThrottledSince(fs)
		if err != nil || since.IsZero() {
			since = fs.CreationTimestamp.Time
		}
		in.Throttled[sa] = since
	}
	for key, ds := range cur.paused {
		if !shed.IsPausedAsRecorded(ds, cur.records[key], state.config.Restore.WavePercents) {
			if in.Overridden == nil {
				in.Overridden = map[types.NamespacedName]time.Time{}
			}
			in.Overridden[key] = shed.OverriddenAt(ds)
		}
	}
	operatorSA := types.NamespacedName{Namespace: r.Namespace, Name: r.ServiceAccount}
	in.Offenders = plan.OffendersOf(state.offenders, state.config.Targets.Protected(w.selected, operatorSA),
		func(sa types.NamespacedName) string { return r.cannotThrottle(sa, state.config, w) })
	return in
}

// mitigate asks the planner what to do, carries the plan out (unless
// dryRun), takes back what was not made, and records events and metrics of
// what happened. A DaemonSet write that fails holds nothing else back: the
// throttles are applied all the same, and the failures are returned once
// the loop has recorded what it did, for the controller to retry it with
// backoff.
func (r *LoadShedPolicyReconciler) mitigate(ctx context.Context, obj *v1alpha1.LoadShedPolicy, w *world, state *reconcileState) error {
	in := r.planInput(state, w)
	in.ThrottleBlockedSince = plan.ThrottleBlockedSince(obj.Status.Blocked)
	in.Restorations = shed.Restorations(w.selected, obj.Name)
	if state.config.DryRun {
		in.Throttled, in.Paused = wouldBeInPlace(obj.Status.Actions, state.config.Restore.Probation)
	}
	nodes := r.readNodes(ctx, in)
	in.WaveSizes = waveSizes(ctx, in, w, nodes, state.config.Restore.WavePercents)
	state.waveSizes = in.WaveSizes
	p := plan.Decide(in)
	state.plan = &p
	var failedPauses error
	if !state.config.DryRun {
		pauses := r.applyPauses(ctx, obj.Name, state, w.inPlace, p, nodes)
		refusedThrottles, err := r.applyThrottles(ctx, obj.Name, state, w, p)
		if err != nil {
			return errors.Join(append(pauses.errs, err)...)
		}
		failedPauses = pauses.takeBack(in, &p)
		for _, b := range refusedThrottles {
			p.Refuse(in, b)
		}
	}
	r.recordChanges(obj, p, state.config.DryRun)
	r.recordOverrides(obj, p)
	r.recordBlocked(obj, p, in.Firing)
	observeChanges(obj.Name, p, state.config)
	return failedPauses
}

// readNodes lists the nodes when the policy has DaemonSets paused: only a
// restore wave's write and description need them.
func (r *LoadShedPolicyReconciler) readNodes(ctx context.Context, in plan.Input) nodeList {
	if len(in.Paused) == 0 {
		return nodeList{}
	}
	// Names and labels are all a wave reads: the cache's own objects, not
	// copies (see readShedState).
	list := &corev1.NodeList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nodeList{err: fmt.Errorf("listing nodes: %w", err)}
	}
	return nodeList{items: list.Items}
}

// nodeList is the cluster's nodes as a loop read them, or why it could not.
type nodeList struct {
	items []corev1.Node
	err   error
}

// waveSizes counts the nodes each restore wave of each DaemonSet in.Paused
// holds runs on: the planner and status say how many, and whether the wave
// size limit caps them. A DaemonSet whose waves cannot be counted (the nodes
// could not be read, its record cannot be) is left out; the planner and
// status then give its waves' percentages, and its write reports the error.
// In dryRun, the DaemonSets are not paused, and their own scheduling counts.
func waveSizes(ctx context.Context, in plan.Input, w *world, nodes nodeList, waves []int32) map[types.NamespacedName][]plan.WaveSize {
	if nodes.err != nil || len(in.Paused) == 0 {
		return nil
	}
	dss := map[types.NamespacedName]*appsv1.DaemonSet{}
	for i := range w.selected {
		dss[client.ObjectKeyFromObject(&w.selected[i])] = &w.selected[i]
	}
	if w.inPlace != nil {
		maps.Copy(dss, w.inPlace.paused)
	}
	out := map[types.NamespacedName][]plan.WaveSize{}
	for key := range in.Paused {
		ds := dss[key]
		if ds == nil {
			continue
		}
		sizes, err := shed.WaveSizes(ds, nodes.items, waves)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Could not count the nodes of a DaemonSet's restore waves", "daemonSet", klog.KObj(ds))
			continue
		}
		out[key] = sizes
	}
	return out
}

// unmade are the DaemonSet writes of a loop that were not made: those the
// API server refused, and the others that failed, with their errors.
type unmade struct {
	refused []plan.Block
	// failed holds the kind and target of each write that failed.
	failed []plan.Block
	errs   []error
}

// add records err, if any, as the failure of a write of kind to key.
func (u *unmade) add(err error, kind plan.ChangeKind, key types.NamespacedName) {
	if b, refused := refusal(err, kind, key); refused {
		u.refused = append(u.refused, b)
	} else if err != nil {
		u.failed = append(u.failed, plan.Block{Kind: kind, Target: key})
		u.errs = append(u.errs, err)
	}
}

// takeBack takes the writes that were not made back from the plan,
// reports those the API server refused as blocked, and returns the other
// failures' errors, joined.
func (u *unmade) takeBack(in plan.Input, p *plan.Plan) error {
	for _, b := range u.refused {
		p.Refuse(in, b)
	}
	for _, b := range u.failed {
		p.TakeBack(in, b.Kind, b.Target)
	}
	return errors.Join(u.errs...)
}

// applyPauses writes each pause of the plan that differs from the
// DaemonSet, then completes the restores the plan finished. It returns the
// writes not made; none stops the others.
func (r *LoadShedPolicyReconciler) applyPauses(ctx context.Context, policyName string, state *reconcileState,
	cur *inPlace, p plan.Plan, nodes nodeList) *unmade {
	out := &unmade{}
	if len(p.Paused) > 0 {
		r.applyPauseWaves(ctx, policyName, state, cur, p, nodes, out)
	}
	for _, key := range p.Restored {
		if ds := cur.paused[key]; ds != nil {
			remember := &plan.Restoration{At: state.evaluated, Attempt: cur.records[key].Attempt}
			out.add(r.restore(ctx, ds, remember), plan.Restored, key)
		}
	}
	return out
}

// applyPauseWaves writes each pause or restore wave of the plan that
// differs from the DaemonSet, and records in out those not made. A restore
// wave needs the nodes: when they could not be read, its write fails, and
// the pauses go on.
func (r *LoadShedPolicyReconciler) applyPauseWaves(ctx context.Context, policyName string, state *reconcileState,
	cur *inPlace, p plan.Plan, nodes nodeList, out *unmade) {
	kinds, reasons := daemonSetChanges(p)
	needed := false
	for _, key := range slices.SortedFunc(maps.Keys(p.Paused), plan.CompareNames) {
		if slices.Contains(p.Held, key) {
			continue
		}
		kind := cmp.Or(kinds[key], plan.Paused)
		if nodes.err != nil && p.Paused[key].Wave > 0 {
			out.failed = append(out.failed, plan.Block{Kind: kind, Target: key})
			needed = true
			continue
		}
		out.add(r.applyPause(ctx, policyName, state, cur.paused[key], key, p, reasons[key], nodes.items), kind, key)
	}
	if needed {
		out.errs = append(out.errs, nodes.err)
	}
}

// refusal reports whether err is the API server refusing a write (denied by
// RBAC or an admission policy, invalid, too large): trying again at once
// would not help, so the plan reports it as blocked instead of failing the
// loop. Other errors (conflicts, timeouts) are retried.
func refusal(err error, kind plan.ChangeKind, target types.NamespacedName) (plan.Block, bool) {
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) {
		return plan.Block{}, false
	}
	switch status.Status().Code {
	case http.StatusForbidden, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
		return plan.Block{Kind: kind, Target: target, Reason: "the API server refused it: " + status.Status().Message}, true
	}
	return plan.Block{}, false
}

// wouldBeInPlace reads, from a dryRun policy's status, what it would have in
// place had it acted: its plan goes on from there, so that it says "would
// throttle" once and then, pause.after later, "would pause", as the policy
// would, rather than "would throttle" at every evaluation.
func wouldBeInPlace(actions []v1alpha1.ActionStatus, probation time.Duration) (map[types.NamespacedName]time.Time,
	map[types.NamespacedName]plan.Pause) {
	throttled, paused := map[types.NamespacedName]time.Time{}, map[types.NamespacedName]plan.Pause{}
	for _, a := range actions {
		key, ok := plan.ParseTarget(a.Target)
		if !ok || a.Since == nil {
			continue
		}
		switch a.Kind {
		case v1alpha1.ActionThrottle:
			throttled[key] = a.Since.Time
		case v1alpha1.ActionPause:
			rec := plan.Pause{Since: a.Since.Time, Attempt: int(a.Attempt), Wave: int(a.Wave)}
			if a.NextRestoreTime != nil && rec.Wave > 0 {
				rec.WaveStarted = a.NextRestoreTime.Add(-probation)
			} else if a.NextRestoreTime != nil {
				rec.NextRestore = a.NextRestoreTime.Time
			}
			paused[key] = rec
		}
	}
	return throttled, paused
}

// daemonSetChanges are the kinds and reasons of the plan's changes to
// DaemonSets, by DaemonSet.
func daemonSetChanges(p plan.Plan) (map[types.NamespacedName]plan.ChangeKind, map[types.NamespacedName]string) {
	kinds, out := map[types.NamespacedName]plan.ChangeKind{}, map[types.NamespacedName]string{}
	for _, c := range p.Changes {
		if c.Kind.OnDaemonSet() {
			kinds[c.Target], out[c.Target] = c.Kind, c.Reason
		}
	}
	return kinds, out
}

// applyPause writes one DaemonSet's pause or restore wave, if it changed. ds
// is the DaemonSet as the policy paused it, or nil when it pauses it now.
func (r *LoadShedPolicyReconciler) applyPause(ctx context.Context, policyName string, state *reconcileState,
	ds *appsv1.DaemonSet, key types.NamespacedName, p plan.Plan, reason string, nodes []corev1.Node) error {
	if ds == nil {
		ds = &appsv1.DaemonSet{}
		if err := r.Get(ctx, key, ds); err != nil {
			return fmt.Errorf("reading DaemonSet %s: %w", key, err)
		}
	}
	rec := p.Paused[key]
	want, err := shed.Apply(ds, policyName, reason, rec, state.config.Restore.WavePercents, nodes)
	if err != nil {
		return fmt.Errorf("planning the pause of %s: %w", key, err)
	}
	if slices.Contains(p.PutBack, key) {
		want.Annotations[v1alpha1.AnnotationOverriddenAt] = state.evaluated.UTC().Format(time.RFC3339)
	}
	if equality.Semantic.DeepEqual(want.Spec, ds.Spec) && equality.Semantic.DeepEqual(want.Annotations, ds.Annotations) {
		return nil
	}
	if err := r.Update(ctx, want, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("updating DaemonSet %s: %w", key, err)
	}
	ctrl.LoggerFrom(ctx).Info("Updated a DaemonSet's pause", "daemonSet", klog.KObj(ds), "wave", rec.Wave, "attempt", rec.Attempt)
	return nil
}

// restore gives a DaemonSet back its pod template as it was before the
// pause; remember is what it keeps of the restore (nil: nothing).
func (r *LoadShedPolicyReconciler) restore(ctx context.Context, ds *appsv1.DaemonSet, remember *plan.Restoration) error {
	want, err := shed.Restore(ds, remember)
	if err != nil {
		return fmt.Errorf("planning the restore of %s: %w", klog.KObj(ds), err)
	}
	if err := r.Update(ctx, want, client.FieldOwner(FieldOwner)); err != nil {
		return fmt.Errorf("restoring DaemonSet %s: %w", klog.KObj(ds), err)
	}
	ctrl.LoggerFrom(ctx).Info("Restored a DaemonSet", "daemonSet", klog.KObj(ds))
	return nil
}
