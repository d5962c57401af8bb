package sampler

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/loadshed/loadshed/internal/signals"
)

// Label keys of the sampler's metrics.
const (
	labelOutcome = "outcome"
)

// The outcomes of a scrape.
const (
	outcomeSuccess = "success"
	outcomeFailure = "failure"
)

var (
	scrapeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "loadshed_sampler_scrape_duration_seconds",
		Help:    "How long the slowest API server scrape of each round took.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	})
	scrapes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loadshed_sampler_scrapes_total",
		Help: "API server instances scraped, by outcome.",
	}, []string{labelOutcome})
	fallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "loadshed_sampler_fallbacks_total",
		Help: "Rounds that scraped the configured host because the API servers' endpoints could not be used.",
	})
)

func init() {
	metrics.Registry.MustRegister(scrapeDuration, scrapes, fallbacks)
	for _, o := range []string{outcomeSuccess, outcomeFailure} {
		scrapes.WithLabelValues(o)
	}
}

func observeRound(r *signals.Round, st Status) {
	scrapeDuration.Observe(r.ScrapeSeconds)
	scrapes.WithLabelValues(outcomeSuccess).Add(float64(len(r.Instances)))
	scrapes.WithLabelValues(outcomeFailure).Add(float64(len(r.Failed)))
	if st.Fallback != "" {
		fallbacks.Inc()
	}
}
