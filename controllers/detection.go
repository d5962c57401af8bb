package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/trigger"
)

// maxOffenders is how many offenders status lists.
const maxOffenders = 5

// reconcileDetection registers what the policy needs with the sampler, and
// evaluates its triggers and offenders on the rounds already taken.
func (r *LoadShedPolicyReconciler) reconcileDetection(ctx context.Context, obj *v1alpha1.LoadShedPolicy, state *reconcileState) error {
	cfg := state.config
	queries := map[string]signals.Query{}
	accums := []signals.Accumulator{
		signals.DispatchedByFlowSchema, signals.RejectedByFlowSchema, signals.SeatsByFlowSchema,
	}
	var prom *sampler.PrometheusInterest
	if cfg.Source.Type == v1alpha1.SourcePrometheus {
		pc, err := r.prometheusConfig(ctx, cfg.Source.Prometheus)
		if err != nil {
			return err
		}
		prom = &sampler.PrometheusInterest{Config: pc, Queries: map[string]string{}}
	}
	for i := range cfg.Triggers {
		t := &cfg.Triggers[i]
		if t.PromQL != "" {
			prom.Queries[t.Name] = t.PromQL
			continue
		}
		q, err := signals.ForTrigger(t)
		if err != nil {
			return &specError{reason: v1alpha1.ReasonInvalidSpec, err: err}
		}
		if prom != nil {
			prom.Queries[t.Name] = q.PromQL()
			continue
		}
		queries[t.Name] = q
		accums = append(accums, q.Accumulators()...)
	}

	attributed, err := r.reconcileAttribution(ctx, cfg)
	if err != nil {
		return err
	}

	r.Sampler.Register(obj.Name, sampler.Interest{
		Interval:     cfg.Interval,
		Timeout:      cfg.Source.ScrapeTimeout,
		Retention:    detection.Retention(cfg),
		Accumulators: accums,
		Prometheus:   prom,
	})

	rounds := r.Sampler.Rounds()
	in := detection.Input{
		Config:   cfg,
		Queries:  queries,
		Rounds:   rounds,
		Previous: previousStates(obj),
		Now:      r.Clock.Now(),
	}
	var promMessages map[string]string
	if prom != nil {
		in.Points, promMessages = r.Sampler.PrometheusPoints(obj.Name)
	}
	state.signals = detection.Evaluate(in)
	for i := range state.signals {
		if m := promMessages[state.signals[i].Name]; m != "" {
			state.signals[i].Message = m
		}
	}
	state.metrics = metricsAvailability(r.Sampler.Status(), rounds, state.signals, prom != nil, in.Now, detection.MaxGap(cfg))
	offenders := detection.Offenders(rounds, attributed, attributionWindow(cfg))
	if len(offenders) > maxOffenders {
		offenders = offenders[:maxOffenders]
	}
	state.offenders = offenders
	state.evaluated = in.Now
	return nil
}

// attributionWindow is the window over which offenders' rates are measured:
// the longest trigger window.
func attributionWindow(cfg *policy.Config) time.Duration {
	w := cfg.Interval * 3
	for _, t := range cfg.Triggers {
		w = max(w, t.Window)
	}
	return w
}

// previousStates reads the triggers' states back from status, so that a
// firing trigger stays firing across a restart of the operator.
func previousStates(obj *v1alpha1.LoadShedPolicy) map[string]trigger.State {
	out := map[string]trigger.State{}
	for _, s := range obj.Status.Signals {
		out[s.Name] = detection.StateOf(s)
	}
	return out
}

// metricsStatus says whether the signals could be read.
type metricsStatus struct {
	available bool
	reason    string
	message   string
}

func metricsAvailability(st sampler.Status, rounds []*signals.Round, sigs []detection.Signal, prometheus bool,
	now time.Time, maxGap time.Duration) metricsStatus {
	missing := 0
	var firstMissing string
	for _, s := range sigs {
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
	case missing > 0 && prometheus:
		return metricsStatus{reason: v1alpha1.ReasonQueryFailed,
			message: fmt.Sprintf("%d of %d signals missing (%s)", missing, len(sigs), firstMissing)}
	case missing > 0:
		return metricsStatus{reason: v1alpha1.ReasonNoSamples,
			message: fmt.Sprintf("%d of %d signals missing (%s)", missing, len(sigs), firstMissing)}
	}
	msg := "Read every signal"
	if !prometheus {
		msg = "Read every signal; " + st.String()
	}
	return metricsStatus{available: true, reason: v1alpha1.ReasonMetricsRead, message: msg + failures(st)}
}

func failures(st sampler.Status) string {
	out := ""
	for target, why := range st.Failed {
		out += fmt.Sprintf("; %s: %s", target, why)
	}
	return out
}

// prometheusConfig reads the Prometheus source's Secrets from the cache.
func (r *LoadShedPolicyReconciler) prometheusConfig(ctx context.Context, p *policy.Prometheus) (promsource.Config, error) {
	pc := promsource.Config{URL: p.URL, Timeout: p.Timeout}
	if p.CASecret != nil {
		v, err := r.secretValue(ctx, p.CASecret)
		if err != nil {
			return pc, err
		}
		pc.CAPEM = v
	}
	if p.BearerTokenSecret != nil {
		v, err := r.secretValue(ctx, p.BearerTokenSecret)
		if err != nil {
			return pc, err
		}
		pc.BearerToken = string(v)
	}
	return pc, nil
}

func (r *LoadShedPolicyReconciler) secretValue(ctx context.Context, ref *policy.SecretKey) ([]byte, error) {
	if err := r.checkSecretKey(ctx, ref); err != nil {
		return nil, err
	}
	secret := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: ref.Name}, secret); err != nil {
		return nil, fmt.Errorf("reading secret %s/%s: %w", r.Namespace, ref.Name, err)
	}
	return secret.Data[ref.Key], nil
}
