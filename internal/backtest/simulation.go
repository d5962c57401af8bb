package backtest

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/plan"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/internal/trigger"
)

// simulation is the cluster and the policy's status as the back-test
// carries them from one evaluation to the next: the objects the operator
// would have written, built by the operator's own builders (shed) and read
// back as the operator reads them, and what its status keeps.
type simulation struct {
	name     string
	cfg      *policy.Config
	operator types.NamespacedName
	nsLabels map[string]labels.Set
	schemas  []flowcontrolv1.FlowSchema
	// daemonSets are the DaemonSets the policy targets, as they would be.
	daemonSets map[types.NamespacedName]*appsv1.DaemonSet
	// byServiceAccount and protected depend on nothing a pause changes.
	byServiceAccount map[types.NamespacedName][]types.NamespacedName
	protected        map[types.NamespacedName]string
	// touched are the DaemonSets the policy paused at some time.
	touched map[types.NamespacedName]bool
	// throttles and level are the throttle FlowSchemas and the throttling
	// priority level the policy would have; matched the FlowSchema that
	// matches each offender, for its throttle.
	throttles map[types.NamespacedName]*flowcontrolv1.FlowSchema
	level     *flowcontrolv1.PriorityLevelConfiguration
	matched   map[types.NamespacedName]*flowcontrolv1.FlowSchema
	// previous, previousAt and blocked are what its status keeps.
	previous   map[string]trigger.Status
	previousAt time.Time
	blocked    []v1alpha1.BlockedStatus
	// reported are the blocks reported while the triggers fire.
	reported map[plan.BlockKey]bool
}

// newSimulation starts with nothing of loadshed's in place: the world's
// DaemonSets lose whatever an operator wrote on them when they were
// recorded.
func newSimulation(in *Input) *simulation {
	s := &simulation{
		name: in.Name, cfg: in.Config, operator: in.Operator,
		nsLabels: in.World.NamespaceLabels, schemas: in.World.FlowSchemas,
		daemonSets: map[types.NamespacedName]*appsv1.DaemonSet{},
		touched:    map[types.NamespacedName]bool{},
		throttles:  map[types.NamespacedName]*flowcontrolv1.FlowSchema{},
		previous:   map[string]trigger.Status{},
		reported:   map[plan.BlockKey]bool{},
	}
	var selected []appsv1.DaemonSet
	for i := range in.World.DaemonSets {
		ds := in.World.DaemonSets[i].DeepCopy()
		for k := range ds.Annotations {
			if strings.HasPrefix(k, "loadshed.io/") {
				delete(ds.Annotations, k)
			}
		}
		if !in.Config.Targets.Selects(ds, in.World.NamespaceLabels, in.Operator.Namespace) {
			continue
		}
		selected = append(selected, *ds)
		s.daemonSets[types.NamespacedName{Namespace: ds.Namespace, Name: ds.Name}] = ds
	}
	s.byServiceAccount = detection.DaemonSetsByServiceAccount(selected)
	s.protected = in.Config.Targets.Protected(selected, in.Operator)
	return s
}

// scope is what offenders are measured against, as the operator's loop
// sees it.
func (s *simulation) scope() detection.Scope {
	sc := detection.Scope{DaemonSets: s.byServiceAccount, Throttles: map[types.NamespacedName]string{}}
	for sa, fs := range s.throttles {
		sc.Throttles[sa] = fs.Name
	}
	return sc
}

// planInput gathers the planner's input as the operator does, from what is
// in place and what its status keeps.
func (s *simulation) planInput(now time.Time, readings []detection.Reading, offenders []detection.Offender) (plan.Input, error) {
	in := plan.InputFrom(now, s.cfg, readings)
	in.Paused = map[types.NamespacedName]plan.Pause{}
	touched := make([]appsv1.DaemonSet, 0, len(s.touched))
	for _, key := range slices.SortedFunc(maps.Keys(s.touched), plan.CompareNames) {
		ds := s.daemonSets[key]
		touched = append(touched, *ds)
		if shed.PausedBy(ds) != s.name {
			continue
		}
		rec, err := shed.ReadPause(ds)
		if err != nil {
			return in, fmt.Errorf("reading the pause record of %s: %w", key, err)
		}
		in.Paused[key] = rec
	}
	for sa, fs := range s.throttles {
		since, err := shed.ThrottledSince(fs)
		if err != nil {
			return in, fmt.Errorf("reading the throttle of %s: %w", sa, err)
		}
		in.Throttled[sa] = since
	}
	in.LastRestored = shed.LastRestored(s.level)
	in.Restorations = shed.Restorations(touched, s.name)
	in.ThrottleBlockedSince = plan.ThrottleBlockedSince(s.blocked)
	s.matched = map[types.NamespacedName]*flowcontrolv1.FlowSchema{}
	in.Offenders = plan.OffendersOf(offenders, s.protected, s.cannotThrottle)
	return in, nil
}

// cannotThrottle asks shed.CannotThrottle, as the operator does, and
// remembers what matches the ServiceAccount for its throttle.
func (s *simulation) cannotThrottle(sa types.NamespacedName) string {
	matched, why := shed.CannotThrottle(s.cfg.Targets, sa, s.operator, s.nsLabels, s.schemas)
	if matched != nil {
		s.matched[sa] = matched
	}
	return why
}

// apply writes the plan on the simulated objects, as the operator writes it
// on the cluster's (controllers/mitigation.go, throttles.go): every write
// is taken to succeed.
func (s *simulation) apply(now time.Time, in plan.Input, p plan.Plan) error {
	reasons := map[types.NamespacedName]string{}
	for _, c := range p.Changes {
		if c.Kind.OnDaemonSet() {
			reasons[c.Target] = c.Reason
		}
	}
	for _, key := range slices.SortedFunc(maps.Keys(p.Paused), plan.CompareNames) {
		ds := s.daemonSets[key]
		if ds == nil || slices.Contains(p.Held, key) {
			continue
		}
		want, err := shed.Apply(ds, s.name, reasons[key], p.Paused[key], s.cfg.Restore.WavePercents, nil)
		if err != nil {
			return fmt.Errorf("pausing %s: %w", key, err)
		}
		s.daemonSets[key], s.touched[key] = want, true
	}
	for _, key := range p.Restored {
		want, err := shed.Restore(s.daemonSets[key], &plan.Restoration{At: now, Attempt: in.Paused[key].Attempt})
		if err != nil {
			return fmt.Errorf("restoring %s: %w", key, err)
		}
		s.daemonSets[key] = want
	}
	return s.applyThrottles(now, p)
}

// applyThrottles keeps the throttling level while anything is throttled
// or paused, with when the last restore finished, and a throttle
// FlowSchema per throttled ServiceAccount.
func (s *simulation) applyThrottles(now time.Time, p plan.Plan) error {
	if len(p.Throttled) > 0 || len(s.throttles) > 0 {
		if err := s.applyLevel(now, len(p.Restored) > 0); err != nil {
			return err
		}
	}
	for _, sa := range slices.SortedFunc(maps.Keys(p.Throttled), plan.CompareNames) {
		if s.throttles[sa] != nil || s.matched[sa] == nil {
			continue
		}
		ac, err := shed.ThrottleFlowSchema(s.name, attribution.ServiceAccount(sa), s.matched[sa], p.Throttled[sa])
		if err != nil {
			continue // the operator logs it and goes on
		}
		fs := &flowcontrolv1.FlowSchema{}
		if err := convert(ac, fs); err != nil {
			return err
		}
		s.throttles[sa] = fs
	}
	for sa := range s.throttles {
		if _, keep := p.Throttled[sa]; !keep {
			delete(s.throttles, sa)
		}
	}
	if len(p.Throttled) == 0 && len(p.Paused) == 0 {
		s.level = nil
	}
	return nil
}

// applyLevel makes the throttling level when it is missing, or records on
// it that a restore finished now.
func (s *simulation) applyLevel(now time.Time, restored bool) error {
	if s.level != nil && !restored {
		return nil
	}
	ac := shed.ThrottleLevel(s.name, s.cfg.Throttle)
	last := ""
	if s.level != nil {
		last = s.level.Annotations[v1alpha1.AnnotationLastRestored]
	}
	if restored {
		last = now.UTC().Format(time.RFC3339)
	}
	if last != "" {
		ac.WithAnnotations(map[string]string{v1alpha1.AnnotationLastRestored: last})
	}
	level := &flowcontrolv1.PriorityLevelConfiguration{}
	if err := convert(ac, level); err != nil {
		return err
	}
	s.level = level
	return nil
}

// carry keeps what the operator's status keeps of an evaluation.
func (s *simulation) carry(now time.Time, readings []detection.Reading, p plan.Plan) {
	s.previous = make(map[string]trigger.Status, len(readings))
	for _, r := range readings {
		s.previous[r.Name] = r.Status
	}
	s.previousAt = now
	s.blocked = plan.BlockedStatuses(s.blocked, p.Blocked, now)
}

// shedding reports whether anything is throttled or paused.
func (s *simulation) shedding() bool {
	if len(s.throttles) > 0 {
		return true
	}
	for key := range s.touched {
		if shed.PausedBy(s.daemonSets[key]) == s.name {
			return true
		}
	}
	return false
}

// convert turns an apply configuration into the object the API server
// would hold.
func convert(ac, obj any) error {
	raw, err := json.Marshal(ac)
	if err != nil {
		return fmt.Errorf("encoding %T: %w", ac, err)
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		return fmt.Errorf("decoding %T: %w", obj, err)
	}
	return nil
}
