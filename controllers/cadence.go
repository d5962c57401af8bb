package controllers

import (
	"maps"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// statusRefresh is the longest a policy's status goes unwritten: status is
// written when something a reader would notice changes (a state, an
// action, an offender, a condition), and at least this often otherwise, so
// that values and lastEvaluationTime are never older than this plus one
// interval.
const statusRefresh = time.Minute

// statusWorthWriting reports whether a loop's status must be written: base
// is the status last written, obj's the one computed now.
func statusWorthWriting(base, obj *v1alpha1.LoadShedPolicyStatus) bool {
	if base.LastEvaluationTime == nil || obj.LastEvaluationTime == nil ||
		obj.LastEvaluationTime.Sub(base.LastEvaluationTime.Time) >= statusRefresh {
		return true
	}
	return !equality.Semantic.DeepEqual(quiet(base), quiet(obj))
}

// quiet returns a status without what changes at every evaluation of a
// quiet policy: the evaluation time, the triggers' and offenders' values,
// the worst trigger (on a quiet cluster, which is nearest its threshold
// changes with the values) and the Triggered condition's message, which
// quotes values. Whether a value is there or missing stays, and so does
// every state, since, action and condition.
func quiet(s *v1alpha1.LoadShedPolicyStatus) *v1alpha1.LoadShedPolicyStatus {
	q := s.DeepCopy()
	q.LastEvaluationTime = nil
	q.WorstSignal = ""
	for i := range q.Signals {
		if q.Signals[i].Value != "" {
			q.Signals[i].Value = "present"
		}
	}
	for i := range q.Offenders {
		o := &q.Offenders[i]
		o.InFlightSharePercent, o.SeatSharePercent, o.RequestsPerSecond = 0, 0, ""
	}
	for i := range q.Conditions {
		if q.Conditions[i].Type == v1alpha1.ConditionTriggered {
			q.Conditions[i].Message = ""
		}
	}
	return q
}

// cadence remembers, per policy, when its next evaluation is due, so that
// a policy is evaluated at its interval (or when its plan asks, for a
// restore step), whatever wakes it: the sampler's rounds, its own requeue,
// a Secret. A change of its spec or annotations is evaluated at once.
type cadence struct {
	mu  sync.Mutex
	due map[string]dueAt
}

// dueAt is when a policy is next due, and what it was when evaluated.
type dueAt struct {
	at          time.Time
	early       time.Duration
	generation  int64
	annotations map[string]string
}

// wait returns how long a policy has yet to wait, or 0 when it is due: its
// next evaluation is at most early away, or its spec or annotations
// changed since the last one.
func (c *cadence) wait(obj *v1alpha1.LoadShedPolicy, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.due[obj.Name]
	if !ok || d.generation != obj.Generation || !maps.Equal(d.annotations, obj.Annotations) {
		return 0
	}
	if left := d.at.Sub(now); left > d.early {
		return left
	}
	return 0
}

// evaluated records that a policy was evaluated at now and is next due
// after next. A wake-up up to a quarter of the interval early (a round of
// scrapes comes slightly before the interval has passed) is on time.
func (c *cadence) evaluated(obj *v1alpha1.LoadShedPolicy, now time.Time, next, interval time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.due == nil {
		c.due = map[string]dueAt{}
	}
	c.due[obj.Name] = dueAt{at: now.Add(next), early: min(interval/4, next), generation: obj.Generation,
		annotations: maps.Clone(obj.Annotations)}
}

// forget drops a policy: its next wake-up evaluates it.
func (c *cadence) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.due, name)
}
