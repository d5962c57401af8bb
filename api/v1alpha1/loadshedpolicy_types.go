package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SourceType names where a policy reads the API servers' metrics from.
// +kubebuilder:validation:Enum=apiServer;prometheus
type SourceType string

const (
	// SourceAPIServer scrapes /metrics of every kube-apiserver instance directly.
	SourceAPIServer SourceType = "apiServer"
	// SourcePrometheus runs instant queries against a Prometheus HTTP API.
	SourcePrometheus SourceType = "prometheus"
)

// Signal names a built-in signal of the catalogue. The names are API:
// docs/signals.md gives the exact expression behind each one.
// +kubebuilder:validation:Enum=inflightRequests;inqueueRequests;rejectedRequestsPerSecond;mutatingLatencyP99;readLatencyP99;listLatencyP99;requestsPerSecond;listRequestsPerSecond;seatUtilization;etcdLatencyP99;terminatedRequestsPerSecond;scrapeLatency;singleObjectDurationP99;listDurationP99;queueWaitP99;timedOutRequestsPerSecond
type Signal string

// The built-in signals.
const (
	// SignalInflightRequests is the number of requests being served
	// (apiserver_current_inflight_requests), the worst instance.
	SignalInflightRequests Signal = "inflightRequests"
	// SignalInqueueRequests is the number of requests waiting in API Priority
	// and Fairness queues (apiserver_flowcontrol_current_inqueue_requests), the worst instance.
	SignalInqueueRequests Signal = "inqueueRequests"
	// SignalRejectedRequestsPerSecond is the rate of requests rejected by API
	// Priority and Fairness (apiserver_flowcontrol_rejected_requests_total), summed over instances.
	SignalRejectedRequestsPerSecond Signal = "rejectedRequestsPerSecond"
	// SignalMutatingLatencyP99 is the p99 latency in seconds of mutating requests.
	SignalMutatingLatencyP99 Signal = "mutatingLatencyP99"
	// SignalReadLatencyP99 is the p99 latency in seconds of single-object reads.
	SignalReadLatencyP99 Signal = "readLatencyP99"
	// SignalListLatencyP99 is the p99 latency in seconds of namespace and cluster LISTs.
	SignalListLatencyP99 Signal = "listLatencyP99"
	// SignalRequestsPerSecond is the rate of all requests (apiserver_request_total), summed over instances.
	SignalRequestsPerSecond Signal = "requestsPerSecond"
	// SignalListRequestsPerSecond is the rate of LIST requests, summed over instances.
	SignalListRequestsPerSecond Signal = "listRequestsPerSecond"
	// SignalSeatUtilization is the fraction (0 to 1) of a priority level's
	// nominal seats in use, the worst priority level and instance.
	SignalSeatUtilization Signal = "seatUtilization"
	// SignalEtcdLatencyP99 is the p99 latency in seconds of the API servers' requests to etcd.
	SignalEtcdLatencyP99 Signal = "etcdLatencyP99"
	// SignalTerminatedRequestsPerSecond is the rate of requests the API servers
	// terminated in self-defence (apiserver_request_terminations_total).
	SignalTerminatedRequestsPerSecond Signal = "terminatedRequestsPerSecond"
	// SignalScrapeLatency is how long, in seconds, the slowest scrape of the last round took.
	SignalScrapeLatency Signal = "scrapeLatency"
	// SignalSingleObjectDurationP99 is the p99 in seconds of single-object
	// calls (GET of one object, and every mutating call) from the moment the
	// API server received them to the response (apiserver_request_duration_seconds):
	// what a client waits, time in APF queues and webhooks included. It is
	// the quantity of Kubernetes' API call latency SLO (p99 at most 1s).
	SignalSingleObjectDurationP99 Signal = "singleObjectDurationP99"
	// SignalListDurationP99 is the same for namespace and cluster LISTs.
	SignalListDurationP99 Signal = "listDurationP99"
	// SignalQueueWaitP99 is the p99 in seconds of the time requests waited in
	// API Priority and Fairness queues
	// (apiserver_flowcontrol_request_wait_duration_seconds), the worst
	// priority level; matchers on priority_level name the levels to watch.
	SignalQueueWaitP99 Signal = "queueWaitP99"
	// SignalTimedOutRequestsPerSecond is the rate of requests that timed out
	// in the API servers (apiserver_request_total with code 504), summed over instances.
	SignalTimedOutRequestsPerSecond Signal = "timedOutRequestsPerSecond"
)

// Aggregation combines the series of a metric (across labels and instances) into one value.
// +kubebuilder:validation:Enum=sum;max;min;avg
type Aggregation string

// The aggregations.
const (
	AggregationSum Aggregation = "sum"
	AggregationMax Aggregation = "max"
	AggregationMin Aggregation = "min"
	AggregationAvg Aggregation = "avg"
)

// Transform turns a metric's samples into a value.
// +kubebuilder:validation:Enum=value;rate;quantile
type Transform string

// The transforms.
const (
	// TransformValue takes the latest value of a gauge.
	TransformValue Transform = "value"
	// TransformRate takes the per-second increase of a counter over the window.
	TransformRate Transform = "rate"
	// TransformQuantile takes a quantile of a histogram's bucket increases over the window.
	TransformQuantile Transform = "quantile"
)

// MatchOperator compares a label's value.
// +kubebuilder:validation:Enum="=";"!=";"=~";"!~"
type MatchOperator string

// The label match operators, as in PromQL.
const (
	MatchEqual     MatchOperator = "="
	MatchNotEqual  MatchOperator = "!="
	MatchRegexp    MatchOperator = "=~"
	MatchNotRegexp MatchOperator = "!~"
)

// LimitResponseType says what a throttled priority level does with requests
// beyond its concurrency.
// +kubebuilder:validation:Enum=Queue;Reject
type LimitResponseType string

// The limit responses.
const (
	// LimitResponseQueue holds excess requests in queues, then rejects them with 429.
	LimitResponseQueue LimitResponseType = "Queue"
	// LimitResponseReject rejects excess requests at once with 429.
	LimitResponseReject LimitResponseType = "Reject"
)

// Phase summarises what a policy is doing.
// +kubebuilder:validation:Enum=Healthy;Triggered;Shedding;Restoring;Suspended;Unknown
type Phase string

// The phases.
const (
	// PhaseHealthy means no trigger fires and nothing is throttled or paused.
	PhaseHealthy Phase = "Healthy"
	// PhaseTriggered means a trigger fires and no action is in place yet.
	PhaseTriggered Phase = "Triggered"
	// PhaseShedding means throttles or pauses are in place because a trigger fires.
	PhaseShedding Phase = "Shedding"
	// PhaseRestoring means the triggers are clear and what was shed is being restored.
	PhaseRestoring Phase = "Restoring"
	// PhaseSuspended means spec.suspend is set: nothing is evaluated or changed.
	PhaseSuspended Phase = "Suspended"
	// PhaseUnknown means the policy could not be evaluated (invalid, or no metrics).
	PhaseUnknown Phase = "Unknown"
)

// TriggerState is the state of one trigger.
// +kubebuilder:validation:Enum=OK;Pending;Firing;Clearing;Unknown
type TriggerState string

// The trigger states.
const (
	// TriggerOK means the value is on the healthy side.
	TriggerOK TriggerState = "OK"
	// TriggerPending means the value is past the threshold, not yet for long enough.
	TriggerPending TriggerState = "Pending"
	// TriggerFiring means the value has been past the threshold for long enough.
	TriggerFiring TriggerState = "Firing"
	// TriggerClearing means a firing trigger's value is back under clearThreshold, not yet for long enough.
	TriggerClearing TriggerState = "Clearing"
	// TriggerUnknown means there is no fresh value; it never counts as healthy.
	TriggerUnknown TriggerState = "Unknown"
)

// ActionKind is the kind of an action the operator takes.
// +kubebuilder:validation:Enum=Throttle;Pause
type ActionKind string

// The action kinds.
const (
	// ActionThrottle routes a ServiceAccount's requests to a limited priority level.
	ActionThrottle ActionKind = "Throttle"
	// ActionPause scales a DaemonSet to zero with a node selector no node matches.
	ActionPause ActionKind = "Pause"
)

// LoadShedPolicySpec is what an SRE writes ahead of time: which signals mean
// the control plane is in trouble, which DaemonSets may be acted on, and how.
// +kubebuilder:validation:XValidation:rule="(has(self.source.type) && self.source.type == 'prometheus') || self.triggers.all(t, !has(t.promQL))",message="a trigger with promQL needs source.type prometheus"
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || self.triggers.all(t, !has(t.window) || duration(t.window) >= duration(self.interval))",message="a trigger's window must be at least spec.interval"
type LoadShedPolicySpec struct {
	// source says where the API servers' metrics are read from.
	// +optional
	// +kubebuilder:default={type: apiServer}
	Source MetricsSource `json:"source,omitempty"`

	// interval is how often the signals are read and the policy evaluated.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="interval must be between 1s and 10m"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// triggers are the conditions on the API servers' signals that start load
	// shedding. Load is shed while any trigger fires, and restored once all
	// have been clear for restore.stableFor.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Triggers []Trigger `json:"triggers"`

	// targets says which DaemonSets may be throttled and paused.
	// +optional
	// +kubebuilder:default={}
	Targets Targets `json:"targets,omitempty"`

	// actions says what is done while a trigger fires.
	// +optional
	// +kubebuilder:default={}
	Actions Actions `json:"actions,omitempty"`

	// restore says how what was shed is given back once the triggers clear.
	// +optional
	// +kubebuilder:default={}
	Restore Restore `json:"restore,omitempty"`

	// dryRun computes and reports the full plan (status and "Would..." events)
	// without changing anything in the cluster.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// suspend stops evaluating the policy. Nothing is changed: throttles and
	// pauses already in place are held as they are until suspend is unset or
	// the policy is deleted.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// MetricsSource says where the API servers' metrics are read from.
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'prometheus' || has(self.prometheus)",message="source.prometheus is required when source.type is prometheus"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'prometheus') || !has(self.prometheus)",message="source.prometheus is only allowed when source.type is prometheus"
type MetricsSource struct {
	// type is apiServer (scrape /metrics of every kube-apiserver instance)
	// or prometheus (instant queries against a Prometheus HTTP API).
	// +optional
	// +kubebuilder:default=apiServer
	Type SourceType `json:"type,omitempty"`

	// scrapeTimeout bounds one scrape of one API server (apiServer source).
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('1m')",message="scrapeTimeout must be between 100ms and 1m"
	ScrapeTimeout *metav1.Duration `json:"scrapeTimeout,omitempty"`

	// prometheus configures the prometheus source.
	// +optional
	Prometheus *PrometheusSource `json:"prometheus,omitempty"`
}

// PrometheusSource is a Prometheus HTTP API to run instant queries against.
type PrometheusSource struct {
	// url is the base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",message="url must be an http or https URL"
	URL string `json:"url"`

	// caSecretRef names a key, in a Secret of the operator's namespace,
	// holding the PEM CA bundle that signs the server's certificate.
	// +optional
	CASecretRef *SecretKeyReference `json:"caSecretRef,omitempty"`

	// bearerTokenSecretRef names a key, in a Secret of the operator's
	// namespace, holding a bearer token sent with each query.
	// +optional
	BearerTokenSecretRef *SecretKeyReference `json:"bearerTokenSecretRef,omitempty"`

	// timeout bounds one query.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('1m')",message="timeout must be between 100ms and 1m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// SecretKeyReference names one key of a Secret in the operator's own
// namespace (loadshed-system by default). A cluster-scoped policy cannot
// reach Secrets elsewhere, so that the operator needs no cluster-wide
// access to Secrets.
type SecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
	Name string `json:"name"`

	// key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[-._a-zA-Z0-9]+$"
	Key string `json:"key"`
}

// Trigger is a condition on one signal. It fires when the signal's value
// stays above threshold for the duration "for", and clears when it stays at
// or below clearThreshold for "for". A missing or stale value never counts as
// healthy.
// +kubebuilder:validation:XValidation:rule="[has(self.signal), has(self.metric), has(self.promQL)].filter(x, x).size() == 1",message="a trigger needs exactly one of signal, metric or promQL"
// +kubebuilder:validation:XValidation:rule="!has(self.promQL) || !has(self.matchers)",message="matchers do not apply to a promQL trigger; write them in the expression"
// +kubebuilder:validation:XValidation:rule="!has(self.clearThreshold) || quantity(string(self.clearThreshold)).compareTo(quantity(string(self.threshold))) <= 0",message="clearThreshold must not be above threshold (it is the healthy side)"
type Trigger struct {
	// name identifies the trigger in status and events.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
	Name string `json:"name"`

	// signal is a built-in signal from the catalogue (see docs/signals.md).
	// +optional
	Signal Signal `json:"signal,omitempty"`

	// metric is a generic signal: a metric family, label matchers, an
	// aggregation and a transform.
	// +optional
	Metric *MetricSignal `json:"metric,omitempty"`

	// promQL is a PromQL expression evaluated as an instant query; its
	// result must be a single sample. Only with source.type prometheus.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	PromQL string `json:"promQL,omitempty"`

	// matchers narrow the series a signal or metric reads, e.g. verb=LIST or
	// priority_level=workload-low. They are ANDed with the signal's own.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	Matchers []LabelMatcher `json:"matchers,omitempty"`

	// threshold is the value above which the trigger starts to fire, in the
	// signal's unit (seconds for latency, requests for counts, per second for rates).
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="threshold must be positive"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Threshold resource.Quantity `json:"threshold"`

	// clearThreshold is the value at or below which a firing trigger clears
	// (hysteresis). It defaults to threshold.
	// +optional
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="clearThreshold must not be negative"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	ClearThreshold *resource.Quantity `json:"clearThreshold,omitempty"`

	// for is how long the value must stay past a threshold before the
	// trigger fires, and under clearThreshold before it clears.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="for must be at most 1h"
	For *metav1.Duration `json:"for,omitempty"`

	// window is the time over which rates and quantiles are computed. It
	// defaults to 1m and must be at least the policy's interval.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="window must be between 1s and 1h"
	Window *metav1.Duration `json:"window,omitempty"`
}

// MetricSignal is the generic form of a signal.
// +kubebuilder:validation:XValidation:rule="(has(self.transform) && self.transform == 'quantile') == has(self.quantile)",message="quantile is required with transform quantile and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="!has(self.quantile) || (quantity(string(self.quantile)).isGreaterThan(quantity('0')) && quantity(string(self.quantile)).compareTo(quantity('1')) < 0)",message="quantile must be between 0 and 1, exclusive"
type MetricSignal struct {
	// name is the metric family, e.g. apiserver_request_total. For a
	// histogram with transform quantile, give the family without _bucket.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern="^[a-zA-Z_:][a-zA-Z0-9_:]*$"
	Name string `json:"name"`

	// aggregation combines the matching series into one value.
	// +optional
	// +kubebuilder:default=sum
	Aggregation Aggregation `json:"aggregation,omitempty"`

	// transform turns samples into a value: the latest value of a gauge, the
	// per-second rate of a counter, or a quantile of a histogram.
	// +optional
	// +kubebuilder:default=value
	Transform Transform `json:"transform,omitempty"`

	// quantile, between 0 and 1, for transform quantile (e.g. "0.99").
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Quantile *resource.Quantity `json:"quantile,omitempty"`
}

// LabelMatcher selects series by one label, as a PromQL label matcher does.
type LabelMatcher struct {
	// label is the label name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern="^[a-zA-Z_][a-zA-Z0-9_]*$"
	Label string `json:"label"`

	// operator is =, !=, =~ or !~ (the last two take an RE2 regular
	// expression anchored at both ends).
	// +optional
	// +kubebuilder:default="="
	Operator MatchOperator `json:"operator,omitempty"`

	// value to compare the label with.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Value string `json:"value"`
}

// LabelSelector is a label selector, as metav1.LabelSelector (the same
// fields, the same meaning), that the API server checks when the policy is
// applied: operators, label keys (qualified names) and values (label
// values), and values present exactly for In and NotIn. Its lists are
// bounded so that the CEL rules fit the API server's cost budget.
type LabelSelector struct {
	// matchLabels is a map of label keys and values; each pair is an In
	// requirement with one value, and all must hold.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !format.qualifiedName().validate(k).hasValue())",message="a label key must be a qualified name: an optional DNS subdomain prefix and '/', then up to 63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric"
	MatchLabels map[string]LabelValue `json:"matchLabels,omitempty"`

	// matchExpressions are label selector requirements; all must hold.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is a key, an operator and values, as
// metav1.LabelSelectorRequirement.
// +kubebuilder:validation:XValidation:rule="self.operator in ['Exists', 'DoesNotExist'] ? (!has(self.values) || size(self.values) == 0) : (has(self.values) && size(self.values) > 0)",message="In and NotIn need values; Exists and DoesNotExist take none"
type LabelSelectorRequirement struct {
	// key is the label key the requirement applies to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="!format.qualifiedName().validate(self).hasValue()",message="a label key must be a qualified name: an optional DNS subdomain prefix and '/', then up to 63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric"
	Key string `json:"key"`

	// operator is In, NotIn, Exists or DoesNotExist.
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator metav1.LabelSelectorOperator `json:"operator"`

	// values are the label values for In and NotIn.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Values []LabelValue `json:"values,omitempty"`
}

// LabelValue is a label value: empty, or up to 63 alphanumerics, '-', '_'
// or '.', beginning and ending with an alphanumeric.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:XValidation:rule="!format.labelValue().validate(self).hasValue()",message="a label value must be empty or up to 63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric"
type LabelValue string

// AsLabelSelector returns the selector as a metav1.LabelSelector; nil for nil.
func (s *LabelSelector) AsLabelSelector() *metav1.LabelSelector {
	if s == nil {
		return nil
	}
	out := &metav1.LabelSelector{}
	for k, v := range s.MatchLabels {
		if out.MatchLabels == nil {
			out.MatchLabels = make(map[string]string, len(s.MatchLabels))
		}
		out.MatchLabels[k] = string(v)
	}
	for _, e := range s.MatchExpressions {
		r := metav1.LabelSelectorRequirement{Key: e.Key, Operator: e.Operator}
		for _, v := range e.Values {
			r.Values = append(r.Values, string(v))
		}
		out.MatchExpressions = append(out.MatchExpressions, r)
	}
	return out
}

// Targets selects the DaemonSets that may be paused and the ServiceAccounts
// that may be throttled. kube-system and the operator's own namespace are
// protected unless allowProtectedNamespaces is set, and so is any DaemonSet
// labelled loadshed.io/protected=true.
type Targets struct {
	// namespaceSelector selects the namespaces whose DaemonSets may be
	// paused and whose ServiceAccounts, whatever runs them, may be
	// throttled. Empty or absent selects all namespaces.
	// +optional
	NamespaceSelector *LabelSelector `json:"namespaceSelector,omitempty"`

	// selector selects the DaemonSets that may be paused by their labels.
	// Empty or absent selects all.
	// Both selectors are checked at apply time (see LabelSelector).
	// +optional
	Selector *LabelSelector `json:"selector,omitempty"`

	// allowCritical lists DaemonSets whose pods run at system-node-critical
	// or system-cluster-critical priority (CNI, CSI node plugins, kube-proxy,
	// node-local DNS) that this policy may nevertheless throttle and pause.
	// Every other DaemonSet at those priorities is protected: reported, never
	// acted on.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	AllowCritical []DaemonSetReference `json:"allowCritical,omitempty"`

	// exclude lists DaemonSets that are never acted on.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Exclude []DaemonSetReference `json:"exclude,omitempty"`

	// allowProtectedNamespaces allows acting on DaemonSets in kube-system and
	// in the operator's own namespace.
	// +optional
	AllowProtectedNamespaces bool `json:"allowProtectedNamespaces,omitempty"`
}

// DaemonSetReference names one DaemonSet.
type DaemonSetReference struct {
	// namespace of the DaemonSet.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
	Namespace string `json:"namespace"`

	// name of the DaemonSet.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
	Name string `json:"name"`
}

// Actions says what is done while a trigger fires.
type Actions struct {
	// minSharePercent is the share, in percent, of the requests the API
	// servers hold (executing or queued; for a throttled ServiceAccount, of
	// all requests APF saw, rejected included), or of the seats they
	// reserve, from which a client counts as an offender.
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MinSharePercent int32 `json:"minSharePercent,omitempty"`

	// throttle routes offenders' requests to a small, limited priority level.
	// +optional
	// +kubebuilder:default={}
	Throttle ThrottleAction `json:"throttle,omitempty"`

	// pause scales offending DaemonSets to zero.
	// +optional
	// +kubebuilder:default={}
	Pause PauseAction `json:"pause,omitempty"`
}

// ThrottleAction configures throttling with API Priority and Fairness.
// +kubebuilder:validation:XValidation:rule="!has(self.limitResponse) || self.limitResponse != 'Reject' || (!has(self.queues) && !has(self.queueLengthLimit))",message="queues and queueLengthLimit only apply to limitResponse Queue"
type ThrottleAction struct {
	// enabled turns throttling on.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// nominalConcurrencyShares of the throttling priority level: small, so
	// that offenders get a small part of the API servers' concurrency.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	NominalConcurrencyShares int32 `json:"nominalConcurrencyShares,omitempty"`

	// limitResponse is Queue (hold excess requests, then reject) or Reject
	// (reject excess requests at once with 429).
	// +optional
	// +kubebuilder:default=Queue
	LimitResponse LimitResponseType `json:"limitResponse,omitempty"`

	// queues of the throttling priority level (limitResponse Queue); defaults to 16.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	Queues *int32 `json:"queues,omitempty"`

	// queueLengthLimit of each queue (limitResponse Queue); defaults to 50.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	QueueLengthLimit *int32 `json:"queueLengthLimit,omitempty"`
}

// PauseAction configures pausing offending DaemonSets.
type PauseAction struct {
	// enabled turns pausing on.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// maxPaused caps how many DaemonSets this policy keeps paused at once.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	MaxPaused int32 `json:"maxPaused,omitempty"`

	// after is how long an offender must stay a top offender while
	// throttled before it is paused. 0s pauses at once.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="after must be at most 1h"
	After *metav1.Duration `json:"after,omitempty"`
}

// Restore says how what was shed is given back.
type Restore struct {
	// stableFor is how long all triggers must have been clear before a
	// restore starts, and again before throttles are removed.
	// +optional
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="stableFor must be at most 24h"
	StableFor *metav1.Duration `json:"stableFor,omitempty"`

	// probation is how long each restore wave is held before the next; a
	// trigger that fires meanwhile pauses the DaemonSet again.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="probation must be at most 24h"
	Probation *metav1.Duration `json:"probation,omitempty"`

	// wavePercents are the shares of a DaemonSet's eligible nodes, in
	// percent, that run it again after each wave of a restore. They rise
	// strictly and end at 100. A wave short of 100 names its nodes in the
	// pod template, no more than fit in 40 KiB (about 950 nodes with names
	// of 40 bytes): on a large cluster it runs on fewer than its share, and
	// status says so.
	// +optional
	// +listType=set
	// +kubebuilder:default={10,25,50,100}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=100
	// +kubebuilder:validation:XValidation:rule="self[size(self) - 1] == 100",message="the last of wavePercents must be 100"
	// +kubebuilder:validation:XValidation:rule="self.isSorted()",message="wavePercents must rise strictly"
	WavePercents []int32 `json:"wavePercents,omitempty"`

	// backoff delays the next restore attempt of a DaemonSet that had to be
	// paused again.
	// +optional
	// +kubebuilder:default={}
	Backoff Backoff `json:"backoff,omitempty"`
}

// Backoff is an exponential backoff with jitter.
// +kubebuilder:validation:XValidation:rule="!has(self.initial) || !has(self.max) || duration(self.max) >= duration(self.initial)",message="backoff.max must be at least backoff.initial"
type Backoff struct {
	// initial delay before the first restore attempt after a re-pause.
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="initial must be between 1s and 24h"
	Initial *metav1.Duration `json:"initial,omitempty"`

	// multiplier applied to the delay at each re-pause (at least 1, at most 10).
	// +optional
	// +kubebuilder:default="2"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1')) >= 0 && quantity(string(self)).compareTo(quantity('10')) <= 0",message="multiplier must be between 1 and 10"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Multiplier *resource.Quantity `json:"multiplier,omitempty"`

	// max caps the delay.
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('168h')",message="max must be at most 168h"
	Max *metav1.Duration `json:"max,omitempty"`

	// jitterPercent randomises each delay by up to this percent, so that
	// several restores do not line up.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	JitterPercent *int32 `json:"jitterPercent,omitempty"`
}

// LoadShedPolicyStatus is what the operator saw, did and will do next.
type LoadShedPolicyStatus struct {
	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase summarises what the policy is doing.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// conditions: Ready, MetricsAvailable, Triggered, Shedding.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// worstSignal is the trigger closest to (or furthest past) its
	// threshold, as "name value/threshold".
	// +optional
	WorstSignal string `json:"worstSignal,omitempty"`

	// signals are the triggers' latest values and states.
	// +optional
	// +listType=map
	// +listMapKey=name
	Signals []SignalStatus `json:"signals,omitempty"`

	// offenders are the clients the API servers hold the most requests or
	// seats of, most first.
	// +optional
	// +listType=atomic
	Offenders []OffenderStatus `json:"offenders,omitempty"`

	// actions are the throttles and pauses this policy has in place, and
	// what comes next for each.
	// +optional
	// +listType=atomic
	Actions []ActionStatus `json:"actions,omitempty"`

	// blocked are the throttles and pauses this policy would make but may
	// not, and why: a protected DaemonSet, no room for a throttle, maxPaused,
	// another policy's pause, or a write the API server refused.
	// +optional
	// +listType=atomic
	Blocked []BlockedStatus `json:"blocked,omitempty"`

	// pausedCount is the number of DaemonSets this policy keeps paused.
	// +optional
	PausedCount int32 `json:"pausedCount,omitempty"`

	// throttledCount is the number of ServiceAccounts this policy throttles.
	// +optional
	ThrottledCount int32 `json:"throttledCount,omitempty"`

	// nextRestoreTime is when the next restore step is due, if one is.
	// +optional
	NextRestoreTime *metav1.Time `json:"nextRestoreTime,omitempty"`

	// lastEvaluationTime is when the policy was last evaluated.
	// +optional
	LastEvaluationTime *metav1.Time `json:"lastEvaluationTime,omitempty"`
}

// SignalStatus is one trigger's latest value and state.
type SignalStatus struct {
	// name of the trigger.
	Name string `json:"name"`
	// signal read by the trigger (catalogue name, metric family, or "promQL").
	// +optional
	Signal string `json:"signal,omitempty"`
	// value is the latest value, empty when missing.
	// +optional
	Value string `json:"value,omitempty"`
	// threshold of the trigger.
	// +optional
	Threshold string `json:"threshold,omitempty"`
	// clearThreshold of the trigger.
	// +optional
	ClearThreshold string `json:"clearThreshold,omitempty"`
	// state of the trigger.
	// +optional
	State TriggerState `json:"state,omitempty"`
	// since is when the trigger entered its state.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// message explains a missing value.
	// +optional
	Message string `json:"message,omitempty"`
}

// OffenderStatus is one client of the API servers with its measured load:
// whoever the API servers held requests of (from APF's dump of the requests
// each one is executing or queueing), and every ServiceAccount the policy
// throttles.
type OffenderStatus struct {
	// user is the name the API servers authenticated the client as, e.g.
	// system:serviceaccount:telemetry:agent, system:node:node-7 or a person.
	User string `json:"user"`
	// serviceAccount as namespace/name, when user is a ServiceAccount: only
	// a ServiceAccount is ever throttled.
	// +optional
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// daemonSets the policy targets that run as this ServiceAccount, as
	// namespace/name: only these are ever paused.
	// +optional
	// +listType=atomic
	DaemonSets []string `json:"daemonSets,omitempty"`
	// shared is true when several DaemonSets share the ServiceAccount, so the
	// load cannot be told apart between them.
	// +optional
	Shared bool `json:"shared,omitempty"`
	// inFlightSharePercent is its share of the requests the API servers
	// held, executing or queued, over the policy's attribution window.
	// +optional
	InFlightSharePercent int32 `json:"inFlightSharePercent,omitempty"`
	// seatSharePercent is its share of the seats those requests reserved.
	// +optional
	SeatSharePercent int32 `json:"seatSharePercent,omitempty"`
	// requestsPerSecond dispatched by its throttle FlowSchema: measured
	// only while it is throttled.
	// +optional
	RequestsPerSecond string `json:"requestsPerSecond,omitempty"`
	// rejectedPerSecond of its requests APF rejected at its throttle:
	// measured only while it is throttled.
	// +optional
	RejectedPerSecond string `json:"rejectedPerSecond,omitempty"`
	// requestSharePercent is the share of all requests APF saw, dispatched
	// or rejected, that went through its throttle: what it asks for, so a
	// throttled client that keeps trying keeps its share. Measured only
	// while it is throttled.
	// +optional
	RequestSharePercent int32 `json:"requestSharePercent,omitempty"`
}

// ActionStatus is one throttle or pause in place, and what comes next for it.
type ActionStatus struct {
	// kind of action.
	Kind ActionKind `json:"kind"`
	// target: namespace/name of the ServiceAccount (Throttle) or DaemonSet (Pause).
	Target string `json:"target"`
	// since is when the action was taken.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// attempt counts restore attempts of a paused DaemonSet.
	// +optional
	Attempt int32 `json:"attempt,omitempty"`
	// wave is the restore wave in progress (0 while fully paused).
	// +optional
	Wave int32 `json:"wave,omitempty"`
	// nextRestoreTime is when the next restore step for this target is due.
	// +optional
	NextRestoreTime *metav1.Time `json:"nextRestoreTime,omitempty"`
	// message says why, or what blocks it.
	// +optional
	Message string `json:"message,omitempty"`
}

// BlockedStatus is a throttle or pause the policy would make but may not.
type BlockedStatus struct {
	// kind of action blocked.
	Kind ActionKind `json:"kind"`
	// target: namespace/name of the ServiceAccount (Throttle) or DaemonSet (Pause).
	Target string `json:"target"`
	// reason it is blocked.
	Reason string `json:"reason"`
	// since is when it was first blocked, for this reason or another.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// LoadShedPolicy says when the control plane is overloaded and what loadshed
// may do about it: throttle offending clients with API Priority and Fairness,
// pause offending DaemonSets, and restore them when the API servers are healthy.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=lsp,categories=loadshed
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Worst",type=string,JSONPath=`.status.worstSignal`,description="The trigger closest to or furthest past its threshold"
// +kubebuilder:printcolumn:name="Paused",type=integer,JSONPath=`.status.pausedCount`
// +kubebuilder:printcolumn:name="Throttled",type=integer,JSONPath=`.status.throttledCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.source.type`,priority=1
// +kubebuilder:printcolumn:name="DryRun",type=boolean,JSONPath=`.spec.dryRun`,priority=1
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`,priority=1
// +kubebuilder:printcolumn:name="Next-Restore",type=date,JSONPath=`.status.nextRestoreTime`,priority=1
// +kubebuilder:printcolumn:name="Evaluated",type=date,JSONPath=`.status.lastEvaluationTime`,priority=1
type LoadShedPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the object's metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the SRE wants.
	// +required
	Spec LoadShedPolicySpec `json:"spec"`

	// status is what the operator saw, did and will do next.
	// +optional
	Status LoadShedPolicyStatus `json:"status,omitempty"`
}

// LoadShedPolicyList is a list of LoadShedPolicy.
//
// +kubebuilder:object:root=true
type LoadShedPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the list's metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the policies.
	Items []LoadShedPolicy `json:"items"`
}
