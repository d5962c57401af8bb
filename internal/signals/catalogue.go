package signals

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

// The metric families the catalogue reads. docs/signals.md explains each.
const (
	FamilyInflight       = "apiserver_current_inflight_requests"
	FamilyInqueue        = "apiserver_flowcontrol_current_inqueue_requests"
	FamilyRejected       = "apiserver_flowcontrol_rejected_requests_total"
	FamilyDispatched     = "apiserver_flowcontrol_dispatched_requests_total"
	FamilyExecutingSeats = "apiserver_flowcontrol_current_executing_seats"
	FamilyNominalSeats   = "apiserver_flowcontrol_nominal_limit_seats"
	FamilyRequestSLI     = "apiserver_request_sli_duration_seconds"
	FamilyRequestDur     = "apiserver_request_duration_seconds"
	FamilyRequestWait    = "apiserver_flowcontrol_request_wait_duration_seconds"
	FamilyRequests       = "apiserver_request_total"
	FamilyEtcdDuration   = "etcd_request_duration_seconds"
	FamilyTerminations   = "apiserver_request_terminations_total"
)

// SLO classes of request latency, as in Kubernetes' API call latency SLO.
// WATCH and CONNECT are excluded by naming the verbs each class counts.
// Labels of the API servers' metrics that the catalogue and attribution read.
const (
	labelVerb          = "verb"
	labelScope         = "scope"
	labelFlowSchema    = "flow_schema"
	labelPriorityLevel = "priority_level"
	labelSubresource   = "subresource"
	labelCode          = "code"
)

var (
	mutatingVerbs = matcherSpec{labelVerb, v1alpha1.MatchRegexp, "POST|PUT|PATCH|DELETE|APPLY"}
	readVerb      = matcherSpec{labelVerb, v1alpha1.MatchEqual, "GET"}
	resourceScope = matcherSpec{labelScope, v1alpha1.MatchEqual, "resource"}
	listVerb      = matcherSpec{labelVerb, v1alpha1.MatchEqual, "LIST"}
	listScopes    = matcherSpec{labelScope, v1alpha1.MatchRegexp, "namespace|cluster"}
	// Single-object calls: a GET names one object (a LIST is verb LIST),
	// and every mutating call counts. Resource requests have a scope;
	// non-resource ones (/metrics, /healthz) have none and are left out,
	// as are the streaming subresources, whose duration is the stream's.
	singleObjectVerbs = matcherSpec{labelVerb, v1alpha1.MatchRegexp, "GET|POST|PUT|PATCH|DELETE|APPLY"}
	resourceScopes    = matcherSpec{labelScope, v1alpha1.MatchRegexp, "resource|namespace|cluster"}
	notStreaming      = matcherSpec{labelSubresource, v1alpha1.MatchNotRegexp, "log|exec|attach|portforward|proxy"}
	timedOut          = matcherSpec{labelCode, v1alpha1.MatchEqual, "504"}
)

// matcherSpec is a catalogue matcher, compiled when a query is built.
type matcherSpec struct {
	label string
	op    v1alpha1.MatchOperator
	value string
}

// definition is a catalogue entry, before the trigger's own matchers and window.
type definition struct {
	kind     Kind
	family   string
	matchers []matcherSpec
	within   v1alpha1.Aggregation
	across   v1alpha1.Aggregation
	quantile float64
	// groupBy, for a quantile, takes it per value of this label and keeps
	// the worst.
	groupBy string
}

var catalogue = map[v1alpha1.Signal]definition{
	v1alpha1.SignalInflightRequests: {kind: Gauge, family: FamilyInflight,
		within: v1alpha1.AggregationSum, across: v1alpha1.AggregationMax},
	v1alpha1.SignalInqueueRequests: {kind: Gauge, family: FamilyInqueue,
		within: v1alpha1.AggregationSum, across: v1alpha1.AggregationMax},
	v1alpha1.SignalRejectedRequestsPerSecond: {kind: Rate, family: FamilyRejected,
		across: v1alpha1.AggregationSum},
	v1alpha1.SignalMutatingLatencyP99: {kind: Quantile, family: FamilyRequestSLI, quantile: 0.99,
		matchers: []matcherSpec{mutatingVerbs}, across: v1alpha1.AggregationMax},
	v1alpha1.SignalReadLatencyP99: {kind: Quantile, family: FamilyRequestSLI, quantile: 0.99,
		matchers: []matcherSpec{readVerb, resourceScope}, across: v1alpha1.AggregationMax},
	v1alpha1.SignalListLatencyP99: {kind: Quantile, family: FamilyRequestSLI, quantile: 0.99,
		matchers: []matcherSpec{listVerb, listScopes}, across: v1alpha1.AggregationMax},
	v1alpha1.SignalRequestsPerSecond: {kind: Rate, family: FamilyRequests,
		across: v1alpha1.AggregationSum},
	v1alpha1.SignalListRequestsPerSecond: {kind: Rate, family: FamilyRequests,
		matchers: []matcherSpec{listVerb}, across: v1alpha1.AggregationSum},
	v1alpha1.SignalSeatUtilization: {kind: SeatUtilization, family: FamilyExecutingSeats,
		across: v1alpha1.AggregationMax},
	v1alpha1.SignalEtcdLatencyP99: {kind: Quantile, family: FamilyEtcdDuration, quantile: 0.99,
		across: v1alpha1.AggregationMax},
	v1alpha1.SignalTerminatedRequestsPerSecond: {kind: Rate, family: FamilyTerminations,
		across: v1alpha1.AggregationSum},
	v1alpha1.SignalScrapeLatency: {kind: ScrapeLatency, across: v1alpha1.AggregationMax},
	v1alpha1.SignalSingleObjectDurationP99: {kind: Quantile, family: FamilyRequestDur, quantile: 0.99,
		matchers: []matcherSpec{singleObjectVerbs, resourceScopes, notStreaming}, across: v1alpha1.AggregationMax},
	v1alpha1.SignalListDurationP99: {kind: Quantile, family: FamilyRequestDur, quantile: 0.99,
		matchers: []matcherSpec{listVerb, listScopes}, across: v1alpha1.AggregationMax},
	v1alpha1.SignalQueueWaitP99: {kind: Quantile, family: FamilyRequestWait, quantile: 0.99,
		groupBy: labelPriorityLevel, across: v1alpha1.AggregationMax},
	v1alpha1.SignalTimedOutRequestsPerSecond: {kind: Rate, family: FamilyRequests,
		matchers: []matcherSpec{timedOut}, across: v1alpha1.AggregationSum},
}

// CatalogueFamilies returns, sorted, every metric family the signal
// catalogue and attribution read: what a recording must hold for any
// policy on catalogue signals to be evaluated on it.
func CatalogueFamilies() []string {
	set := map[string]bool{FamilyNominalSeats: true}
	for _, d := range catalogue {
		if d.family != "" {
			set[d.family] = true
		}
	}
	for _, a := range []Accumulator{DispatchedByFlowSchema, RejectedByFlowSchema, SeatsByFlowSchema} {
		set[a.Family] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Catalogue lists every signal of the catalogue, sorted by name.
func Catalogue() []v1alpha1.Signal {
	return slices.Sorted(maps.Keys(catalogue))
}

// ForTrigger returns the query behind a trigger's signal or metric. A
// promQL trigger has no query: the Prometheus source evaluates it as written.
func ForTrigger(t *policy.Trigger) (Query, error) {
	var d definition
	switch {
	case t.Signal != "":
		def, ok := catalogue[t.Signal]
		if !ok {
			return Query{}, fmt.Errorf("unknown signal %q", t.Signal)
		}
		d = def
	case t.Metric != nil:
		d = definition{family: t.Metric.Name, within: t.Metric.Aggregation, across: t.Metric.Aggregation, quantile: t.Metric.Quantile}
		switch t.Metric.Transform {
		case v1alpha1.TransformRate:
			d.kind = Rate
		case v1alpha1.TransformQuantile:
			d.kind = Quantile
		default:
			d.kind = Gauge
		}
	default:
		return Query{}, fmt.Errorf("trigger %q reads a PromQL expression, not a signal", t.Name)
	}
	var ms []policy.Matcher
	for _, m := range d.matchers {
		compiled, err := policy.NewMatcher(m.label, m.op, m.value)
		if err != nil {
			return Query{}, fmt.Errorf("signal %q: %w", t.Signal, err)
		}
		ms = append(ms, compiled)
	}
	ms = append(ms, t.Matchers...)
	q := Query{Kind: d.kind, Within: d.within, Across: d.across, Quantile: d.quantile, Window: t.Window}
	switch d.kind {
	case Quantile:
		q.Accum = Accumulator{Family: d.family, Matchers: ms, Kind: Histogram}
		if d.groupBy != "" {
			q.Accum.Kind, q.Accum.GroupBy = GroupedHistogram, d.groupBy
		}
	case SeatUtilization:
		q.Accum = Accumulator{Family: FamilyExecutingSeats, Matchers: ms, Kind: Grouped, GroupBy: labelPriorityLevel}
		q.Nominal = Accumulator{Family: FamilyNominalSeats, Matchers: ms, Kind: Grouped, GroupBy: labelPriorityLevel}
	case ScrapeLatency:
	default:
		q.Accum = Accumulator{Family: d.family, Matchers: ms, Kind: Scalar}
	}
	return q, nil
}

// PromQL returns the PromQL expression equivalent to the query, as run
// against a Prometheus that scrapes the API servers with an instance label.
// The Prometheus source runs it; docs/signals.md lists it for each signal.
func (q Query) PromQL() string {
	sel := func(family string) string { return family + selector(q.Accum.Matchers) }
	w := promDuration(q.Window)
	switch q.Kind {
	case Gauge:
		return fmt.Sprintf("%s(%s by (instance) (%s))", q.Across, q.Within, sel(q.Accum.Family))
	case Rate:
		return fmt.Sprintf("%s(sum by (instance) (rate(%s[%s])))", q.Across, sel(q.Accum.Family), w)
	case Quantile:
		by := "instance, le"
		outer := string(q.Across)
		if q.Across == v1alpha1.AggregationSum {
			by, outer = "le", ""
		}
		if q.Accum.Kind == GroupedHistogram {
			by = q.Accum.GroupBy + ", " + by
			outer = "max"
		}
		return fmt.Sprintf("%s(histogram_quantile(%s, sum by (%s) (rate(%s[%s]))))",
			outer, strconv.FormatFloat(q.Quantile, 'g', -1, 64), by, sel(q.Accum.Family+"_bucket"), w)
	case SeatUtilization:
		return fmt.Sprintf("max(sum by (instance, priority_level) (%s) / sum by (instance, priority_level) (%s > 0))",
			sel(FamilyExecutingSeats), sel(FamilyNominalSeats))
	case ScrapeLatency:
		return `max(scrape_duration_seconds{job=~".*apiserver.*"})`
	}
	return ""
}

func selector(ms []policy.Matcher) string {
	if len(ms) == 0 {
		return ""
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func promDuration(d interface{ Seconds() float64 }) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}
