package controllers

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/internal/plan"
)

// Label keys of the controller's metrics.
const (
	labelPolicy         = "policy"
	labelTrigger        = "trigger"
	labelServiceAccount = "service_account"
)

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
)

var (
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
	sheddingSeconds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_mitigation_shedding_seconds_total",
		Help: "Time spent with something throttled or paused, counted at each evaluation.",
	}, []string{labelPolicy})
)

// Label keys of the mitigation metrics.
const (
	labelKind   = "kind"
	labelDryRun = "dry_run"
)

func init() {
	metrics.Registry.MustRegister(signalValue, triggerFiring, attributedRate,
		actionsTotal, pausedDaemonSets, throttledServiceAccounts, restoreAttempts, sheddingSeconds)
}

// lastShedding remembers when each policy was last seen shedding, to count time.
var (
	lastSheddingMu sync.Mutex
	lastShedding   = map[string]time.Time{}
)

// observeActions exports a plan.
func observeActions(policy string, p plan.Plan, dryRun bool) {
	for _, a := range p.Actions {
		actionsTotal.WithLabelValues(policy, string(a.Kind), strconv.FormatBool(dryRun)).Inc()
		if a.Kind == plan.RestoreStarted {
			restoreAttempts.WithLabelValues(policy).Inc()
		}
	}
	if dryRun {
		return
	}
	pausedDaemonSets.WithLabelValues(policy).Set(float64(len(p.Paused)))
	throttledServiceAccounts.WithLabelValues(policy).Set(float64(len(p.Throttled)))
}

// observeShedding adds the time since the last evaluation while shedding.
func observeShedding(policy string, shedding bool, now time.Time) {
	lastSheddingMu.Lock()
	defer lastSheddingMu.Unlock()
	if last, ok := lastShedding[policy]; ok && shedding {
		sheddingSeconds.WithLabelValues(policy).Add(now.Sub(last).Seconds())
	}
	if shedding {
		lastShedding[policy] = now
	} else {
		delete(lastShedding, policy)
	}
}

// observePolicy exports what one evaluation of a policy found.
func observePolicy(policy string, state *reconcileState) {
	if state.evaluated.IsZero() {
		return
	}
	for _, s := range state.signals {
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
		attributedRate.WithLabelValues(policy, o.ServiceAccount).Set(o.RequestsPerSecond)
	}
}

// forgetPolicy removes a deleted policy's series.
func forgetPolicy(policy string) {
	lastSheddingMu.Lock()
	delete(lastShedding, policy)
	lastSheddingMu.Unlock()
	for _, v := range []*prometheus.GaugeVec{signalValue, triggerFiring, attributedRate, pausedDaemonSets, throttledServiceAccounts} {
		v.DeletePartialMatch(prometheus.Labels{labelPolicy: policy})
	}
}
