package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/plan"
)

func TestRefusal(t *testing.T) {
	ds := schema.GroupResource{Group: "apps", Resource: "daemonsets"}
	key := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	tests := []struct {
		name    string
		err     error
		refused bool
	}{
		{"no error", nil, false},
		{"denied by an admission policy", apierrors.NewForbidden(ds, "agent", errors.New("denied request")), true},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, "agent",
			field.ErrorList{field.Invalid(field.NewPath("spec"), "x", "bad")}), true},
		{"too large", apierrors.NewRequestEntityTooLargeError("etcdserver: request is too large"), true},
		{"a conflict is retried", apierrors.NewConflict(ds, "agent", errors.New("changed")), false},
		{"a timeout is retried", apierrors.NewTimeoutError("slow", 1), false},
		{"a connection error is retried", errors.New("connection refused"), false},
		{"a wrapped denial", errors.Join(errors.New("updating"), apierrors.NewForbidden(ds, "agent", errors.New("no"))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, refused := refusal(tt.err, plan.Paused, key)
			if refused != tt.refused {
				t.Fatalf("refused = %v, want %v", refused, tt.refused)
			}
			if refused && (b.Target != key || b.Kind != plan.Paused || !strings.HasPrefix(b.Reason, "the API server refused it: ")) {
				t.Errorf("block %+v", b)
			}
		})
	}
}

// TestAStaleCachedStatusIsFreshened: a loop that starts before the cache
// holds the status the last loop wrote reads that status instead.
func TestAStaleCachedStatusIsFreshened(t *testing.T) {
	at := func(s int) *metav1.Time {
		tm := metav1.NewTime(time.Date(2026, 12, 2, 12, 0, s, 0, time.UTC))
		return &tm
	}
	var m statusMemory
	written := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	written.Status.LastEvaluationTime = at(2)
	written.Status.Blocked = []v1alpha1.BlockedStatus{{Kind: v1alpha1.ActionThrottle, Target: "a/b", Reason: "r"}}
	m.remember(written, true)

	stale := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	stale.Status.LastEvaluationTime = at(1)
	m.freshen(stale)
	if len(stale.Status.Blocked) != 1 || !stale.Status.LastEvaluationTime.Equal(at(2)) {
		t.Errorf("a stale status was not freshened: %+v", stale.Status)
	}
	newer := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	newer.Status.LastEvaluationTime = at(3)
	m.freshen(newer)
	if len(newer.Status.Blocked) != 0 {
		t.Error("a newer cached status was replaced by an older one")
	}
	other := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "q"}}
	m.freshen(other)
	if other.Status.LastEvaluationTime != nil {
		t.Error("another policy's status was used")
	}
	m.forget("p")
	stale.Status = v1alpha1.LoadShedPolicyStatus{LastEvaluationTime: at(1)}
	m.freshen(stale)
	if len(stale.Status.Blocked) != 0 {
		t.Error("a deleted policy's status was remembered")
	}
}

// TestALoopGoesOnFromTheLastEvaluationNotTheLastWrite: a loop that wrote
// nothing (only values changed) still leaves what it computed for the next
// loop, whose lastEvaluationTime is then a loop ago, not a write a minute
// ago; the patch's base stays what the API server holds.
func TestALoopGoesOnFromTheLastEvaluationNotTheLastWrite(t *testing.T) {
	at := func(s int) *metav1.Time {
		tm := metav1.NewTime(time.Date(2026, 12, 2, 12, 0, s, 0, time.UTC))
		return &tm
	}
	var m statusMemory
	p := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	p.Status.LastEvaluationTime = at(0)
	m.remember(p, true)
	p.Status.LastEvaluationTime = at(50)
	m.remember(p, false)

	loop := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	loop.Status.LastEvaluationTime = at(0)
	m.freshen(loop)
	if !loop.Status.LastEvaluationTime.Equal(at(0)) {
		t.Errorf("the patch's base was evaluated at %v, want the last write's %v", loop.Status.LastEvaluationTime, at(0))
	}
	m.goOn(loop)
	if !loop.Status.LastEvaluationTime.Equal(at(50)) {
		t.Errorf("the loop goes on from %v, want the last evaluation's %v", loop.Status.LastEvaluationTime, at(50))
	}
}

// TestABlockIsReportedOncePerFiring: an offender whose share dips under
// minShare for a loop drops out of the plan's blocks and comes back; its
// block is reported once while the triggers fire, and again only in a new
// firing.
func TestABlockIsReportedOncePerFiring(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	r := &LoadShedPolicyReconciler{Recorder: rec}
	obj := &v1alpha1.LoadShedPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	blocked := plan.Plan{Blocked: []plan.Block{{Kind: plan.Throttled, User: "alice", Reason: "it is not a ServiceAccount"}}}
	loop := func(p plan.Plan, firing bool) {
		r.recordBlocked(obj, p, firing)
		obj.Status.Blocked = plan.BlockedStatuses(obj.Status.Blocked, p.Blocked, time.Now())
	}
	loop(blocked, true)
	loop(plan.Plan{}, true) // under minShare for a loop
	loop(blocked, true)
	loop(plan.Plan{}, false) // the triggers clear
	loop(blocked, true)      // a new firing
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	if len(got) != 2 || !strings.Contains(got[0], "Would throttle alice") {
		t.Errorf("events %q, want the block reported twice: once per firing", got)
	}
}
