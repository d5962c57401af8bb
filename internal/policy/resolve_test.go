package policy

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func minimalSpec() v1alpha1.LoadShedPolicySpec {
	return v1alpha1.LoadShedPolicySpec{
		Triggers: []v1alpha1.Trigger{{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400")}},
	}
}

func TestResolveFillsInEveryDefault(t *testing.T) {
	spec := minimalSpec()
	cfg, err := Resolve(&spec)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"source.type", cfg.Source.Type, v1alpha1.SourceAPIServer},
		{"source.scrapeTimeout", cfg.Source.ScrapeTimeout, DefaultScrapeTimeout},
		{"interval", cfg.Interval, DefaultInterval},
		{"trigger for", cfg.Triggers[0].For, DefaultFor},
		{"trigger window", cfg.Triggers[0].Window, DefaultWindow},
		{"clearThreshold defaults to threshold", cfg.Triggers[0].ClearThreshold, 400.0},
		{"minShare", cfg.MinShare, 0.2},
		{"throttle enabled", cfg.Throttle.Enabled, true},
		{"throttle shares", cfg.Throttle.NominalConcurrencyShares, int32(DefaultNominalConcurrencyShares)},
		{"throttle limitResponse", cfg.Throttle.LimitResponse, v1alpha1.LimitResponseQueue},
		{"throttle queues", cfg.Throttle.Queues, int32(DefaultQueues)},
		{"throttle queueLengthLimit", cfg.Throttle.QueueLengthLimit, int32(DefaultQueueLengthLimit)},
		{"pause enabled", cfg.Pause.Enabled, true},
		{"pause maxPaused", cfg.Pause.MaxPaused, DefaultMaxPaused},
		{"pause after", cfg.Pause.After, DefaultPauseAfter},
		{"restore stableFor", cfg.Restore.StableFor, DefaultStableFor},
		{"restore probation", cfg.Restore.Probation, DefaultProbation},
		{"backoff initial", cfg.Restore.Backoff.Initial, DefaultBackoffInitial},
		{"backoff multiplier", cfg.Restore.Backoff.Multiplier, DefaultMultiplier},
		{"backoff max", cfg.Restore.Backoff.Max, DefaultBackoffMax},
		{"backoff jitter", cfg.Restore.Backoff.JitterPercent, int32(DefaultJitterPercent)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(cfg.Restore.WavePercents) != 4 || cfg.Restore.WavePercents[3] != 100 {
		t.Errorf("wavePercents = %v, want %v", cfg.Restore.WavePercents, DefaultWavePercents())
	}
	if !cfg.Targets.Selector.Empty() || !cfg.Targets.NamespaceSelector.Empty() {
		t.Errorf("absent selectors must select everything, got %v and %v", cfg.Targets.Selector, cfg.Targets.NamespaceSelector)
	}
}

func TestResolveKeepsWhatTheSpecSays(t *testing.T) {
	spec := minimalSpec()
	spec.Interval = &metav1.Duration{Duration: 3 * time.Second}
	spec.DryRun = true
	spec.Triggers[0].ClearThreshold = ptr(resource.MustParse("150"))
	spec.Triggers[0].Matchers = []v1alpha1.LabelMatcher{{Label: "verb", Operator: v1alpha1.MatchRegexp, Value: "LIST|WATCH"}}
	spec.Actions.MinSharePercent = 35
	spec.Actions.Throttle.Enabled = ptr(false)
	spec.Actions.Throttle.LimitResponse = v1alpha1.LimitResponseReject
	spec.Actions.Pause.After = &metav1.Duration{}
	spec.Restore.WavePercents = []int32{50, 100}
	spec.Restore.Backoff.Multiplier = ptr(resource.MustParse("1.5"))
	spec.Targets.Selector = &v1alpha1.LabelSelector{MatchLabels: map[string]v1alpha1.LabelValue{"app": "telemetry"}}
	spec.Targets.Exclude = []v1alpha1.DaemonSetReference{{Namespace: "dns", Name: "node-local-dns"}}

	cfg, err := Resolve(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interval != 3*time.Second || !cfg.DryRun {
		t.Errorf("interval/dryRun = %v/%v", cfg.Interval, cfg.DryRun)
	}
	if cfg.Triggers[0].ClearThreshold != 150 {
		t.Errorf("clearThreshold = %v, want 150", cfg.Triggers[0].ClearThreshold)
	}
	if m := cfg.Triggers[0].Matchers[0]; !m.Matches("LIST") || !m.Matches("WATCH") || m.Matches("LISTS") {
		t.Errorf("matcher %v does not anchor its regular expression", m)
	}
	if cfg.MinShare != 0.35 || cfg.Throttle.Enabled || cfg.Throttle.LimitResponse != v1alpha1.LimitResponseReject {
		t.Errorf("actions not kept: %+v %+v", cfg.MinShare, cfg.Throttle)
	}
	if cfg.Pause.After != 0 {
		t.Errorf("pause.after 0s means at once, got %v", cfg.Pause.After)
	}
	if cfg.Restore.Backoff.Multiplier != 1.5 || len(cfg.Restore.WavePercents) != 2 {
		t.Errorf("restore not kept: %+v", cfg.Restore)
	}
	if !cfg.Targets.Selector.Matches(labels.Set{"app": "telemetry"}) || cfg.Targets.Selector.Matches(labels.Set{"app": "dns"}) {
		t.Errorf("selector %v does not select app=telemetry alone", cfg.Targets.Selector)
	}
	if !cfg.Targets.Exclude[types.NamespacedName{Namespace: "dns", Name: "node-local-dns"}] {
		t.Errorf("exclusion lost: %v", cfg.Targets.Exclude)
	}
}

func TestResolveRejectsWhatCELCannotCatch(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*v1alpha1.LoadShedPolicySpec)
		wantErr string
	}{
		{
			name: "a label selector with an invalid operator",
			mutate: func(s *v1alpha1.LoadShedPolicySpec) {
				s.Targets.Selector = &v1alpha1.LabelSelector{MatchExpressions: []v1alpha1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []v1alpha1.LabelValue{"x"}}}}
			},
			wantErr: "spec.targets.selector",
		},
		{
			name: "a namespace selector with an invalid label value",
			mutate: func(s *v1alpha1.LoadShedPolicySpec) {
				s.Targets.NamespaceSelector = &v1alpha1.LabelSelector{MatchLabels: map[string]v1alpha1.LabelValue{"team": "not a label value"}}
			},
			wantErr: "spec.targets.namespaceSelector",
		},
		{
			name: "a regular expression that does not compile",
			mutate: func(s *v1alpha1.LoadShedPolicySpec) {
				s.Triggers[0].Matchers = []v1alpha1.LabelMatcher{{Label: "verb", Operator: v1alpha1.MatchRegexp, Value: "(LIST"}}
			},
			wantErr: "spec.triggers[0].matchers[0].value",
		},
		{
			name:    "no triggers",
			mutate:  func(s *v1alpha1.LoadShedPolicySpec) { s.Triggers = nil },
			wantErr: "spec.triggers: Required value",
		},
		{
			name: "a clearThreshold above threshold",
			mutate: func(s *v1alpha1.LoadShedPolicySpec) {
				s.Triggers[0].ClearThreshold = ptr(resource.MustParse("401"))
			},
			wantErr: "spec.triggers[0].clearThreshold",
		},
		{
			name: "a promQL trigger on the apiServer source",
			mutate: func(s *v1alpha1.LoadShedPolicySpec) {
				s.Triggers[0].Signal = ""
				s.Triggers[0].PromQL = "up"
			},
			wantErr: "spec.triggers[0].promQL",
		},
		{
			name: "duplicate trigger names",
			mutate: func(s *v1alpha1.LoadShedPolicySpec) {
				s.Triggers = append(s.Triggers, s.Triggers[0])
			},
			wantErr: "spec.triggers[1].name: Duplicate value",
		},
		{
			name:    "restore waves that fall",
			mutate:  func(s *v1alpha1.LoadShedPolicySpec) { s.Restore.WavePercents = []int32{50, 20, 100} },
			wantErr: "spec.restore.wavePercents[1]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := minimalSpec()
			tt.mutate(&spec)
			_, err := Resolve(&spec)
			if err == nil {
				t.Fatalf("Resolve accepted the spec; want an error about %s", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not name %s", err, tt.wantErr)
			}
		})
	}
}

func TestMatcher(t *testing.T) {
	tests := []struct {
		op    v1alpha1.MatchOperator
		value string
		in    string
		want  bool
	}{
		{v1alpha1.MatchEqual, "LIST", "LIST", true},
		{v1alpha1.MatchEqual, "LIST", "GET", false},
		{v1alpha1.MatchNotEqual, "LIST", "GET", true},
		{v1alpha1.MatchNotEqual, "", "", false},
		{v1alpha1.MatchRegexp, "LIST|GET", "GET", true},
		{v1alpha1.MatchRegexp, "LIST", "LISTWATCH", false},
		{v1alpha1.MatchNotRegexp, "WATCH|CONNECT", "LIST", true},
		{v1alpha1.MatchNotRegexp, "WATCH|CONNECT", "WATCH", false},
	}
	for _, tt := range tests {
		m, err := NewMatcher("verb", tt.op, tt.value)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Matches(tt.in); got != tt.want {
			t.Errorf("%v matches %q = %v, want %v", m, tt.in, got, tt.want)
		}
	}
	if _, err := NewMatcher("verb", "~", "x"); err == nil {
		t.Error("NewMatcher accepted operator ~")
	}
}

func ptr[T any](v T) *T { return &v }
