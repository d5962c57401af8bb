package controllers

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/version"
)

// Label keys of the controller's metrics.
const (
	labelPolicy         = "policy"
	labelTrigger        = "trigger"
	labelServiceAccount = "service_account"
	labelKind           = "kind"
	labelDryRun         = "dry_run"
)

// The controller's metrics. They are registered once with
// controller-runtime's registry, which the manager serves on /metrics, as
// controller-runtime registers its own; each policy's series go when the
// policy does (forgetMetrics).
var (
	signalValue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_signal_value",
		Help: "The latest value of each trigger's signal (absent while missing).",
	}, []string{labelPolicy, labelTrigger})
	triggerFiring = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_trigger_firing",
		Help: "1 while a trigger fires (or clears), else 0.",
	}, []string{labelPolicy, labelTrigger})
	attributedRate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_attributed_requests_per_second",
		Help: "Requests per second dispatched for each attributed ServiceAccount.",
	}, []string{labelPolicy, labelServiceAccount})

	actionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_mitigation_actions_total",
		Help: "Changes made (or, in dryRun, that would have been made), by kind.",
	}, []string{labelPolicy, labelKind, labelDryRun})
	pausedDaemonSets = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_paused_daemonsets",
		Help: "DaemonSets a policy keeps paused or is restoring.",
	}, []string{labelPolicy})
	throttledServiceAccounts = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_throttled_serviceaccounts",
		Help: "ServiceAccounts a policy throttles.",
	}, []string{labelPolicy})
	restoreAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_mitigation_restore_attempts_total",
		Help: "Restores started.",
	}, []string{labelPolicy})
	blockedActions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_blocked_actions",
		Help: "Throttles and pauses a policy would make but may not (status.blocked says why), by kind.",
	}, []string{labelPolicy, labelKind})
	sheddingSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_mitigation_shedding_seconds_total",
		Help: "Time spent with something throttled or paused, counted at each evaluation.",
	}, []string{labelPolicy})
	evaluations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_policy_evaluations_total",
		Help: "Evaluations of the policy: one an interval, or when its spec changes or a restore step is due.",
	}, []string{labelPolicy})
	evaluationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "loadshed_policy_evaluation_duration_seconds",
		Help:    "How long one evaluation of the policy took: reading the cache, deciding, writing changes and status.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{labelPolicy})
	lastEvaluation = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_policy_last_evaluation_timestamp_seconds",
		Help: "When the policy was last evaluated, in seconds since the epoch.",
	}, []string{labelPolicy})
)

func init() {
	metrics.Registry.MustRegister(version.NewCollector(), signalValue, triggerFiring, attributedRate,
		actionsTotal, pausedDaemonSets, throttledServiceAccounts, restoreAttempts, blockedActions, sheddingSeconds,
		evaluations, evaluationDuration, lastEvaluation)
}

// observeMetrics exports what one loop of a policy found and did, and how
// long it took.
func (r *LoadShedPolicyReconciler) observeMetrics(policy string, state *reconcileState, took time.Duration) {
	evaluations.WithLabelValues(policy).Inc()
	evaluationDuration.WithLabelValues(policy).Observe(took.Seconds())
	observeEvaluation(policy, state)
	if state.plan != nil && !state.config.DryRun {
		r.shedding.observe(policy, shedding(state), state.evaluated)
	}
}

// forgetMetrics removes a deleted policy's series.
func (r *LoadShedPolicyReconciler) forgetMetrics(policy string) {
	r.shedding.forget(policy)
	for _, v := range []*prometheus.GaugeVec{signalValue, triggerFiring, attributedRate, pausedDaemonSets, throttledServiceAccounts,
		blockedActions, lastEvaluation} {
		v.DeletePartialMatch(prometheus.Labels{labelPolicy: policy})
	}
	evaluations.DeletePartialMatch(prometheus.Labels{labelPolicy: policy})
	evaluationDuration.DeletePartialMatch(prometheus.Labels{labelPolicy: policy})
}

// observeChanges exports a plan.
func observeChanges(policy string, p plan.Plan, dryRun bool) {
	for _, c := range p.Changes {
		actionsTotal.WithLabelValues(policy, string(c.Kind), strconv.FormatBool(dryRun)).Inc()
		if c.Kind == plan.RestoreStarted {
			restoreAttempts.WithLabelValues(policy).Inc()
		}
	}
	blocked := map[plan.ChangeKind]int{plan.Throttled: 0, plan.Paused: 0}
	for _, b := range p.Blocked {
		blocked[b.Kind]++
	}
	for kind, n := range blocked {
		blockedActions.WithLabelValues(policy, string(kind)).Set(float64(n))
	}
	if dryRun {
		return
	}
	pausedDaemonSets.WithLabelValues(policy).Set(float64(len(p.Paused)))
	throttledServiceAccounts.WithLabelValues(policy).Set(float64(len(p.Throttled)))
}

// observeEvaluation exports what one evaluation of a policy found.
func observeEvaluation(policy string, state *reconcileState) {
	if state.evaluated.IsZero() {
		return
	}
	lastEvaluation.WithLabelValues(policy).Set(float64(state.evaluated.UnixNano()) / 1e9)
	for _, s := range state.readings {
		if s.OK {
			signalValue.WithLabelValues(policy, s.Name).Set(s.Value)
		} else {
			signalValue.DeleteLabelValues(policy, s.Name)
		}
		firing := 0.0
		if s.Firing() {
			firing = 1
		}
		triggerFiring.WithLabelValues(policy, s.Name).Set(firing)
	}
	attributedRate.DeletePartialMatch(prometheus.Labels{labelPolicy: policy})
	for _, o := range state.offenders {
		attributedRate.WithLabelValues(policy, o.ServiceAccount.String()).Set(o.RequestsPerSecond)
	}
}

// sheddingClock remembers when each policy was last seen shedding, to count
// the time it spends shedding. The zero value is ready to use.
type sheddingClock struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// observe adds the time since the policy's last evaluation while shedding.
func (c *sheddingClock) observe(policy string, shedding bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.last[policy]; ok && shedding {
		sheddingSeconds.WithLabelValues(policy).Add(now.Sub(last).Seconds())
	}
	switch {
	case !shedding:
		delete(c.last, policy)
	case c.last == nil:
		c.last = map[string]time.Time{policy: now}
	default:
		c.last[policy] = now
	}
}

// forget drops a policy.
func (c *sheddingClock) forget(policy string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.last, policy)
}
