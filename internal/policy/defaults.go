package policy

import "time"

// The defaults of a LoadShedPolicy. The same values are written as
// +kubebuilder:default markers in api/v1alpha1, so that the API server shows
// them; TestDefaultsMatchCRD keeps the two in step. Resolve falls back to
// them for fields a stored object lacks (one written before a field existed).
const (
	DefaultInterval          = 10 * time.Second
	DefaultScrapeTimeout     = 5 * time.Second
	DefaultPrometheusTimeout = 5 * time.Second
	DefaultFor               = 30 * time.Second
	DefaultWindow            = time.Minute
	DefaultAggregation       = "sum"
	DefaultTransform         = "value"
	DefaultMatchOperator     = "="

	DefaultMinSharePercent          = 20
	DefaultNominalConcurrencyShares = 1
	DefaultLimitResponse            = "Queue"
	DefaultQueues                   = 16
	DefaultQueueLengthLimit         = 50
	DefaultMaxPaused                = 1
	DefaultPauseAfter               = time.Minute

	DefaultStableFor      = 2 * time.Minute
	DefaultProbation      = time.Minute
	DefaultBackoffInitial = time.Minute
	DefaultBackoffMax     = 30 * time.Minute
	DefaultMultiplier     = 2.0
	DefaultJitterPercent  = 10
)

// DefaultWavePercents are the restore waves, in percent of eligible nodes.
func DefaultWavePercents() []int32 { return []int32{10, 25, 50, 100} }
