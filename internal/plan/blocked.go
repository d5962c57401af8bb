package plan

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// What a policy may not do is carried from one evaluation to the next in
// its status (v1alpha1.BlockedStatus): since when each action has been
// blocked. The operator and kubectl loadshed's back-test carry it with
// these.

// BlockKey identifies a blocked action in status: its kind and its subject.
type BlockKey struct {
	Kind   v1alpha1.ActionKind
	Target string
}

// Key is the block's key in status: a throttle, or a pause (which also
// stands for a step of a restore).
func (b Block) Key() BlockKey {
	kind := v1alpha1.ActionPause
	if b.Kind == Throttled {
		kind = v1alpha1.ActionThrottle
	}
	return BlockKey{kind, b.Subject()}
}

// BlockedStatuses lists what a plan may not do, each since when it was
// first blocked: kept from prev, the list of the evaluation before, or now.
func BlockedStatuses(prev []v1alpha1.BlockedStatus, blocked []Block, now time.Time) []v1alpha1.BlockedStatus {
	since := map[BlockKey]*metav1.Time{}
	for _, b := range prev {
		since[BlockKey{b.Kind, b.Target}] = b.Since
	}
	out := make([]v1alpha1.BlockedStatus, 0, len(blocked))
	for _, b := range blocked {
		k := b.Key()
		s := since[k]
		if s == nil {
			t := metav1.NewTime(now)
			s = &t
		}
		out = append(out, v1alpha1.BlockedStatus{Kind: k.Kind, Target: k.Target, Reason: b.Reason, Since: s})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// NewlyBlocked returns the blocks of a plan to report, each once: those
// that were not blocked at the evaluation before (prev) nor reported
// already while the triggers fire (reported, to which it adds every block;
// the caller empties it when they stop firing).
func NewlyBlocked(prev []v1alpha1.BlockedStatus, blocked []Block, reported map[BlockKey]bool) []Block {
	before := map[BlockKey]bool{}
	for _, b := range prev {
		before[BlockKey{b.Kind, b.Target}] = true
	}
	var out []Block
	for _, b := range blocked {
		k := b.Key()
		first := !reported[k]
		reported[k] = true
		if first && !before[k] {
			out = append(out, b)
		}
	}
	return out
}

// ThrottleBlockedSince reads, from the blocked actions of the evaluation
// before, since when each ServiceAccount's throttle has been blocked
// (Input.ThrottleBlockedSince).
func ThrottleBlockedSince(blocked []v1alpha1.BlockedStatus) map[types.NamespacedName]time.Time {
	out := map[types.NamespacedName]time.Time{}
	for _, b := range blocked {
		key, ok := ParseTarget(b.Target)
		if b.Kind != v1alpha1.ActionThrottle || !ok || b.Since == nil {
			continue
		}
		out[key] = b.Since.Time
	}
	return out
}

// ParseTarget reads a status target, "namespace/name".
func ParseTarget(target string) (types.NamespacedName, bool) {
	ns, name, ok := strings.Cut(target, "/")
	return types.NamespacedName{Namespace: ns, Name: name}, ok && ns != "" && name != ""
}
