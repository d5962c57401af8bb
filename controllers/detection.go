package controllers

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// evaluate registers what the policy needs with the sampler, and evaluates
// its triggers and offenders on the rounds already taken.
func (r *LoadShedPolicyReconciler) evaluate(name string, spec *resolvedSpec, previous map[string]trigger.Status,
	previousAt time.Time, scope detection.Scope, state *reconcileState) {
	cfg := spec.config
	r.Sampler.Register(name, spec.interest)
	prometheus := spec.interest.Prometheus != nil
	rounds := r.Sampler.Rounds()
	in := detection.Input{
		Config:     cfg,
		Queries:    spec.queries,
		Rounds:     rounds,
		Previous:   previous,
		PreviousAt: previousAt,
		Now:        r.Clock.Now(),
	}
	var promMessages map[string]string
	if prometheus {
		in.Points, promMessages = r.Sampler.PrometheusPoints(name)
	}
	state.readings = detection.Evaluate(in)
	for i := range state.readings {
		if m := promMessages[state.readings[i].Name]; m != "" {
			state.readings[i].Message = m
		}
	}
	state.metrics = metricsAvailability(r.Sampler.Status(), rounds, state.readings, prometheus, in.Now, detection.MaxGap(cfg))
	offenders := detection.Offenders(rounds, scope, detection.AttributionWindow(cfg))
	state.offenders = offenders[:min(len(offenders), detection.MaxOffenders)]
	state.evaluated = in.Now
}

// lastEvaluated is when the states previousStates reads were evaluated;
// zero if never.
func lastEvaluated(obj *v1alpha1.LoadShedPolicy) time.Time {
	if obj.Status.LastEvaluationTime == nil {
		return time.Time{}
	}
	return obj.Status.LastEvaluationTime.Time
}

// previousStates reads the triggers' states back from status, so that a
// firing trigger stays firing across a restart of the operator.
func previousStates(obj *v1alpha1.LoadShedPolicy) map[string]trigger.Status {
	out := map[string]trigger.Status{}
	for _, s := range obj.Status.Signals {
		out[s.Name] = detection.StatusOf(s)
	}
	return out
}

// metricsStatus says whether the signals could be read.
type metricsStatus struct {
	available bool
	reason    string
	message   string
}

func metricsAvailability(st sampler.Status, rounds []*signals.Round, readings []detection.Reading, prometheus bool,
	now time.Time, maxGap time.Duration) metricsStatus {
	missing := 0
	var firstMissing string
	for _, s := range readings {
		if !s.OK {
			missing++
			if firstMissing == "" {
				firstMissing = s.Name + ": " + s.Message
			}
		}
	}
	switch {
	case !prometheus && len(rounds) == 0:
		return metricsStatus{reason: v1alpha1.ReasonNoSamples, message: "Waiting for the first scrape of the API servers"}
	case !prometheus && now.Sub(rounds[len(rounds)-1].T) > maxGap:
		return metricsStatus{reason: v1alpha1.ReasonScrapeFailed,
			message: fmt.Sprintf("The last scrape is %v old", now.Sub(rounds[len(rounds)-1].T).Round(time.Second))}
	case !prometheus && len(rounds[len(rounds)-1].Instances) == 0:
		return metricsStatus{reason: v1alpha1.ReasonScrapeFailed, message: "No API server could be scraped: " + st.String() +
			failures(st)}
	case !prometheus && len(rounds[len(rounds)-1].Failed) > 0:
		return metricsStatus{reason: v1alpha1.ReasonPartialScrape, message: "Partially blind: " + st.String() +
			failures(st) + blindness(rounds)}
	case missing > 0 && prometheus:
		return metricsStatus{reason: v1alpha1.ReasonQueryFailed,
			message: fmt.Sprintf("%d of %d signals missing (%s)", missing, len(readings), firstMissing)}
	case missing > 0:
		return metricsStatus{reason: v1alpha1.ReasonNoSamples,
			message: fmt.Sprintf("%d of %d signals missing (%s)", missing, len(readings), firstMissing)}
	}
	msg := "Read every signal"
	if !prometheus {
		msg = "Read every signal; " + st.String()
	}
	return metricsStatus{available: true, reason: v1alpha1.ReasonMetricsRead, message: msg + failures(st) + blindness(rounds)}
}

// blindness says when the newest round could not read who the API servers
// hold (APF's dump_requests): offenders cannot be named then.
func blindness(rounds []*signals.Round) string {
	if len(rounds) == 0 {
		return ""
	}
	r := rounds[len(rounds)-1]
	out := ""
	for _, target := range slices.Sorted(maps.Keys(r.ClientsFailed)) {
		out += fmt.Sprintf("; cannot tell who loads %s: %s", target, r.ClientsFailed[target])
	}
	return out
}

func failures(st sampler.Status) string {
	out := ""
	for _, target := range slices.Sorted(maps.Keys(st.Failed)) {
		out += fmt.Sprintf("; %s: %s", target, st.Failed[target])
	}
	return out
}
