package policy

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Resolve validates what the schema and CEL cannot (label selectors, regular
// expressions) and returns the spec as a Config with every default filled
// in. The error, when not nil, is an aggregate of field errors naming the
// offending paths.
func Resolve(spec *v1alpha1.LoadShedPolicySpec) (*Config, error) {
	specPath := field.NewPath("spec")
	cfg := &Config{
		Interval: durationOr(spec.Interval, DefaultInterval),
		MinShare: float64(int32Or(spec.Actions.MinSharePercent, DefaultMinSharePercent)) / 100,
		DryRun:   spec.DryRun,
		Suspend:  spec.Suspend,
	}
	source, errs := resolveSource(&spec.Source, specPath.Child("source"))
	cfg.Source = source
	// Triggers read the resolved source.
	errs = append(errs, resolveTriggers(spec.Triggers, cfg, specPath.Child("triggers"))...)
	targets, terrs := resolveTargets(&spec.Targets, specPath.Child("targets"))
	errs = append(errs, terrs...)
	cfg.Targets = targets
	cfg.Throttle, cfg.Pause = resolveActions(&spec.Actions)
	restore, rerrs := resolveRestore(&spec.Restore, specPath.Child("restore"))
	errs = append(errs, rerrs...)
	cfg.Restore = restore
	return cfg, errs.ToAggregate()
}

// resolveSource resolves where metrics are read from.
func resolveSource(in *v1alpha1.MetricsSource, path *field.Path) (Source, field.ErrorList) {
	out := Source{
		Type:          v1alpha1.SourceType(stringOr(string(in.Type), string(v1alpha1.SourceAPIServer))),
		ScrapeTimeout: durationOr(in.ScrapeTimeout, DefaultScrapeTimeout),
	}
	if p := in.Prometheus; p != nil {
		out.Prometheus = &Prometheus{
			URL:               p.URL,
			CASecret:          secretKey(p.CASecretRef),
			BearerTokenSecret: secretKey(p.BearerTokenSecretRef),
			Timeout:           durationOr(p.Timeout, DefaultPrometheusTimeout),
		}
	}
	if out.Type == v1alpha1.SourcePrometheus && out.Prometheus == nil {
		return out, field.ErrorList{field.Required(path.Child("prometheus"), "required when source.type is prometheus")}
	}
	return out, nil
}

// resolveTriggers resolves the triggers into cfg.Triggers: at least one,
// each name once.
func resolveTriggers(in []v1alpha1.Trigger, cfg *Config, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i := range in {
		tpath := path.Index(i)
		t, terrs := resolveTrigger(&in[i], cfg, tpath)
		errs = append(errs, terrs...)
		if seen[t.Name] {
			errs = append(errs, field.Duplicate(tpath.Child("name"), t.Name))
		}
		seen[t.Name] = true
		cfg.Triggers = append(cfg.Triggers, t)
	}
	if len(in) == 0 {
		errs = append(errs, field.Required(path, "at least one trigger is required"))
	}
	return errs
}

// resolveActions resolves throttling and pausing.
func resolveActions(in *v1alpha1.Actions) (Throttle, Pause) {
	th, pa := in.Throttle, in.Pause
	return Throttle{
			Enabled:                  boolOr(th.Enabled, true),
			NominalConcurrencyShares: int32Or(th.NominalConcurrencyShares, DefaultNominalConcurrencyShares),
			LimitResponse:            v1alpha1.LimitResponseType(stringOr(string(th.LimitResponse), DefaultLimitResponse)),
			Queues:                   int32PtrOr(th.Queues, DefaultQueues),
			QueueLengthLimit:         int32PtrOr(th.QueueLengthLimit, DefaultQueueLengthLimit),
		}, Pause{
			Enabled:   boolOr(pa.Enabled, true),
			MaxPaused: int(int32Or(pa.MaxPaused, DefaultMaxPaused)),
			After:     durationOr(pa.After, DefaultPauseAfter),
		}
}

// resolveRestore resolves the restore: waves and backoff.
func resolveRestore(r *v1alpha1.Restore, path *field.Path) (Restore, field.ErrorList) {
	out := Restore{
		StableFor:    durationOr(r.StableFor, DefaultStableFor),
		Probation:    durationOr(r.Probation, DefaultProbation),
		WavePercents: append([]int32(nil), r.WavePercents...),
		Backoff: Backoff{
			Initial:       durationOr(r.Backoff.Initial, DefaultBackoffInitial),
			Multiplier:    quantityOr(r.Backoff.Multiplier, DefaultMultiplier),
			Max:           durationOr(r.Backoff.Max, DefaultBackoffMax),
			JitterPercent: int32PtrOr(r.Backoff.JitterPercent, DefaultJitterPercent),
		},
	}
	if len(out.WavePercents) == 0 {
		out.WavePercents = DefaultWavePercents()
	}
	errs := validateWaves(out.WavePercents, path.Child("wavePercents"))
	if out.Backoff.Max < out.Backoff.Initial {
		errs = append(errs, field.Invalid(path.Child("backoff", "max"), out.Backoff.Max.String(), "must be at least backoff.initial"))
	}
	if out.Backoff.Multiplier < 1 {
		errs = append(errs, field.Invalid(path.Child("backoff", "multiplier"), out.Backoff.Multiplier, "must be at least 1"))
	}
	return out, errs
}

func resolveTrigger(in *v1alpha1.Trigger, cfg *Config, path *field.Path) (Trigger, field.ErrorList) {
	var errs field.ErrorList
	t := Trigger{
		Name:      in.Name,
		Signal:    in.Signal,
		PromQL:    in.PromQL,
		Threshold: in.Threshold.AsApproximateFloat64(),
		For:       durationOr(in.For, DefaultFor),
		Window:    durationOr(in.Window, DefaultWindow),
	}
	t.ClearThreshold = t.Threshold
	if in.ClearThreshold != nil {
		t.ClearThreshold = in.ClearThreshold.AsApproximateFloat64()
	}
	if in.Metric != nil {
		t.Metric = &Metric{
			Name:        in.Metric.Name,
			Aggregation: v1alpha1.Aggregation(stringOr(string(in.Metric.Aggregation), DefaultAggregation)),
			Transform:   v1alpha1.Transform(stringOr(string(in.Metric.Transform), DefaultTransform)),
		}
		if in.Metric.Quantile != nil {
			t.Metric.Quantile = in.Metric.Quantile.AsApproximateFloat64()
		}
	}

	set := 0
	for _, b := range []bool{t.Signal != "", t.Metric != nil, t.PromQL != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		errs = append(errs, field.Invalid(path, in.Name, "needs exactly one of signal, metric or promQL"))
	}
	if t.PromQL != "" && cfg.Source.Type != v1alpha1.SourcePrometheus {
		errs = append(errs, field.Invalid(path.Child("promQL"), t.PromQL, "needs source.type prometheus"))
	}
	if t.Threshold <= 0 {
		errs = append(errs, field.Invalid(path.Child("threshold"), in.Threshold.String(), "must be positive"))
	}
	if t.ClearThreshold < 0 || t.ClearThreshold > t.Threshold {
		errs = append(errs, field.Invalid(path.Child("clearThreshold"), in.ClearThreshold.String(), "must be between 0 and threshold"))
	}
	if t.Window < cfg.Interval {
		errs = append(errs, field.Invalid(path.Child("window"), t.Window.String(), "must be at least spec.interval"))
	}
	for j, m := range in.Matchers {
		op := v1alpha1.MatchOperator(stringOr(string(m.Operator), DefaultMatchOperator))
		matcher, err := NewMatcher(m.Label, op, m.Value)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("matchers").Index(j).Child("value"), m.Value, err.Error()))
			continue
		}
		t.Matchers = append(t.Matchers, matcher)
	}
	return t, errs
}

func resolveTargets(in *v1alpha1.Targets, path *field.Path) (Targets, field.ErrorList) {
	var errs field.ErrorList
	t := Targets{
		NamespaceSelector:        labels.Everything(),
		Selector:                 labels.Everything(),
		Exclude:                  map[types.NamespacedName]bool{},
		AllowCritical:            map[types.NamespacedName]bool{},
		AllowProtectedNamespaces: in.AllowProtectedNamespaces,
	}
	if in.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(in.NamespaceSelector.AsLabelSelector())
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("namespaceSelector"), in.NamespaceSelector.AsLabelSelector().String(), err.Error()))
		} else {
			t.NamespaceSelector = sel
		}
	}
	if in.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(in.Selector.AsLabelSelector())
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("selector"), in.Selector.AsLabelSelector().String(), err.Error()))
		} else {
			t.Selector = sel
		}
	}
	for _, e := range in.AllowCritical {
		t.AllowCritical[types.NamespacedName{Namespace: e.Namespace, Name: e.Name}] = true
	}
	for _, e := range in.Exclude {
		t.Exclude[types.NamespacedName{Namespace: e.Namespace, Name: e.Name}] = true
	}
	return t, errs
}

func validateWaves(waves []int32, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	prev := int32(0)
	for i, w := range waves {
		if w <= prev || w > 100 {
			errs = append(errs, field.Invalid(path.Index(i), w, "waves must rise strictly, between 1 and 100"))
		}
		prev = w
	}
	if len(waves) > 0 && waves[len(waves)-1] != 100 {
		errs = append(errs, field.Invalid(path, waves, "the last wave must be 100"))
	}
	return errs
}

func secretKey(ref *v1alpha1.SecretKeyReference) *SecretKey {
	if ref == nil {
		return nil
	}
	return &SecretKey{Name: ref.Name, Key: ref.Key}
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

func int32Or(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

func int32PtrOr(v *int32, def int32) int32 {
	if v == nil {
		return def
	}
	return *v
}

func boolOr(v *bool, def bool) bool {
	if v == nil {
		return def
	}
	return *v
}

func stringOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func quantityOr(q *resource.Quantity, def float64) float64 {
	if q == nil {
		return def
	}
	return q.AsApproximateFloat64()
}
