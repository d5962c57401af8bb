// Package plan decides what a policy does about a flood: which
// ServiceAccounts to throttle, which DaemonSets to pause, which to restore
// next and how far, and when to look again. It is pure: the policy, its
// triggers, the offenders and what is in place now come in as values; a
// Plan comes out, and the controller carries it out.
package plan

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

// DaemonSet is a DaemonSet the policy targets.
type DaemonSet struct {
	Key types.NamespacedName
	// Protected says why the DaemonSet must never be paused (its pods run at
	// a system-*-critical priority, it runs as the operator, it is labelled
	// loadshed.io/protected); empty if it may be. Its ServiceAccount is not
	// throttled either.
	Protected string
}

// Offender is a client of the API servers with its measured load.
type Offender struct {
	// User is who the API servers authenticated it as.
	User string
	// ServiceAccount is the ServiceAccount User names; zero when it names
	// none (a node, a person), which no throttle is made for.
	ServiceAccount types.NamespacedName
	// Share is its share (0 to 1) of the requests the API servers held
	// (executing or queued), or, while it is throttled, of all requests
	// APF saw, dispatched or rejected, whichever is larger.
	Share float64
	// SeatShare is its share (0 to 1) of the seats those requests reserved.
	// A LIST of thousands of objects reserves many seats for seconds, a GET
	// one for milliseconds: a flood of expensive requests is on top by
	// seats long before it is by count.
	SeatShare float64
	// RequestsPerSecond is what its throttle FlowSchema dispatched, while
	// it is throttled; 0 otherwise.
	RequestsPerSecond float64
	DaemonSets        []DaemonSet
	// CannotThrottle says why the client may not or cannot be throttled
	// (not a ServiceAccount, outside the policy's namespaces, no room for a
	// throttle FlowSchema ahead of what matches it, ...); empty if it can.
	CannotThrottle string
}

// protected returns why the offender must not be throttled: one of its
// DaemonSets is protected.
func (o Offender) protected() string {
	for _, ds := range o.DaemonSets {
		if ds.Protected != "" {
			return fmt.Sprintf("it runs %s, which is protected (%s)", ds.Key, ds.Protected)
		}
	}
	return ""
}

// onTop reports whether the offender carries at least share of the load,
// by requests or by seats.
func (o Offender) onTop(share float64) bool {
	return o.Share >= share || o.SeatShare >= share
}

// load describes the offender's load for reasons.
func (o Offender) load() string {
	return fmt.Sprintf("%.0f%% of the requests and %.0f%% of the seats in use", o.Share*100, o.SeatShare*100)
}

// Pause is a DaemonSet this policy paused, as recorded on the DaemonSet.
type Pause struct {
	// Since is when it was first paused.
	Since time.Time
	// Attempt counts the restores that failed (relapsed).
	Attempt int
	// Wave is the restore wave in progress; 0 while fully paused.
	Wave int
	// WaveStarted is when the current wave began.
	WaveStarted time.Time
	// NextRestore is the earliest time a restore may start.
	NextRestore time.Time
	// Load is the attributed requests per second when it was paused, to
	// restore the least loaded first.
	Load float64
	// Overrides counts the times loadshed put back a pause someone removed:
	// each waits one backoff step longer than the last.
	Overrides int
}

// Restoration is what is remembered of a DaemonSet's last full restore:
// paused again within the cool-down (backoff max) after it, it counts as a
// relapse, and its backoff goes on growing from Attempt.
type Restoration struct {
	At      time.Time
	Attempt int
}

// Input is everything a decision reads.
type Input struct {
	Now    time.Time
	Config *policy.Config
	// Firing is true while any trigger fires.
	Firing bool
	// FiringSince is when the trigger firing longest started firing. A
	// throttle that cannot be applied does not hold a pause back: the pause
	// waits pause.after from here instead.
	FiringSince time.Time
	// ClearSince is when every trigger became OK; zero unless all are OK.
	ClearSince time.Time
	// Offenders, most load first.
	Offenders []Offender
	// Throttled maps each ServiceAccount this policy throttles to since when.
	Throttled map[types.NamespacedName]time.Time
	// Paused maps each DaemonSet this policy paused to its record.
	Paused map[types.NamespacedName]Pause
	// PausedByOthers maps DaemonSets paused by other policies to the policy.
	PausedByOthers map[types.NamespacedName]string
	// ThrottledByOthers maps ServiceAccounts other policies throttle to the
	// policy: a throttle has one owner at a time, the first to apply it.
	ThrottledByOthers map[types.NamespacedName]string
	// LastRestored is when this policy last finished restoring a DaemonSet.
	LastRestored time.Time
	// Restorations are the last full restores of DaemonSets, by DaemonSet.
	Restorations map[types.NamespacedName]Restoration
	// ThrottleBlockedSince maps each ServiceAccount whose throttle was
	// blocked (refused by the API server, or not possible) at the last
	// evaluation to since when: a throttle tried again and refused again
	// does not restart the pause clock.
	ThrottleBlockedSince map[types.NamespacedName]time.Time
	// Overridden maps each paused DaemonSet whose pause someone else removed
	// to when loadshed last put one back on it (zero if never).
	Overridden map[types.NamespacedName]time.Time
	// WaveSizes maps paused DaemonSets to how many nodes each restore wave
	// (Config.Restore.WavePercents) runs on, for the reasons of restore
	// steps; a DaemonSet missing (the nodes could not be read) is described
	// by its waves' percentages.
	WaveSizes map[types.NamespacedName][]WaveSize
}

// WaveSize is how many nodes a restore wave of a DaemonSet runs on.
type WaveSize struct {
	// Nodes is how many it runs on, of Eligible, those the DaemonSet's
	// original scheduling selects.
	Nodes, Eligible int
	// Capped says that the wave runs on fewer nodes than its percentage:
	// its node list reached the wave size limit.
	Capped bool
}

// DescribeWave says how far restore wave (from 1) of percents has gone, with
// the number of nodes it runs on when sizes has it: "wave 3 of 4: 950 of
// 5,000 nodes (19%), capped at the wave size limit", or else "wave 3 of 4:
// 50% of its nodes".
func DescribeWave(wave int, percents []int32, sizes []WaveSize) string {
	head := fmt.Sprintf("wave %d of %d", wave, len(percents))
	switch {
	case wave < 1 || wave > len(percents):
		return head
	case wave > len(sizes):
		return fmt.Sprintf("%s: %d%% of its nodes", head, percents[wave-1])
	}
	s := sizes[wave-1]
	out := fmt.Sprintf("%s: %s of %s nodes (%s)", head, thousands(s.Nodes), thousands(s.Eligible), share(s.Nodes, s.Eligible))
	if s.Capped {
		out += ", capped at the wave size limit"
	}
	return out
}

// share writes part of whole as a whole percentage, rounded down; "<1%"
// for a part too small to show.
func share(part, whole int) string {
	if whole == 0 {
		return "0%"
	}
	pct := part * 100 / whole
	if pct == 0 && part > 0 {
		return "<1%"
	}
	return fmt.Sprintf("%d%%", pct)
}

// thousands writes n with a comma between groups of three digits.
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Plan is what to do now. Throttled and Paused are the whole desired sets,
// not changes: applying a plan twice is the same as once.
type Plan struct {
	// Throttled maps each ServiceAccount to throttle to since when.
	Throttled map[types.NamespacedName]time.Time
	// Paused maps each DaemonSet to keep paused (or in restore) to its record.
	Paused map[types.NamespacedName]Pause
	// Restored are the DaemonSets whose restore completes now.
	Restored []types.NamespacedName
	// Changes describe what this plan changes, for events, metrics and logs.
	Changes []Change
	// Blocked says what the policy would do but may not, and why.
	Blocked []Block
	// RequeueAfter is when to look again at the latest.
	RequeueAfter time.Duration
	// NextRestore is when the next restore step is due; zero if none is.
	NextRestore time.Time
	// PutBack are the overridden pauses to put back now; Held are those
	// left as they are until a backoff step has passed since the last time.
	PutBack, Held []types.NamespacedName
}

// ChangeKind names a change a plan makes. (What is in place, as status shows
// it, is a v1alpha1.ActionKind: a throttle or a pause.)
type ChangeKind string

// The changes a plan makes; each is also the reason of its event.
const (
	Throttled      ChangeKind = v1alpha1.EventThrottled
	Paused         ChangeKind = v1alpha1.EventPaused
	RestoreStarted ChangeKind = v1alpha1.EventRestoreStarted
	WaveAdvanced   ChangeKind = v1alpha1.EventWaveAdvanced
	Restored       ChangeKind = v1alpha1.EventRestored
	Repaused       ChangeKind = v1alpha1.EventRepaused
	Unthrottled    ChangeKind = v1alpha1.EventUnthrottled
)

// OnDaemonSet reports whether the change is to a DaemonSet (its target is
// one), rather than to a ServiceAccount's throttle.
func (k ChangeKind) OnDaemonSet() bool {
	return k != Throttled && k != Unthrottled
}

// Block is a change the policy would make but may not, and why: Kind is
// the change (Throttled, Paused, or a step of a restore the API server
// refused). Target is the ServiceAccount or the DaemonSet; a client that is
// not a ServiceAccount has a zero Target and its User instead.
type Block struct {
	Kind   ChangeKind
	Target types.NamespacedName
	User   string
	Reason string
}

// Subject names what the block is about: the target, or the user.
func (b Block) Subject() string {
	if b.Target == (types.NamespacedName{}) && b.User != "" {
		return b.User
	}
	return b.Target.String()
}

func (b Block) String() string {
	verb := "pause"
	switch b.Kind {
	case Throttled:
		verb = "throttle"
	case Unthrottled:
		verb = "unthrottle"
	case RestoreStarted, WaveAdvanced, Restored:
		verb = "restore"
	}
	return fmt.Sprintf("would %s %s, but %s", verb, b.Subject(), b.Reason)
}

// Refuse takes back a change the API server refused to make, so that the
// plan, which status, events and metrics report, holds only what happened,
// and reports it as blocked. What was in place before stays as it was.
func (p *Plan) Refuse(in Input, b Block) {
	p.TakeBack(in, b.Kind, b.Target)
	p.Blocked = append(p.Blocked, b)
}

// TakeBack takes back a change of kind to target that was not made (its
// write failed and a later loop tries again), so that the plan holds only
// what happened. What was in place before stays as it was.
func (p *Plan) TakeBack(in Input, kind ChangeKind, target types.NamespacedName) {
	onDaemonSet := kind.OnDaemonSet()
	if onDaemonSet {
		if rec, ok := in.Paused[target]; ok {
			p.Paused[target] = rec
		} else {
			delete(p.Paused, target)
		}
		isTarget := func(k types.NamespacedName) bool { return k == target }
		p.Restored = slices.DeleteFunc(p.Restored, isTarget)
		p.PutBack = slices.DeleteFunc(p.PutBack, isTarget)
	} else if since, ok := in.Throttled[target]; ok {
		p.Throttled[target] = since
	} else {
		delete(p.Throttled, target)
	}
	p.Changes = slices.DeleteFunc(p.Changes, func(c Change) bool {
		return c.Target == target && c.Kind.OnDaemonSet() == onDaemonSet
	})
}

// Change is one change, with a sentence saying why. Target is the
// ServiceAccount of a throttle change, else the DaemonSet.
type Change struct {
	Kind   ChangeKind
	Target types.NamespacedName
	Reason string
}

// String says what the change is and why, as its event does: "Paused
// shop/agent: its ServiceAccount ...".
func (c Change) String() string {
	return fmt.Sprintf("%s %s: %s", c.Kind, c.Target, c.Reason)
}

// Decide computes the plan. It never pauses more than maxPaused DaemonSets,
// never a protected one nor one another policy paused, restores one
// DaemonSet at a time, and removes throttles only once nothing is paused and
// the triggers have been clear for stableFor since the last restore.
func Decide(in Input) Plan {
	cfg := in.Config
	p := Plan{Throttled: map[types.NamespacedName]time.Time{}, Paused: map[types.NamespacedName]Pause{}}
	for sa, since := range in.Throttled {
		p.Throttled[sa] = since
	}
	for ds, rec := range in.Paused {
		p.Paused[ds] = rec
	}
	p.RequeueAfter = cfg.Interval

	if in.Firing {
		decideFiring(in, &p)
	} else {
		decideCalm(in, &p)
	}
	decideOverrides(in, &p)
	p.NextRestore = nextRestore(in, p)
	return p
}

// decideOverrides puts back a pause someone else removed, at most once per
// backoff step, each step longer than the last (the n-th put-back waits
// the backoff of attempt n after the one before): never a tight fight with
// a GitOps tool.
func decideOverrides(in Input, p *Plan) {
	for _, ds := range sortedKeys(in.Overridden) {
		rec, ok := p.Paused[ds]
		if !ok || rec.Wave != in.Paused[ds].Wave {
			continue // the plan changes this DaemonSet anyway
		}
		last := in.Overridden[ds]
		if !last.IsZero() {
			if due := last.Add(Backoff(in.Config.Restore.Backoff, ds, max(rec.Overrides, 1))); in.Now.Before(due) {
				p.Held = append(p.Held, ds)
				p.RequeueAfter = min(p.RequeueAfter, positive(due.Sub(in.Now)))
				continue
			}
		}
		rec.Overrides++
		p.Paused[ds] = rec
		p.PutBack = append(p.PutBack, ds)
	}
}

// decideFiring throttles new offenders, pauses the ones throttling did not
// stop, and sends DaemonSets on probation back to pause.
func decideFiring(in Input, p *Plan) {
	cfg := in.Config
	// Relapse: a DaemonSet being restored goes back to pause, with a longer wait.
	for _, ds := range sortedKeys(p.Paused) {
		rec := p.Paused[ds]
		if rec.Wave == 0 {
			continue
		}
		rec.Attempt++
		rec.Wave = 0
		rec.WaveStarted = time.Time{}
		rec.NextRestore = in.Now.Add(Backoff(cfg.Restore.Backoff, ds, rec.Attempt))
		p.Paused[ds] = rec
		p.Changes = append(p.Changes, Change{Kind: Repaused, Target: ds,
			Reason: fmt.Sprintf("a trigger fired during its restore (attempt %d); next restore not before %s",
				rec.Attempt, rec.NextRestore.UTC().Format(time.RFC3339))})
	}

	for _, o := range in.Offenders {
		if !o.onTop(cfg.MinShare) {
			continue
		}
		if cfg.Throttle.Enabled {
			throttleOne(in, p, o)
		}
		if !cfg.Pause.Enabled || !pauseDue(in, p, o) {
			continue
		}
		for _, ds := range o.DaemonSets {
			pauseOne(in, p, o, ds)
		}
	}
}

// throttleOne throttles an offender not yet throttled, or says why it may
// not: a protected DaemonSet runs as it, no throttle can be applied, or
// another policy's throttle is in place.
func throttleOne(in Input, p *Plan, o Offender) {
	if _, ok := p.Throttled[o.ServiceAccount]; ok {
		return
	}
	why := cmp.Or(o.protected(), o.CannotThrottle)
	if o.ServiceAccount == (types.NamespacedName{}) {
		why = cmp.Or(why, "it is not a ServiceAccount")
	}
	if by := in.ThrottledByOthers[o.ServiceAccount]; by != "" && why == "" {
		why = fmt.Sprintf("policy %s throttles it already", by)
	}
	if why != "" {
		b := Block{Kind: Throttled, Target: o.ServiceAccount, Reason: why}
		if o.ServiceAccount == (types.NamespacedName{}) {
			b.User = o.User
		}
		p.Blocked = append(p.Blocked, b)
		return
	}
	p.Throttled[o.ServiceAccount] = in.Now
	p.Changes = append(p.Changes, Change{Kind: Throttled, Target: o.ServiceAccount, Reason: "it makes " + o.load()})
}

// pauseDue reports whether an offender's DaemonSets are due to be paused:
// pause.after after its throttle began (or was first blocked, when it is
// being tried again) or, when it cannot be throttled, after the triggers
// started firing.
func pauseDue(in Input, p *Plan, o Offender) bool {
	cfg := in.Config
	if !cfg.Throttle.Enabled || cfg.Pause.After <= 0 {
		return true
	}
	since, throttled := p.Throttled[o.ServiceAccount]
	if blocked, ok := in.ThrottleBlockedSince[o.ServiceAccount]; ok && throttled && blocked.Before(since) {
		since = blocked
	}
	if !throttled {
		since = in.FiringSince
		if since.IsZero() {
			since = in.Now
		}
	}
	if due := since.Add(cfg.Pause.After); in.Now.Before(due) {
		p.RequeueAfter = min(p.RequeueAfter, positive(due.Sub(in.Now)))
		return false
	}
	return true
}

// pauseOne pauses one of an offender's DaemonSets, or says why it may not.
// maxPaused counts the DaemonSets every policy paused: two policies never
// pause more together than the larger of their caps.
func pauseOne(in Input, p *Plan, o Offender, ds DaemonSet) {
	if _, ok := p.Paused[ds.Key]; ok {
		return
	}
	block := func(reason string) {
		p.Blocked = append(p.Blocked, Block{Kind: Paused, Target: ds.Key, Reason: reason})
	}
	switch total := len(p.Paused) + len(in.PausedByOthers); {
	case ds.Protected != "":
		block("it is protected (" + ds.Protected + ")")
		return
	case in.PausedByOthers[ds.Key] != "":
		block(fmt.Sprintf("policy %s paused it first", in.PausedByOthers[ds.Key]))
		return
	case total >= in.Config.Pause.MaxPaused:
		block(fmt.Sprintf("%d DaemonSets are paused already, %d of them by other policies (maxPaused %d)",
			total, len(in.PausedByOthers), in.Config.Pause.MaxPaused))
		return
	}
	rec := Pause{Since: in.Now, Load: o.RequestsPerSecond}
	reason := fmt.Sprintf("its ServiceAccount %s makes %s", o.ServiceAccount, o.load())
	if _, throttled := p.Throttled[o.ServiceAccount]; throttled && in.Config.Pause.After > 0 {
		reason += fmt.Sprintf(" after %v of throttling", in.Config.Pause.After)
	}
	if last, ok := in.Restorations[ds.Key]; ok && in.Now.Before(last.At.Add(in.Config.Restore.Backoff.Max)) {
		rec.Attempt = last.Attempt + 1
		rec.NextRestore = in.Now.Add(Backoff(in.Config.Restore.Backoff, ds.Key, rec.Attempt))
		reason += fmt.Sprintf("; a relapse %v after its last restore (attempt %d): next restore not before %s",
			in.Now.Sub(last.At).Round(time.Second), rec.Attempt, rec.NextRestore.UTC().Format(time.RFC3339))
	}
	p.Paused[ds.Key] = rec
	p.Changes = append(p.Changes, Change{Kind: Paused, Target: ds.Key, Reason: reason})
}

// decideCalm restores, one DaemonSet and one wave at a time, once every
// trigger has been clear for stableFor; then removes the throttles.
func decideCalm(in Input, p *Plan) {
	if in.ClearSince.IsZero() {
		return // a trigger is pending, clearing or unknown: hold everything
	}
	stableAt := in.ClearSince.Add(in.Config.Restore.StableFor)
	if in.Now.Before(stableAt) {
		p.RequeueAfter = min(p.RequeueAfter, positive(stableAt.Sub(in.Now)))
		return
	}
	if advanceRestore(in, p) || startRestore(in, p) || len(p.Paused) > 0 {
		return
	}
	unthrottle(in, p, stableAt)
}

// advanceRestore moves a restore in progress to its next wave, or completes
// it, once its wave has passed probation. It reports whether a restore is
// in progress.
func advanceRestore(in Input, p *Plan) bool {
	cfg := in.Config
	for _, ds := range sortedKeys(p.Paused) {
		rec := p.Paused[ds]
		if rec.Wave == 0 {
			continue
		}
		// Probation counts only time every trigger was seen clear: a gap in
		// the data after the wave began restarts it.
		due := maxTime(rec.WaveStarted, in.ClearSince).Add(cfg.Restore.Probation)
		switch {
		case in.Now.Before(due):
			p.RequeueAfter = min(p.RequeueAfter, positive(due.Sub(in.Now)))
		case rec.Wave >= len(cfg.Restore.WavePercents):
			delete(p.Paused, ds)
			p.Restored = append(p.Restored, ds)
			p.Changes = append(p.Changes, Change{Kind: Restored, Target: ds,
				Reason: fmt.Sprintf("every wave held for %v without a trigger firing", cfg.Restore.Probation)})
		default:
			rec.Wave++
			rec.WaveStarted = in.Now
			p.Paused[ds] = rec
			p.Changes = append(p.Changes, Change{Kind: WaveAdvanced, Target: ds,
				Reason: DescribeWave(rec.Wave, cfg.Restore.WavePercents, in.WaveSizes[ds])})
			p.RequeueAfter = min(p.RequeueAfter, cfg.Restore.Probation)
		}
		return true
	}
	return false
}

// startRestore starts the first wave of the least loaded paused DaemonSet
// whose backoff has passed, and reports whether it started one.
func startRestore(in Input, p *Plan) bool {
	cfg := in.Config
	var next types.NamespacedName
	found := false
	for _, ds := range sortedKeys(p.Paused) {
		rec := p.Paused[ds]
		if in.Now.Before(rec.NextRestore) {
			p.RequeueAfter = min(p.RequeueAfter, positive(rec.NextRestore.Sub(in.Now)))
			continue
		}
		if !found || rec.Load < p.Paused[next].Load {
			next, found = ds, true
		}
	}
	if !found {
		return false
	}
	rec := p.Paused[next]
	rec.Wave = 1
	rec.WaveStarted = in.Now
	p.Paused[next] = rec
	p.Changes = append(p.Changes, Change{Kind: RestoreStarted, Target: next,
		Reason: fmt.Sprintf("triggers clear for %v; attempt %d, %s", cfg.Restore.StableFor, rec.Attempt+1,
			DescribeWave(1, cfg.Restore.WavePercents, in.WaveSizes[next]))})
	p.RequeueAfter = min(p.RequeueAfter, cfg.Restore.Probation)
	return true
}

// unthrottle removes the throttles once nothing is paused and the triggers
// stayed clear for stableFor after the last restore too.
func unthrottle(in Input, p *Plan, stableAt time.Time) {
	if len(p.Throttled) == 0 {
		return
	}
	unthrottleAt := stableAt
	if !in.LastRestored.IsZero() {
		unthrottleAt = maxTime(unthrottleAt, in.LastRestored.Add(in.Config.Restore.StableFor))
	}
	if in.Now.Before(unthrottleAt) {
		p.RequeueAfter = min(p.RequeueAfter, positive(unthrottleAt.Sub(in.Now)))
		return
	}
	for _, sa := range sortedKeys(p.Throttled) {
		delete(p.Throttled, sa)
		p.Changes = append(p.Changes, Change{Kind: Unthrottled, Target: sa,
			Reason: fmt.Sprintf("nothing is paused and the triggers stayed clear for %v", in.Config.Restore.StableFor)})
	}
}

// nextRestore is when the next restore step is due, for status.
func nextRestore(in Input, p Plan) time.Time {
	var next time.Time
	for _, rec := range p.Paused {
		var at time.Time
		if rec.Wave > 0 {
			at = rec.WaveStarted.Add(in.Config.Restore.Probation)
		} else {
			at = rec.NextRestore
			if !in.ClearSince.IsZero() {
				at = maxTime(at, in.ClearSince.Add(in.Config.Restore.StableFor))
			}
		}
		if at.IsZero() {
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// Backoff is the wait before restore attempt n+1 of a DaemonSet, after n
// relapses: initial × multiplier^(n-1), capped at max, then spread by up to
// ±jitterPercent. The jitter is derived from the DaemonSet and the attempt,
// so that it is the same after a restart and differs between DaemonSets.
func Backoff(b policy.Backoff, ds types.NamespacedName, attempt int) time.Duration {
	if attempt < 1 {
		return 0
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	d = math.Min(d, float64(b.Max))
	if b.JitterPercent > 0 {
		h := fnv.New64a()
		_, _ = fmt.Fprintf(h, "%s/%d", ds, attempt)
		unit := float64(h.Sum64()%2001)/1000 - 1 // in [-1, 1]
		d *= 1 + unit*float64(b.JitterPercent)/100
	}
	return time.Duration(d)
}

// sortedKeys returns a map's keys by namespace, then name, so that a plan
// does not depend on map order.
func sortedKeys[V any](m map[types.NamespacedName]V) []types.NamespacedName {
	return slices.SortedFunc(maps.Keys(m), CompareNames)
}

// CompareNames orders namespaced names by namespace, then name.
func CompareNames(a, b types.NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func positive(d time.Duration) time.Duration {
	return max(d, time.Second)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
