package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/shed"
)

// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=update;patch
// +kubebuilder:rbac:groups=flowcontrol.apiserver.k8s.io,resources=prioritylevelconfigurations,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// inPlace is what a policy has in place now, read from the cluster.
type inPlace struct {
	throttles map[string]*flowcontrolv1.FlowSchema // by ServiceAccount
	level     *flowcontrolv1.PriorityLevelConfiguration
	paused    map[string]*appsv1.DaemonSet // by namespace/name, paused by this policy
	records   map[string]plan.Pause
	others    map[string]string // DaemonSets paused by other policies
}

// observeInPlace reads the policy's throttles and pauses from the cache.
func (r *LoadShedPolicyReconciler) observeInPlace(ctx context.Context, name string) (*inPlace, error) {
	out := &inPlace{throttles: map[string]*flowcontrolv1.FlowSchema{}, paused: map[string]*appsv1.DaemonSet{},
		records: map[string]plan.Pause{}, others: map[string]string{}}
	schemas := &flowcontrolv1.FlowSchemaList{}
	if err := r.List(ctx, schemas, client.MatchingLabels{attribution.LabelRole: shed.RoleThrottle, v1alpha1.LabelPolicy: name}); err != nil {
		return nil, fmt.Errorf("listing throttle FlowSchemas: %w", err)
	}
	for i := range schemas.Items {
		fs := &schemas.Items[i]
		if attribution.IsOwned(fs) {
			out.throttles[fs.Annotations[attribution.AnnotationServiceAccount]] = fs
		}
	}
	level := &flowcontrolv1.PriorityLevelConfiguration{}
	switch err := r.Get(ctx, client.ObjectKey{Name: shed.ThrottleLevelName(name)}, level); {
	case err == nil && attribution.IsOwned(level):
		out.level = level
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading the throttling priority level: %w", err)
	}
	dss := &appsv1.DaemonSetList{}
	if err := r.List(ctx, dss); err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	for i := range dss.Items {
		ds := &dss.Items[i]
		by := shed.PausedBy(ds)
		key := ds.Namespace + "/" + ds.Name
		switch {
		case by == "":
		case by != name:
			out.others[key] = by
		default:
			rec, err := shed.ReadPause(ds)
			if err != nil {
				return nil, fmt.Errorf("reading the pause record of %s: %w", key, err)
			}
			out.paused[key] = ds
			out.records[key] = rec
		}
	}
	return out, nil
}

// planInput gathers the planner's input from what the loop observed.
func planInput(state *reconcileState, cur *inPlace) plan.Input {
	in := plan.Input{
		Now:            state.evaluated,
		Config:         state.config,
		Firing:         detection.Firing(state.signals),
		Throttled:      map[string]time.Time{},
		Paused:         cur.records,
		PausedByOthers: cur.others,
	}
	if detection.AllClear(state.signals) {
		for _, s := range state.signals {
			if s.State.Since.After(in.ClearSince) {
				in.ClearSince = s.State.Since
			}
		}
	}
	for sa, fs := range cur.throttles {
		since, err := shed.ThrottledSince(fs)
		if err != nil || since.IsZero() {
			since = fs.CreationTimestamp.Time
		}
		in.Throttled[sa] = since
	}
	if cur.level != nil {
		if t, err := time.Parse(time.RFC3339, cur.level.Annotations[annotationLastRestored]); err == nil {
			in.LastRestored = t
		}
	}
	for key, ds := range cur.paused {
		if !shed.IsPausedAsRecorded(ds, cur.records[key]) {
			if in.Overridden == nil {
				in.Overridden = map[string]time.Time{}
			}
			in.Overridden[key] = shed.OverriddenAt(ds)
		}
	}
	for _, o := range state.offenders {
		po := plan.Offender{ServiceAccount: o.ServiceAccount, Share: o.RequestShare, SeatShare: o.SeatShare,
			RequestsPerSecond: o.RequestsPerSecond}
		for _, ds := range o.DaemonSets {
			po.DaemonSets = append(po.DaemonSets, plan.DaemonSet{Key: ds})
		}
		in.Offenders = append(in.Offenders, po)
	}
	return in
}

// reconcileMitigation reads what the policy has in place, asks the planner
// what to do, carries the plan out (unless dryRun) and records events.
func (r *LoadShedPolicyReconciler) reconcileMitigation(ctx context.Context, obj *v1alpha1.LoadShedPolicy, state *reconcileState) error {
	cur, err := r.observeInPlace(ctx, obj.Name)
	if err != nil {
		return err
	}
	p := plan.Decide(planInput(state, cur))
	state.plan = &p
	if err := r.applyPlan(ctx, obj, state, cur, p); err != nil {
		return err
	}
	r.recordActions(obj, p, state.config.DryRun)
	r.recordOverrides(obj, p)
	observeActions(obj.Name, p, state.config.DryRun)
	return nil
}

// annotationLastRestored, on the throttling level, records when the policy
// last finished a restore: throttles go only stableFor after it.
const annotationLastRestored = "loadshed.io/last-restored"

// applyPlan carries a plan out. In dryRun it changes nothing.
func (r *LoadShedPolicyReconciler) applyPlan(ctx context.Context, obj *v1alpha1.LoadShedPolicy, state *reconcileState,
	cur *inPlace, p plan.Plan) error {
	if state.config.DryRun {
		return nil
	}
	if err := r.applyPauses(ctx, obj, state, cur, p); err != nil {
		return err
	}
	return r.applyThrottles(ctx, obj, state, cur, p)
}

func (r *LoadShedPolicyReconciler) applyPauses(ctx context.Context, obj *v1alpha1.LoadShedPolicy, state *reconcileState,
	cur *inPlace, p plan.Plan) error {
	log := ctrl.LoggerFrom(ctx)
	reasons := map[string]string{}
	for _, a := range p.Actions {
		reasons[a.Target] = a.Reason
	}
	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes); err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, key := range slices.Sorted(maps.Keys(p.Paused)) {
		rec := p.Paused[key]
		ds := cur.paused[key]
		if ds == nil {
			ds = &appsv1.DaemonSet{}
			if err := r.Get(ctx, objectKey(key), ds); err != nil {
				return fmt.Errorf("reading DaemonSet %s: %w", key, err)
			}
		}
		want, err := shed.Apply(ds, obj.Name, reasons[key], rec, state.config.Restore.WavePercents, nodes.Items)
		if err != nil {
			return fmt.Errorf("planning the pause of %s: %w", key, err)
		}
		switch {
		case slices.Contains(p.Held, key):
			continue
		case slices.Contains(p.PutBack, key):
			want.Annotations[shed.AnnotationOverriddenAt] = state.evaluated.UTC().Format(time.RFC3339)
		}
		if equality.Semantic.DeepEqual(want.Spec, ds.Spec) && equality.Semantic.DeepEqual(want.Annotations, ds.Annotations) {
			continue
		}
		if err := r.Update(ctx, want, client.FieldOwner(FieldOwner)); err != nil {
			return fmt.Errorf("updating DaemonSet %s: %w", key, err)
		}
		log.Info("Updated a DaemonSet's pause", "daemonSet", klog.KObj(ds), "wave", rec.Wave, "attempt", rec.Attempt)
	}
	for _, key := range p.Restored {
		ds := cur.paused[key]
		if ds == nil {
			continue
		}
		want, err := shed.Restore(ds)
		if err != nil {
			return fmt.Errorf("planning the restore of %s: %w", key, err)
		}
		if err := r.Update(ctx, want, client.FieldOwner(FieldOwner)); err != nil {
			return fmt.Errorf("restoring DaemonSet %s: %w", key, err)
		}
		log.Info("Restored a DaemonSet", "daemonSet", klog.KObj(ds))
	}
	return nil
}

func (r *LoadShedPolicyReconciler) applyThrottles(ctx context.Context, obj *v1alpha1.LoadShedPolicy, state *reconcileState,
	cur *inPlace, p plan.Plan) error {
	log := ctrl.LoggerFrom(ctx)
	if len(p.Throttled) > 0 || len(cur.throttles) > 0 {
		level := shed.ThrottleLevel(obj.Name, state.config.Throttle)
		last := ""
		if cur.level != nil {
			last = cur.level.Annotations[annotationLastRestored]
		}
		if len(p.Restored) > 0 {
			last = state.evaluated.UTC().Format(time.RFC3339)
		}
		if last != "" {
			level.WithAnnotations(map[string]string{annotationLastRestored: last})
		}
		if cur.level == nil || len(p.Restored) > 0 || throttleLevelChanged(cur.level, state) {
			if err := r.Apply(ctx, level, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
				return fmt.Errorf("applying the throttling priority level: %w", err)
			}
		}
	}
	if len(p.Throttled) > 0 {
		schemas := &flowcontrolv1.FlowSchemaList{}
		if err := r.List(ctx, schemas); err != nil {
			return fmt.Errorf("listing FlowSchemas: %w", err)
		}
		for _, saKey := range slices.Sorted(maps.Keys(p.Throttled)) {
			if cur.throttles[saKey] != nil {
				continue
			}
			sa := serviceAccountFromKey(saKey)
			matched, ok := attribution.Match(sa, attribution.FloodRequest, schemas.Items)
			if !ok {
				continue
			}
			fs, err := shed.ThrottleFlowSchema(obj.Name, sa, matched, p.Throttled[saKey])
			if err != nil {
				log.Info("Could not throttle a ServiceAccount", "serviceAccount", saKey, "reason", err.Error())
				continue
			}
			if err := r.Apply(ctx, fs, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
				return fmt.Errorf("applying the throttle of %s: %w", saKey, err)
			}
			log.Info("Throttled a ServiceAccount", "serviceAccount", saKey)
		}
	}
	for saKey, fs := range cur.throttles {
		if _, keep := p.Throttled[saKey]; keep {
			continue
		}
		if err := r.Delete(ctx, fs); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the throttle of %s: %w", saKey, err)
		}
		log.Info("Unthrottled a ServiceAccount", "serviceAccount", saKey)
	}
	if len(p.Throttled) == 0 && len(p.Paused) == 0 && cur.level != nil {
		if err := r.Delete(ctx, cur.level); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the throttling priority level: %w", err)
		}
	}
	return nil
}

func throttleLevelChanged(level *flowcontrolv1.PriorityLevelConfiguration, state *reconcileState) bool {
	l := level.Spec.Limited
	t := state.config.Throttle
	if l == nil || l.NominalConcurrencyShares == nil || *l.NominalConcurrencyShares != t.NominalConcurrencyShares {
		return true
	}
	wantReject := t.LimitResponse == v1alpha1.LimitResponseReject
	return wantReject != (l.LimitResponse.Type == flowcontrolv1.LimitResponseTypeReject)
}

// undoAll restores every DaemonSet the policy paused and removes its
// throttles and priority level: the finalizer's work.
func (r *LoadShedPolicyReconciler) undoAll(ctx context.Context, name string) error {
	cur, err := r.observeInPlace(ctx, name)
	if err != nil {
		return err
	}
	for key, ds := range cur.paused {
		want, err := shed.Restore(ds)
		if err != nil {
			return fmt.Errorf("planning the restore of %s: %w", key, err)
		}
		if err := r.Update(ctx, want, client.FieldOwner(FieldOwner)); err != nil {
			return fmt.Errorf("restoring DaemonSet %s: %w", key, err)
		}
	}
	for _, fs := range cur.throttles {
		if err := r.Delete(ctx, fs); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing throttle FlowSchema %s: %w", fs.Name, err)
		}
	}
	if cur.level != nil {
		if err := r.Delete(ctx, cur.level); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the throttling priority level: %w", err)
		}
	}
	return nil
}

func objectKey(nsName string) client.ObjectKey {
	sa := serviceAccountFromKey(nsName)
	return client.ObjectKey{Namespace: sa.Namespace, Name: sa.Name}
}

func serviceAccountFromKey(key string) attribution.ServiceAccount {
	ns, name, found := strings.Cut(key, "/")
	if !found {
		return attribution.ServiceAccount{Name: key}
	}
	return attribution.ServiceAccount{Namespace: ns, Name: name}
}
