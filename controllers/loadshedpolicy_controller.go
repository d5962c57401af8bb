// Package controllers holds the thin reconcilers of loadshed: each observes
// the cluster, calls the pure logic under internal/, applies its plan and
// writes status once.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
)

// FieldOwner is the field manager of every write loadshed makes. It is
// load-bearing: server-side apply uses it to tell loadshed's fields from
// everyone else's. Never change it.
const FieldOwner = "loadshed-operator"

// +kubebuilder:rbac:groups=loadshed.io,resources=loadshedpolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=loadshed.io,resources=loadshedpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=loadshed.io,resources=loadshedpolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=loadshed-system,resources=secrets,verbs=get;list;watch

// LoadShedPolicyReconciler reconciles LoadShedPolicy objects.
type LoadShedPolicyReconciler struct {
	client.Client
	// Namespace is the operator's own namespace: Secrets are read from it,
	// and its DaemonSets are protected.
	Namespace string
	// ServiceAccount is the operator's ServiceAccount, in Namespace: a
	// DaemonSet running as it is protected.
	ServiceAccount string
	// Sampler scrapes the API servers for every policy.
	Sampler *sampler.Sampler
	// Recorder records events on policies.
	Recorder events.EventRecorder
	// Clock is read for every time the reconciler records or compares.
	Clock clock.PassiveClock

	// shedding counts, for the metrics, the time each policy spends shedding.
	shedding sheddingClock
	// statuses remembers the status each policy's last loop wrote.
	statuses statusMemory
	// reported remembers the blocks each policy reported while its
	// triggers fire.
	reported blockMemory
	// cadence keeps each policy to its interval.
	cadence cadence
}

// reconcileState is what one loop saw and decided, for the status setters.
type reconcileState struct {
	config *policy.Config
	// err is the error that stopped the loop, if any; see resultFor.
	err error
	// evaluated is when the triggers were evaluated; zero when they were not.
	evaluated time.Time
	readings  []detection.Reading
	offenders []detection.Offender
	metrics   metricsStatus
	// plan is what the planner decided; nil when it did not run.
	plan *plan.Plan
	// waveSizes are how many nodes each restore wave of the paused
	// DaemonSets runs on, as the planner read them.
	waveSizes map[types.NamespacedName][]plan.WaveSize
}

// Reconcile runs one loop for one policy: observe, decide, apply, and write
// status once at the end.
func (r *LoadShedPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := &v1alpha1.LoadShedPolicy{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, obj)
	}
	if err := r.ensureFinalizer(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}

	if wait := r.cadence.wait(obj, r.Clock.Now()); wait > 0 {
		// Woken before its interval (a round of scrapes for a policy with a
		// shorter one, a requeue that a round already served).
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	began := r.Clock.Now()
	r.statuses.freshen(obj)
	base := obj.DeepCopy()
	r.statuses.goOn(obj)
	state := r.reconcilePolicy(ctx, obj)
	setStatus(obj, state)
	var statusErr error
	written := false
	if statusWorthWriting(&base.Status, &obj.Status) {
		statusErr = r.patchStatus(ctx, obj, base)
		written = statusErr == nil
	}
	r.statuses.remember(obj, written)
	r.observeMetrics(obj.Name, state, r.Clock.Since(began))
	result := resultFor(state)
	if state.err == nil && statusErr == nil && !state.evaluated.IsZero() {
		r.cadence.evaluated(obj, state.evaluated, result.RequeueAfter, state.config.Interval)
	} else {
		r.cadence.forget(obj.Name)
	}
	return result, kerrors.NewAggregate([]error{ignoreSpecErrors(state.err), statusErr})
}

// statusMemory remembers, per policy, the status this process last wrote
// and the one its last loop computed, which is newer when the loop did not
// write it (only values changed, see statusWorthWriting) or could not.
//
// A loop reads the policy from the cache, which may not hold the last write
// yet when the next loop starts (interval 1s, a slow API server): the
// triggers' states, the blocked actions and a dryRun's would-be actions
// would then be read as they were a loop earlier, and their events
// recorded twice. And a loop goes on from the last one's states and
// lastEvaluationTime, not from the last written: a status written up to a
// minute ago would look like a minute nobody evaluated, and every healthy
// streak would start over (see detection.Input.PreviousAt).
type statusMemory struct {
	mu                 sync.Mutex
	written, evaluated map[string]*v1alpha1.LoadShedPolicyStatus
}

// freshen replaces obj's status with the one this process last wrote, when
// the cached one is older (evaluated earlier): obj is then what the API
// server holds, the base of the next patch.
func (m *statusMemory) freshen(obj *v1alpha1.LoadShedPolicy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	newer(obj, m.written[obj.Name])
}

// goOn replaces obj's status with the one this process's last loop
// computed, when newer: the loop goes on from it.
func (m *statusMemory) goOn(obj *v1alpha1.LoadShedPolicy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	newer(obj, m.evaluated[obj.Name])
}

// newer replaces obj's status with last when last was evaluated later.
func newer(obj *v1alpha1.LoadShedPolicy, last *v1alpha1.LoadShedPolicyStatus) {
	if last == nil || last.LastEvaluationTime == nil {
		return
	}
	if cached := obj.Status.LastEvaluationTime; cached == nil || cached.Before(last.LastEvaluationTime) {
		obj.Status = *last.DeepCopy()
	}
}

// remember records the status computed for obj, and whether it was written.
func (m *statusMemory) remember(obj *v1alpha1.LoadShedPolicy, written bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.written == nil {
		m.written, m.evaluated = map[string]*v1alpha1.LoadShedPolicyStatus{}, map[string]*v1alpha1.LoadShedPolicyStatus{}
	}
	m.evaluated[obj.Name] = obj.Status.DeepCopy()
	if written {
		m.written[obj.Name] = m.evaluated[obj.Name]
	}
}

// forget drops a deleted policy's statuses.
func (m *statusMemory) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.written, name)
	delete(m.evaluated, name)
}

// blockMemory remembers, per policy, the blocked actions already reported
// by an event during the current firing of its triggers. Offenders are
// measured from samples: one on top may fall under minShare for a loop and
// come back, and its block with it; that is still the block reported.
type blockMemory struct {
	mu       sync.Mutex
	reported map[string]map[plan.BlockKey]bool
}

// newlyBlocked returns the blocks to report for the policy (see
// plan.NewlyBlocked), and remembers them for this firing.
func (m *blockMemory) newlyBlocked(name string, prev []v1alpha1.BlockedStatus, blocked []plan.Block) []plan.Block {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reported == nil {
		m.reported = map[string]map[plan.BlockKey]bool{}
	}
	if m.reported[name] == nil {
		m.reported[name] = map[plan.BlockKey]bool{}
	}
	return plan.NewlyBlocked(prev, blocked, m.reported[name])
}

// forget ends a policy's firing (or the policy): its next blocks are new.
func (m *blockMemory) forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.reported, name)
}

// reconcilePolicy resolves the spec and, unless the policy is suspended,
// runs detection and mitigation.
func (r *LoadShedPolicyReconciler) reconcilePolicy(ctx context.Context, obj *v1alpha1.LoadShedPolicy) *reconcileState {
	state := &reconcileState{}
	spec, err := r.readSpec(ctx, obj)
	if spec != nil {
		state.config = spec.config
	}
	if err != nil || obj.Spec.Suspend {
		// Nothing is evaluated: the sampler stops reading for this policy.
		r.Sampler.Unregister(obj.Name)
		state.err = err
		return state
	}
	state.err = r.reconcileActive(ctx, obj, spec, state)
	return state
}

// reconcileActive runs the loop of a policy that is not suspended: it reads
// the cluster, evaluates the triggers and measures the offenders, and
// has the planner decide what to throttle, pause and restore.
func (r *LoadShedPolicyReconciler) reconcileActive(ctx context.Context, obj *v1alpha1.LoadShedPolicy, spec *resolvedSpec,
	state *reconcileState) error {
	w, err := r.observe(ctx, obj.Name, spec.config)
	if err != nil {
		return err
	}
	previous := previousStates(obj)
	r.evaluate(obj.Name, spec, previous, lastEvaluated(obj), scopeOf(w), state)
	r.recordTransitions(obj, previous, state.readings)
	return r.mitigate(ctx, obj, w, state)
}

// patchStatus writes the status computed from base's.
func (r *LoadShedPolicyReconciler) patchStatus(ctx context.Context, obj, base *v1alpha1.LoadShedPolicy) error {
	err := r.Status().Patch(ctx, obj, client.MergeFrom(base), client.FieldOwner(FieldOwner))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("patching status: %w", err)
	}
	return nil
}

// specError is an error in what the policy says, as opposed to a failure to
// reach the cluster: it is reported in the Ready and Stalled conditions with
// its reason, and retried only when retry is set (something it refers to may
// appear).
type specError struct {
	reason string
	retry  bool
	err    error
}

func (e *specError) Error() string { return e.err.Error() }
func (e *specError) Unwrap() error { return e.err }

// resultFor maps the loop's outcome to when to look again. It is the one
// place where errors turn into requeues.
func resultFor(state *reconcileState) ctrl.Result {
	var se *specError
	switch {
	case errors.As(state.err, &se) && !se.retry:
		// Nothing changes until the spec does, and a spec change is an event.
		return ctrl.Result{}
	case errors.As(state.err, &se):
		return ctrl.Result{RequeueAfter: policy.DefaultInterval}
	case state.err != nil:
		// The controller's rate limiter backs off on the returned error.
		return ctrl.Result{}
	case state.plan != nil:
		return ctrl.Result{RequeueAfter: min(state.config.Interval, state.plan.RequeueAfter)}
	default:
		return ctrl.Result{RequeueAfter: state.config.Interval}
	}
}

// ignoreSpecErrors drops errors that status reports, so that they are not
// also retried by the rate limiter and logged as reconcile failures.
func ignoreSpecErrors(err error) error {
	var se *specError
	if errors.As(err, &se) {
		return nil
	}
	return err
}

// SetupWithManager registers the reconciler with a manager.
func (r *LoadShedPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.LoadShedPolicy{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
		))).
		// A Secret a policy refers to may appear or change after the policy.
		// The cache holds the operator's namespace only (see controllers/operator).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.policiesForSecret)).
		// Each round of scrapes wakes the policies that asked for it.
		WatchesRawSource(source.Channel(r.Sampler.Events(), &handler.EnqueueRequestForObject{})).
		Named("loadshedpolicy").
		Complete(r)
}

// policiesForSecret returns the policies whose Prometheus source refers to a Secret.
func (r *LoadShedPolicyReconciler) policiesForSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	if obj.GetNamespace() != r.Namespace {
		return nil
	}
	list := &v1alpha1.LoadShedPolicyList{}
	if err := r.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list policies for a Secret", "secret", klog.KObj(obj))
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		p := list.Items[i].Spec.Source.Prometheus
		if p == nil {
			continue
		}
		for _, ref := range []*v1alpha1.SecretKeyReference{p.CASecretRef, p.BearerTokenSecretRef} {
			if ref != nil && ref.Name == obj.GetName() {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
				break
			}
		}
	}
	return reqs
}
