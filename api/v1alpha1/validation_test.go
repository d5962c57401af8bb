package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/test/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env, testenv.Options{}) }

// validTrigger is a trigger the schema accepts, for cases about other fields.
const validTrigger = `
  triggers:
  - name: inflight
    signal: inflightRequests
    threshold: "400"`

// newPolicy decodes a policy's spec, written as an SRE would in YAML.
func newPolicy(t *testing.T, name, spec string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	doc := fmt.Sprintf("apiVersion: loadshed.io/v1alpha1\nkind: LoadShedPolicy\nmetadata:\n  name: %s\nspec:\n%s\n", name, strings.TrimPrefix(spec, "\n"))
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("test case is not YAML: %v\n%s", err, doc)
	}
	return u
}

func TestTheAPIServerRejectsInvalidPolicies(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		wantMsg string
	}{
		{
			name:    "a policy without triggers",
			spec:    `  triggers: []`,
			wantMsg: "spec.triggers: Invalid value: 0: spec.triggers in body should have at least 1 items",
		},
		{
			name: "a trigger with both a signal and a metric",
			spec: `
  triggers:
  - name: both
    signal: inflightRequests
    metric: {name: apiserver_current_inflight_requests}
    threshold: "1"`,
			wantMsg: "a trigger needs exactly one of signal, metric or promQL",
		},
		{
			name: "a trigger that reads nothing",
			spec: `
  triggers:
  - name: nothing
    threshold: "1"`,
			wantMsg: "a trigger needs exactly one of signal, metric or promQL",
		},
		{
			name: "a zero threshold",
			spec: `
  triggers:
  - name: zero
    signal: inflightRequests
    threshold: 0`,
			wantMsg: "threshold must be positive",
		},
		{
			name: "a negative threshold",
			spec: `
  triggers:
  - name: negative
    signal: inflightRequests
    threshold: "-5"`,
			wantMsg: "threshold must be positive",
		},
		{
			name: "a clearThreshold on the unhealthy side of threshold",
			spec: `
  triggers:
  - name: inverted
    signal: inflightRequests
    threshold: "400"
    clearThreshold: "500"`,
			wantMsg: "clearThreshold must not be above threshold (it is the healthy side)",
		},
		{
			name:    "an interval under a second",
			spec:    "  interval: 500ms" + validTrigger,
			wantMsg: "interval must be between 1s and 10m",
		},
		{
			name:    "an interval that is not a duration",
			spec:    "  interval: ten seconds" + validTrigger,
			wantMsg: "spec.interval: Invalid value: \"ten seconds\": spec.interval in body should match",
		},
		{
			name: "two triggers with one name",
			spec: `
  triggers:
  - name: twin
    signal: inflightRequests
    threshold: "400"
  - name: twin
    signal: inqueueRequests
    threshold: "100"`,
			wantMsg: "spec.triggers[1]: Duplicate value",
		},
		{
			name: "a promQL trigger on the apiServer source",
			spec: `
  triggers:
  - name: promql
    promQL: sum(rate(apiserver_request_total[1m]))
    threshold: "1000"`,
			wantMsg: "a trigger with promQL needs source.type prometheus",
		},
		{
			name:    "a prometheus source without its settings",
			spec:    "  source: {type: prometheus}" + validTrigger,
			wantMsg: "source.prometheus is required when source.type is prometheus",
		},
		{
			name:    "a prometheus URL that is not http",
			spec:    "  source: {type: prometheus, prometheus: {url: 'ftp://prometheus:9090'}}" + validTrigger,
			wantMsg: "url must be an http or https URL",
		},
		{
			name:    "a backoff whose max is under its initial delay",
			spec:    "  restore: {backoff: {initial: 10m, max: 1m}}" + validTrigger,
			wantMsg: "backoff.max must be at least backoff.initial",
		},
		{
			name:    "a backoff multiplier under 1",
			spec:    "  restore: {backoff: {multiplier: '0.5'}}" + validTrigger,
			wantMsg: "multiplier must be between 1 and 10",
		},
		{
			name:    "restore waves that fall",
			spec:    "  restore: {wavePercents: [50, 25, 100]}" + validTrigger,
			wantMsg: "wavePercents must rise strictly",
		},
		{
			name:    "restore waves that stop short of 100",
			spec:    "  restore: {wavePercents: [10, 50]}" + validTrigger,
			wantMsg: "the last of wavePercents must be 100",
		},
		{
			name:    "a maxPaused of zero",
			spec:    "  actions: {pause: {maxPaused: 0}}" + validTrigger,
			wantMsg: "spec.actions.pause.maxPaused in body should be greater than or equal to 1",
		},
		{
			name:    "an offender share over 100 percent",
			spec:    "  actions: {minSharePercent: 150}" + validTrigger,
			wantMsg: "spec.actions.minSharePercent in body should be less than or equal to 100",
		},
		{
			name: "an unknown signal",
			spec: `
  triggers:
  - name: unknown
    signal: cpuTemperature
    threshold: "1"`,
			wantMsg: `Unsupported value: "cpuTemperature"`,
		},
		{
			name: "a window shorter than the interval",
			spec: `
  interval: 30s
  triggers:
  - name: short-window
    signal: requestsPerSecond
    threshold: "1000"
    window: 10s`,
			wantMsg: "a trigger's window must be at least spec.interval",
		},
		{
			name: "a quantile transform without a quantile",
			spec: `
  triggers:
  - name: p99
    metric: {name: apiserver_request_duration_seconds, transform: quantile}
    threshold: "1"`,
			wantMsg: "quantile is required with transform quantile and not allowed otherwise",
		},
		{
			name: "a quantile of 1.5",
			spec: `
  triggers:
  - name: p150
    metric: {name: apiserver_request_duration_seconds, transform: quantile, quantile: "1.5"}
    threshold: "1"`,
			wantMsg: "quantile must be between 0 and 1, exclusive",
		},
		{
			name:    "queue settings on a rejecting throttle",
			spec:    "  actions: {throttle: {limitResponse: Reject, queues: 8}}" + validTrigger,
			wantMsg: "queues and queueLengthLimit only apply to limitResponse Queue",
		},
		{
			name: "a trigger name with capitals",
			spec: `
  triggers:
  - name: InFlight
    signal: inflightRequests
    threshold: "400"`,
			wantMsg: "spec.triggers[0].name in body should match",
		},
		{
			name: "label matchers on a promQL trigger",
			spec: `
  source: {type: prometheus, prometheus: {url: 'http://prometheus:9090'}}
  triggers:
  - name: promql
    promQL: sum(rate(apiserver_request_total[1m]))
    matchers: [{label: verb, value: LIST}]
    threshold: "1000"`,
			wantMsg: "matchers do not apply to a promQL trigger; write them in the expression",
		},
		{
			name: "a for longer than an hour",
			spec: `
  triggers:
  - name: slow
    signal: inflightRequests
    threshold: "400"
    for: 2h`,
			wantMsg: "for must be at most 1h",
		},
		{
			name:    "an unknown label match operator",
			spec:    "  triggers: [{name: lists, signal: requestsPerSecond, threshold: '5', matchers: [{label: verb, operator: '~=', value: LIST}]}]",
			wantMsg: `Unsupported value: "~="`,
		},
		{
			name:    "a selector operator that does not exist",
			spec:    validTrigger + "\n  targets: {selector: {matchExpressions: [{key: app, operator: Contains, values: [agent]}]}}",
			wantMsg: `Unsupported value: "Contains"`,
		},
		{
			name:    "a namespace selector key with spaces",
			spec:    validTrigger + "\n  targets: {namespaceSelector: {matchLabels: {'team name': ops}}}",
			wantMsg: "a label key must be a qualified name",
		},
		{
			name:    "a selector expression key with spaces",
			spec:    validTrigger + "\n  targets: {selector: {matchExpressions: [{key: 'app name', operator: Exists}]}}",
			wantMsg: "a label key must be a qualified name",
		},
		{
			name:    "In with no values",
			spec:    validTrigger + "\n  targets: {selector: {matchExpressions: [{key: app, operator: In, values: []}]}}",
			wantMsg: "In and NotIn need values; Exists and DoesNotExist take none",
		},
		{
			name:    "NotIn without values",
			spec:    validTrigger + "\n  targets: {namespaceSelector: {matchExpressions: [{key: team, operator: NotIn}]}}",
			wantMsg: "In and NotIn need values; Exists and DoesNotExist take none",
		},
		{
			name:    "Exists with values",
			spec:    validTrigger + "\n  targets: {selector: {matchExpressions: [{key: app, operator: Exists, values: [agent]}]}}",
			wantMsg: "In and NotIn need values; Exists and DoesNotExist take none",
		},
		{
			name:    "a label value with a slash",
			spec:    validTrigger + "\n  targets: {selector: {matchLabels: {app: 'team/agent'}}}",
			wantMsg: "a label value must be empty or up to 63",
		},
		{
			name:    "an expression value too long",
			spec:    validTrigger + "\n  targets: {selector: {matchExpressions: [{key: app, operator: In, values: [" + strings.Repeat("a", 64) + "]}]}}",
			wantMsg: "Too long: may not be more than 63 bytes",
		},
	}
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := newPolicy(t, fmt.Sprintf("invalid-%d", i), tt.spec)
			err := env.Client.Create(ctx, obj)
			if err == nil {
				_ = env.Client.Delete(ctx, obj)
				t.Fatalf("the API server accepted the policy; want it rejected with %q", tt.wantMsg)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error does not say %q:\n%v", tt.wantMsg, err)
			}
		})
	}
}

// TestValidSelectorsAreAccepted: the selector rules reject only what a
// label selector cannot be.
func TestValidSelectorsAreAccepted(t *testing.T) {
	for i, targets := range []string{
		"{selector: {matchLabels: {app.kubernetes.io/name: agent, tier: ''}}}",
		"{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [telemetry, logging]}]}}",
		"{selector: {matchExpressions: [{key: example.com/paused, operator: DoesNotExist}, {key: app, operator: NotIn, values: [dns]}]}}",
		"{selector: {}, namespaceSelector: {matchExpressions: [{key: team, operator: Exists, values: []}]}}",
	} {
		obj := newPolicy(t, fmt.Sprintf("valid-selector-%d", i), validTrigger+"\n  targets: "+targets)
		if err := env.Client.Create(context.Background(), obj, client.DryRunAll); err != nil {
			t.Errorf("the API server rejected targets %s: %v", targets, err)
		}
	}
}

func TestTheSamplesAreAccepted(t *testing.T) {
	ctx := context.Background()
	for _, file := range []string{
		"config/samples/loadshed_v1alpha1_loadshedpolicy.yaml",
		"config/samples/loadshed_v1alpha1_loadshedpolicy_prometheus.yaml",
	} {
		t.Run(file, func(t *testing.T) {
			objs, err := testenv.ReadObjects(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if err := env.Client.Create(ctx, o, client.DryRunAll); err != nil {
					t.Errorf("the API server rejected %s: %v", o.GetName(), err)
				}
			}
		})
	}
}

// TestTheAPIServerFillsInTheDefaults checks the schema's defaults against the
// constants the operator falls back to, on a minimal policy.
func TestTheAPIServerFillsInTheDefaults(t *testing.T) {
	ctx := context.Background()
	obj := newPolicy(t, "defaults", validTrigger)
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, obj) })

	got := &v1alpha1.LoadShedPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatal(err)
	}
	s := got.Spec
	dur := func(name string, got *metav1.Duration, want time.Duration) {
		t.Helper()
		if got == nil || got.Duration != want {
			t.Errorf("%s defaulted to %v, want %v", name, got, want)
		}
	}
	if s.Source.Type != v1alpha1.SourceAPIServer {
		t.Errorf("source.type defaulted to %q, want apiServer", s.Source.Type)
	}
	dur("interval", s.Interval, policy.DefaultInterval)
	dur("source.scrapeTimeout", s.Source.ScrapeTimeout, policy.DefaultScrapeTimeout)
	dur("triggers[0].for", s.Triggers[0].For, policy.DefaultFor)
	dur("actions.pause.after", s.Actions.Pause.After, policy.DefaultPauseAfter)
	dur("restore.stableFor", s.Restore.StableFor, policy.DefaultStableFor)
	dur("restore.probation", s.Restore.Probation, policy.DefaultProbation)
	dur("restore.backoff.initial", s.Restore.Backoff.Initial, policy.DefaultBackoffInitial)
	dur("restore.backoff.max", s.Restore.Backoff.Max, policy.DefaultBackoffMax)
	if s.Actions.MinSharePercent != policy.DefaultMinSharePercent {
		t.Errorf("actions.minSharePercent defaulted to %d, want %d", s.Actions.MinSharePercent, policy.DefaultMinSharePercent)
	}
	if s.Actions.Pause.MaxPaused != policy.DefaultMaxPaused {
		t.Errorf("actions.pause.maxPaused defaulted to %d, want %d", s.Actions.Pause.MaxPaused, policy.DefaultMaxPaused)
	}
	if s.Actions.Throttle.NominalConcurrencyShares != policy.DefaultNominalConcurrencyShares {
		t.Errorf("actions.throttle.nominalConcurrencyShares defaulted to %d, want %d", s.Actions.Throttle.NominalConcurrencyShares, policy.DefaultNominalConcurrencyShares)
	}
	if string(s.Actions.Throttle.LimitResponse) != policy.DefaultLimitResponse {
		t.Errorf("actions.throttle.limitResponse defaulted to %q, want %q", s.Actions.Throttle.LimitResponse, policy.DefaultLimitResponse)
	}
	if s.Actions.Throttle.Enabled == nil || !*s.Actions.Throttle.Enabled || s.Actions.Pause.Enabled == nil || !*s.Actions.Pause.Enabled {
		t.Errorf("throttle and pause are not enabled by default: %+v", s.Actions)
	}
	if fmt.Sprint(s.Restore.WavePercents) != fmt.Sprint(policy.DefaultWavePercents()) {
		t.Errorf("restore.wavePercents defaulted to %v, want %v", s.Restore.WavePercents, policy.DefaultWavePercents())
	}
	if s.Restore.Backoff.Multiplier == nil || s.Restore.Backoff.Multiplier.AsApproximateFloat64() != policy.DefaultMultiplier {
		t.Errorf("restore.backoff.multiplier defaulted to %v, want %v", s.Restore.Backoff.Multiplier, policy.DefaultMultiplier)
	}
	if s.Restore.Backoff.JitterPercent == nil || *s.Restore.Backoff.JitterPercent != policy.DefaultJitterPercent {
		t.Errorf("restore.backoff.jitterPercent defaulted to %d, want %d", ptr.Deref(s.Restore.Backoff.JitterPercent, -1), policy.DefaultJitterPercent)
	}

	// What the API server stored resolves to exactly what Resolve falls back
	// to for an object without any of these fields.
	fromServer, err := policy.Resolve(&got.Spec)
	if err != nil {
		t.Fatal(err)
	}
	bare := v1alpha1.LoadShedPolicySpec{}
	bare.Triggers = []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: got.Spec.Triggers[0].Threshold}}
	fromGo, err := policy.Resolve(&bare)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := fmt.Sprintf("%+v", fromServer), fmt.Sprintf("%+v", fromGo); a != b {
		t.Errorf("the schema's defaults and the Go defaults differ:\nserver: %s\ngo:     %s", a, b)
	}
}
