// Package policy turns a LoadShedPolicy's spec into a plain, validated
// Config: durations as time.Duration, thresholds as float64, selectors and
// regular expressions parsed, defaults filled in. The decision logic reads
// only Config, never the API types.
package policy

import (
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Config is a policy's spec, resolved and validated.
type Config struct {
	Source   Source
	Interval time.Duration
	Triggers []Trigger
	Targets  Targets
	// MinShare is the share (0 to 1) of attributed requests above which a
	// ServiceAccount counts as an offender.
	MinShare float64
	Throttle Throttle
	Pause    Pause
	Restore  Restore
	DryRun   bool
	Suspend  bool
}

// Source says where metrics are read from.
type Source struct {
	Type          v1alpha1.SourceType
	ScrapeTimeout time.Duration
	Prometheus    *Prometheus
}

// Prometheus is a Prometheus HTTP API.
type Prometheus struct {
	URL string
	// CASecret and BearerTokenSecret name keys of Secrets in the operator's
	// namespace; nil when not set.
	CASecret          *SecretKey
	BearerTokenSecret *SecretKey
	Timeout           time.Duration
}

// SecretKey names one key of a Secret in the operator's namespace.
type SecretKey struct {
	Name string
	Key  string
}

// Trigger is one resolved trigger.
type Trigger struct {
	Name string
	// Exactly one of Signal, Metric and PromQL is set.
	Signal         v1alpha1.Signal
	Metric         *Metric
	PromQL         string
	Matchers       []Matcher
	Threshold      float64
	ClearThreshold float64
	For            time.Duration
	Window         time.Duration
}

// SignalName is what the trigger reads, for status and logs.
func (t *Trigger) SignalName() string {
	switch {
	case t.Signal != "":
		return string(t.Signal)
	case t.Metric != nil:
		return t.Metric.Name
	default:
		return "promQL"
	}
}

// Metric is the generic form of a signal.
type Metric struct {
	Name        string
	Aggregation v1alpha1.Aggregation
	Transform   v1alpha1.Transform
	Quantile    float64
}

// Targets selects the DaemonSets a policy may act on.
type Targets struct {
	NamespaceSelector labels.Selector
	Selector          labels.Selector
	Exclude           map[types.NamespacedName]bool
	// AllowCritical are the DaemonSets at a system-*-critical priority the
	// policy may act on.
	AllowCritical            map[types.NamespacedName]bool
	AllowProtectedNamespaces bool
}

// Throttle configures the throttling priority level.
type Throttle struct {
	Enabled                  bool
	NominalConcurrencyShares int32
	LimitResponse            v1alpha1.LimitResponseType
	Queues                   int32
	QueueLengthLimit         int32
}

// Pause configures pausing DaemonSets.
type Pause struct {
	Enabled   bool
	MaxPaused int
	After     time.Duration
}

// Restore configures restoring what was shed.
type Restore struct {
	StableFor    time.Duration
	Probation    time.Duration
	WavePercents []int32
	Backoff      Backoff
}

// Backoff is an exponential backoff with jitter.
type Backoff struct {
	Initial       time.Duration
	Multiplier    float64
	Max           time.Duration
	JitterPercent int32
}
