package controllers

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/version"
)

// Label keys of the controller's metrics.
const (
	labelPolicy         = "policy"
	labelTrigger        = "trigger"
	labelServiceAccount = "service_account"
	labelKind           = "kind"
	labelDryRun         = "dry_run"
	labelReason         = "reason"
	// labelNamespace and labelDaemonSet name a DaemonSet the policy acted
	// on (paused, restores, put a pause back on): never any other, so that
	// the series stay as few as the DaemonSets loadshed touches.
	labelNamespace = "daemonset_namespace"
	labelDaemonSet = "daemonset"
)

// unavailableReasons are the MetricsAvailable condition's reasons when the
// signals could not all be read: the values of the reason label.
var unavailableReasons = []string{v1alpha1.ReasonNoSamples, v1alpha1.ReasonScrapeFailed,
	v1alpha1.ReasonPartialScrape, v1alpha1.ReasonQueryFailed}

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
	triggerThreshold = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_trigger_threshold",
		Help: "Each trigger's threshold: it fires when its signal stays above it for its for duration.",
	}, []string{labelPolicy, labelTrigger})
	triggerClearThreshold = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_trigger_clear_threshold",
		Help: "Each trigger's clear threshold: it clears when its signal stays at or below it for clearFor.",
	}, []string{labelPolicy, labelTrigger})
	metricsAvailable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_metrics_available",
		Help: "1 when the policy's last evaluation read every signal (its MetricsAvailable condition is True), else 0.",
	}, []string{labelPolicy})
	unavailableEvaluations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_detection_unavailable_evaluations_total",
		Help: "Evaluations that could not read every signal, by the MetricsAvailable condition's reason.",
	}, []string{labelPolicy, labelReason})
	lastSignals = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_detection_last_signals_timestamp_seconds",
		Help: "When the policy last read every signal (or, until it has, was first evaluated by this process), in seconds since the epoch.",
	}, []string{labelPolicy})
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
	sheddingNow = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_shedding",
		Help: "1 while the policy throttles or pauses something (its Shedding condition is True), else 0.",
	}, []string{labelPolicy})
	relapses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_mitigation_relapses_total",
		Help: "DaemonSets paused again during their restore, or within restore.backoff.max after it.",
	}, []string{labelPolicy, labelNamespace, labelDaemonSet})
	pauseOverrides = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_mitigation_pause_overrides_total",
		Help: "Pauses someone else removed that the policy put back.",
	}, []string{labelPolicy, labelNamespace, labelDaemonSet})
	overriddenPauses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_overridden_pauses",
		Help: "Pauses that someone else removed, found at the last evaluation (put back now, or held until a backoff step has passed).",
	}, []string{labelPolicy})
	restoreWave = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_daemonset_restore_wave",
		Help: "For each DaemonSet the policy holds: 0 while fully paused, n during restore wave n.",
	}, []string{labelPolicy, labelNamespace, labelDaemonSet})
	restoreAttempt = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_daemonset_restore_attempt",
		Help: "For each DaemonSet the policy holds: the restores of it that relapsed.",
	}, []string{labelPolicy, labelNamespace, labelDaemonSet})
	backoffExhausted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_mitigation_daemonset_backoff_exhausted",
		Help: "For each DaemonSet the policy holds: 1 when its restores relapsed so often that its backoff reached restore.backoff.max, else 0.",
	}, []string{labelPolicy, labelNamespace, labelDaemonSet})
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
	intervalSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_policy_interval_seconds",
		Help: "The policy's evaluation interval (spec.interval), in seconds.",
	}, []string{labelPolicy})
)

// policyGauges and policyCounters are every metric with a policy label:
// forgetMetrics removes a deleted policy's series from each.
var (
	policyGauges = []*prometheus.GaugeVec{signalValue, triggerFiring, triggerThreshold, triggerClearThreshold, metricsAvailable, lastSignals, attributedRate,
		pausedDaemonSets, throttledServiceAccounts, sheddingNow, overriddenPauses, restoreWave, restoreAttempt,
		backoffExhausted, blockedActions, lastEvaluation, intervalSeconds}
	policyCounters = []*prometheus.CounterVec{unavailableEvaluations, actionsTotal, restoreAttempts, relapses,
		pauseOverrides, sheddingSeconds, evaluations}
)

func init() {
	for _, g := range policyGauges {
		metrics.Registry.MustRegister(g)
	}
	for _, c := range policyCounters {
		metrics.Registry.MustRegister(c)
	}
	metrics.Registry.MustRegister(version.NewCollector(), evaluationDuration)
}

// startMetrics initialises a policy's series that have no natural first
// value to zero, so that a rate or an absence means what it says from the
// policy's first evaluation on.
func startMetrics(name string) {
	for _, reason := range unavailableReasons {
		unavailableEvaluations.WithLabelValues(name, reason)
	}
	for _, kind := range []plan.ChangeKind{plan.Throttled, plan.Paused, plan.RestoreStarted, plan.WaveAdvanced,
		plan.Restored, plan.Repaused, plan.Unthrottled} {
		actionsTotal.WithLabelValues(name, string(kind), "false")
	}
	for _, c := range []*prometheus.CounterVec{restoreAttempts, sheddingSeconds, evaluations} {
		c.WithLabelValues(name)
	}
	for _, g := range []*prometheus.GaugeVec{pausedDaemonSets, throttledServiceAccounts, sheddingNow, overriddenPauses} {
		g.WithLabelValues(name)
	}
	for _, kind := range []plan.ChangeKind{plan.Throttled, plan.Paused} {
		blockedActions.WithLabelValues(name, string(kind))
	}
}

// observeMetrics exports what one loop of a policy found and did, and how
// long it took.
func (r *LoadShedPolicyReconciler) observeMetrics(name string, state *reconcileState, took time.Duration) {
	startMetrics(name)
	evaluations.WithLabelValues(name).Inc()
	evaluationDuration.WithLabelValues(name).Observe(took.Seconds())
	observeEvaluation(name, state)
	if state.plan != nil {
		sheddingNow.WithLabelValues(name).Set(boolFloat(shedding(state)))
	}
	if state.plan != nil && !state.config.DryRun {
		r.shedding.observe(name, shedding(state), state.evaluated)
	}
}

// forgetMetrics removes a deleted policy's series.
func (r *LoadShedPolicyReconciler) forgetMetrics(name string) {
	r.shedding.forget(name)
	watched.Delete(name)
	for _, g := range policyGauges {
		g.DeletePartialMatch(prometheus.Labels{labelPolicy: name})
	}
	for _, c := range policyCounters {
		c.DeletePartialMatch(prometheus.Labels{labelPolicy: name})
	}
	evaluationDuration.DeletePartialMatch(prometheus.Labels{labelPolicy: name})
}

// observeChanges exports a plan.
func observeChanges(name string, p plan.Plan, cfg *policy.Config) {
	dryRun := cfg.DryRun
	for _, c := range p.Changes {
		actionsTotal.WithLabelValues(name, string(c.Kind), strconv.FormatBool(dryRun)).Inc()
		if c.Kind == plan.RestoreStarted {
			restoreAttempts.WithLabelValues(name).Inc()
		}
	}
	overriddenPauses.WithLabelValues(name).Set(float64(len(p.PutBack) + len(p.Held)))
	blocked := map[plan.ChangeKind]int{plan.Throttled: 0, plan.Paused: 0}
	for _, b := range p.Blocked {
		blocked[b.Kind]++
	}
	for kind, n := range blocked {
		blockedActions.WithLabelValues(name, string(kind)).Set(float64(n))
	}
	if dryRun {
		return
	}
	pausedDaemonSets.WithLabelValues(name).Set(float64(len(p.Paused)))
	throttledServiceAccounts.WithLabelValues(name).Set(float64(len(p.Throttled)))
	observePauses(name, p, cfg.Restore.Backoff)
}

// observePauses exports the DaemonSets a plan holds, their relapses and
// the pauses it puts back: series for those only.
func observePauses(name string, p plan.Plan, backoff policy.Backoff) {
	for _, c := range p.Changes {
		if c.Kind == plan.Repaused || (c.Kind == plan.Paused && p.Paused[c.Target].Attempt > 0) {
			relapses.WithLabelValues(name, c.Target.Namespace, c.Target.Name).Inc()
		}
	}
	for _, ds := range p.PutBack {
		pauseOverrides.WithLabelValues(name, ds.Namespace, ds.Name).Inc()
	}
	held := prometheus.Labels{labelPolicy: name}
	for _, g := range []*prometheus.GaugeVec{restoreWave, restoreAttempt, backoffExhausted} {
		g.DeletePartialMatch(held)
	}
	backoff.JitterPercent = 0
	for ds, rec := range p.Paused {
		// A held DaemonSet's counters start at 0, so that increase() sees
		// its first relapse and its first override.
		relapses.WithLabelValues(name, ds.Namespace, ds.Name)
		pauseOverrides.WithLabelValues(name, ds.Namespace, ds.Name)
		restoreWave.WithLabelValues(name, ds.Namespace, ds.Name).Set(float64(rec.Wave))
		restoreAttempt.WithLabelValues(name, ds.Namespace, ds.Name).Set(float64(rec.Attempt))
		exhausted := rec.Attempt > 0 && plan.Backoff(backoff, ds, rec.Attempt) >= backoff.Max
		backoffExhausted.WithLabelValues(name, ds.Namespace, ds.Name).Set(boolFloat(exhausted))
	}
}

// observeEvaluation exports what one evaluation of a policy found.
func observeEvaluation(name string, state *reconcileState) {
	if state.evaluated.IsZero() {
		return
	}
	now := float64(state.evaluated.UnixNano()) / 1e9
	lastEvaluation.WithLabelValues(name).Set(now)
	if state.config != nil {
		intervalSeconds.WithLabelValues(name).Set(state.config.Interval.Seconds())
	}
	observeAvailability(name, state.metrics, now)
	// A trigger taken out of the spec takes its series with it.
	for _, g := range []*prometheus.GaugeVec{signalValue, triggerFiring, triggerThreshold, triggerClearThreshold} {
		g.DeletePartialMatch(prometheus.Labels{labelPolicy: name})
	}
	for _, s := range state.readings {
		if s.OK {
			signalValue.WithLabelValues(name, s.Name).Set(s.Value)
		}
		triggerFiring.WithLabelValues(name, s.Name).Set(boolFloat(s.Firing()))
		triggerThreshold.WithLabelValues(name, s.Name).Set(s.Threshold)
		triggerClearThreshold.WithLabelValues(name, s.Name).Set(s.ClearThreshold)
	}
	attributedRate.DeletePartialMatch(prometheus.Labels{labelPolicy: name})
	for _, o := range state.offenders {
		attributedRate.WithLabelValues(name, o.ServiceAccount.String()).Set(o.RequestsPerSecond)
	}
}

// observeAvailability exports whether an evaluation at now (in seconds since
// the epoch) could read every signal.
func observeAvailability(name string, st metricsStatus, now float64) {
	last := lastSignals.WithLabelValues(name)
	if st.available {
		metricsAvailable.WithLabelValues(name).Set(1)
		last.Set(now)
		watched.Store(name, true)
		return
	}
	metricsAvailable.WithLabelValues(name).Set(0)
	unavailableEvaluations.WithLabelValues(name, st.reason).Inc()
	if _, seen := watched.LoadOrStore(name, true); !seen {
		last.Set(now) // blind since this process first evaluated it
	}
}

// watched holds the policies whose last_signals series is set: a blind
// policy's starts at its first evaluation, then stays where it was.
var watched sync.Map

// boolFloat is 1 for true, 0 for false.
func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sheddingClock remembers when each policy was last seen shedding, to count
// the time it spends shedding. The zero value is ready to use.
type sheddingClock struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// observe adds the time since the policy's last evaluation while shedding.
func (c *sheddingClock) observe(name string, shedding bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.last[name]; ok && shedding {
		sheddingSeconds.WithLabelValues(name).Add(now.Sub(last).Seconds())
	}
	switch {
	case !shedding:
		delete(c.last, name)
	case c.last == nil:
		c.last = map[string]time.Time{name: now}
	default:
		c.last[name] = now
	}
}

// forget drops a policy.
func (c *sheddingClock) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.last, name)
}
