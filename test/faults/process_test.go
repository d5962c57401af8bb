package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/controllers/operator"
	"github.com/loadshed/loadshed/internal/replay"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
	"github.com/loadshed/loadshed/test/testenv"
)

// The operator's namespace and ServiceAccount, as config/ ships them (the
// admission policies of config/admission name them).
const (
	operatorNamespace = "loadshed-system"
	operatorAccount   = operator.DefaultServiceAccount
)

// operatorBinary builds cmd/manager once for the package's tests.
var operatorBinary = sync.OnceValues(func() (string, error) {
	return replay.BuildOperator(context.Background(), testenv.RepoRoot(), env.Dir())
})

// processes runs the shipped operator binary as its own processes,
// authenticated as its ServiceAccount with the RBAC and admission policies
// of config/: a test kills one (SIGKILL) and starts another, or runs two
// replicas with leader election. Logs are in the test's temporary
// directory, and their ends are shown when the test fails.
type processes struct {
	t   *testing.T
	dir string
	le  *replay.LeaderElection

	// launch, when set, starts a process instead of replay.StartOperator
	// (which applies config/'s RBAC and admission policies first), given
	// the binary, directory, name and proxy: e.g. as a Deployment that
	// something else installed would run it.
	launch func(replay.OperatorOptions) (*replay.Operator, error)

	mu      sync.Mutex
	started []*replay.Operator
	names   []string
	dead    map[*replay.Operator]bool
}

// runProcesses prepares to run operator processes for a test, leader
// election as le says (nil: none), and stops those still running when the
// test ends: call it before creating a policy, whose deletion (a cleanup
// registered later, so run earlier) needs an operator.
func runProcesses(t *testing.T, le *replay.LeaderElection) *processes {
	t.Helper()
	p := &processes{t: t, dir: t.TempDir(), le: le, dead: map[*replay.Operator]bool{}}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, op := range p.started {
			if !p.dead[op] {
				op.Stop()
			}
			if t.Failed() {
				t.Logf("the end of %s's log:\n%s", p.names[i], logTail(op.Log, 40))
			}
		}
	})
	return p
}

// start starts a process named name.
func (p *processes) start(name string) *replay.Operator {
	p.t.Helper()
	bin, err := operatorBinary()
	if err != nil {
		p.t.Fatal(err)
	}
	var op *replay.Operator
	if p.launch != nil {
		op, err = p.launch(replay.OperatorOptions{Dir: p.dir, Binary: bin, Name: name, ProxyURL: env.ProxyURL()})
	} else {
		op, err = replay.StartOperator(context.Background(), env.Client, env.Config, replay.OperatorOptions{
			Root: testenv.RepoRoot(), Namespace: operatorNamespace, ServiceAccount: operatorAccount,
			Dir: p.dir, Binary: bin, Name: name, LeaderElection: p.le, ProxyURL: env.ProxyURL()})
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = append(p.started, op)
	p.names = append(p.names, name)
	return op
}

// kill SIGKILLs a process and returns when it is gone; safe from any goroutine.
func (p *processes) kill(op *replay.Operator) time.Time {
	if err := op.Kill(); err != nil {
		p.t.Error(err)
	}
	killed := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead[op] = true
	return killed
}

// stop stops a process gracefully (SIGINT) and returns when it is gone.
func (p *processes) stop(op *replay.Operator) {
	op.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead[op] = true
}

// running reports whether a process started and neither killed nor stopped is left.
func (p *processes) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.started, func(op *replay.Operator) bool { return !p.dead[op] })
}

// logTail returns the last n lines of a file.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// moreAgents creates DaemonSets like telemetry/agent under other names,
// running as the same ServiceAccount (so that one flood is attributed to
// all of them), waits for their pods, and deletes them, pods and all, when
// the test ends. It returns every agent DaemonSet as created, by name.
func moreAgents(t *testing.T, agent *appsv1.DaemonSet, names ...string) map[string]*appsv1.DaemonSet {
	t.Helper()
	ctx := context.Background()
	out := map[string]*appsv1.DaemonSet{agent.Name: agent}
	for _, name := range names {
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: agent.Namespace, Name: name, Labels: map[string]string{"app": name}},
			Spec:       *agent.Spec.DeepCopy(),
		}
		ds.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
		ds.Spec.Template.Labels = map[string]string{"app": name}
		if err := env.Client.Create(ctx, ds); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteAgent(t, ds) })
		created := &appsv1.DaemonSet{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ds), created); err != nil {
			t.Fatal(err)
		}
		out[name] = created
	}
	for name := range out {
		env.Eventually(t, "the DaemonSet controller creates a pod per node for "+name, podsOf(name, harness.NodeCount))
	}
	return out
}

// deleteAgent deletes a DaemonSet and waits until it and its pods are gone,
// so that the next test counts only telemetry/agent's pods.
func deleteAgent(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	ctx := context.Background()
	err := env.Client.Delete(ctx, ds, client.PropagationPolicy(metav1.DeletePropagationForeground))
	if client.IgnoreNotFound(err) != nil {
		t.Error(err)
		return
	}
	env.Eventually(t, "DaemonSet "+ds.Name+" and its pods are gone", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ds), &appsv1.DaemonSet{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%w)", err)
		}
		return podsOf(ds.Name, 0)()
	})
}

// podsOf checks that a telemetry DaemonSet has n pods not being deleted.
func podsOf(name string, n int) func() error {
	return func() error {
		pods := &corev1.PodList{}
		if err := env.Client.List(context.Background(), pods, client.InNamespace("telemetry"),
			client.MatchingLabels{"app": name}); err != nil {
			return err
		}
		alive := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp.IsZero() {
				alive++
			}
		}
		if alive != n {
			return fmt.Errorf("%s has %d pods, want %d", name, alive, n)
		}
		return nil
	}
}

// pauseRecord is what one write left of a DaemonSet's pause record.
type pauseRecord struct {
	// seen is when the watch delivered the write.
	seen time.Time
	// pausedBy is the policy that paused it; empty once restored.
	pausedBy    string
	pausedAt    string
	attempt     int
	wave        int
	waveStarted time.Time
	nextRestore time.Time
	// restoredAt is when the policy's last restore completed, once it did.
	restoredAt time.Time
	// loadshed are the loadshed.io/ annotations, and scheduling the pod
	// template's nodeSelector and affinity.
	loadshed   map[string]string
	scheduling shed.Scheduling
}

func recordOf(ds *appsv1.DaemonSet, policyName string) (pauseRecord, error) {
	r := pauseRecord{pausedBy: shed.PausedBy(ds), pausedAt: ds.Annotations[v1alpha1.AnnotationPausedAt],
		loadshed: map[string]string{}, scheduling: shed.Scheduling{NodeSelector: ds.Spec.Template.Spec.NodeSelector,
			Affinity: ds.Spec.Template.Spec.Affinity}}
	for k, v := range ds.Annotations {
		if strings.HasPrefix(k, "loadshed.io/") {
			r.loadshed[k] = v
		}
	}
	if r.pausedBy != "" {
		p, err := shed.ReadPause(ds)
		if err != nil {
			return r, err
		}
		r.attempt, r.wave, r.waveStarted, r.nextRestore = p.Attempt, p.Wave, p.WaveStarted, p.NextRestore
	}
	if last, ok := shed.ReadRestoration(ds, policyName); ok {
		r.restoredAt = last.At
	}
	return r, nil
}

// same reports whether two records say the same (seen aside).
func (r pauseRecord) same(o pauseRecord) bool {
	return r.pausedBy == o.pausedBy && r.pausedAt == o.pausedAt && r.attempt == o.attempt && r.wave == o.wave &&
		r.waveStarted.Equal(o.waveStarted) && r.nextRestore.Equal(o.nextRestore) && r.restoredAt.Equal(o.restoredAt) &&
		equality.Semantic.DeepEqual(r.loadshed, o.loadshed) && equality.Semantic.DeepEqual(r.scheduling, o.scheduling)
}

func (r pauseRecord) String() string {
	switch {
	case r.pausedBy != "":
		return fmt.Sprintf("wave %d (started %s, attempt %d)", r.wave, r.waveStarted.Format(time.TimeOnly), r.attempt)
	case !r.restoredAt.IsZero():
		return "restored at " + r.restoredAt.Format(time.TimeOnly)
	case len(r.loadshed) > 0:
		return fmt.Sprintf("not paused, with %v", r.loadshed)
	}
	return "not paused"
}

// pauseHistory records, from a watch of the telemetry DaemonSets, every
// write that changed one's pause record: a watch misses no write, where
// polling would miss a wave that came and went between two polls.
type pauseHistory struct {
	mu     sync.Mutex
	byName map[string][]pauseRecord
	hooks  []*hook
	errs   []error
	cancel context.CancelFunc
	done   chan struct{}
}

// hook runs do, once, on the first record for which when is true.
type hook struct {
	when func(name string, r pauseRecord) bool
	do   func()
	ran  chan struct{}
}

// watchPauses records the pause records of the telemetry DaemonSets as
// policyName writes them, from now until the test ends.
func watchPauses(t *testing.T, policyName string) *pauseHistory {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	dss := cs.AppsV1().DaemonSets("telemetry")
	ctx, cancel := context.WithCancel(context.Background())
	list, err := dss.List(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &pauseHistory{byName: map[string][]pauseRecord{}, cancel: cancel, done: make(chan struct{})}
	for i := range list.Items {
		h.add(&list.Items[i], policyName)
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return dss.Watch(ctx, opts)
		}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(h.done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if ds, isDS := ev.Object.(*appsv1.DaemonSet); isDS && ev.Type != watch.Deleted {
					h.add(ds, policyName)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-h.done
		for _, err := range h.errs {
			t.Error(err)
		}
	})
	return h
}

// add records a DaemonSet's record if it changed, and runs the hooks it
// satisfies, on the watch's goroutine: a hook that kills the operator does
// so within milliseconds of the write.
func (h *pauseHistory) add(ds *appsv1.DaemonSet, policyName string) {
	r, err := recordOf(ds, policyName)
	r.seen = time.Now()
	h.mu.Lock()
	if err != nil {
		h.errs = append(h.errs, fmt.Errorf("reading %s's pause record: %w", ds.Name, err))
	}
	recs := h.byName[ds.Name]
	if len(recs) > 0 && recs[len(recs)-1].same(r) {
		h.mu.Unlock()
		return
	}
	h.byName[ds.Name] = append(recs, r)
	var due []*hook
	h.hooks = slices.DeleteFunc(h.hooks, func(k *hook) bool {
		if k.when(ds.Name, r) {
			due = append(due, k)
			return true
		}
		return false
	})
	h.mu.Unlock()
	for _, k := range due {
		k.do()
		close(k.ran)
	}
}

// on runs do on the watch's goroutine as soon as a record satisfies when
// (the latest records are checked at once), and returns a channel closed
// once it ran.
func (h *pauseHistory) on(when func(name string, r pauseRecord) bool, do func()) <-chan struct{} {
	k := &hook{when: when, do: do, ran: make(chan struct{})}
	h.mu.Lock()
	for name, recs := range h.byName {
		if len(recs) > 0 && when(name, recs[len(recs)-1]) {
			h.mu.Unlock()
			do()
			close(k.ran)
			return k.ran
		}
	}
	h.hooks = append(h.hooks, k)
	h.mu.Unlock()
	return k.ran
}

// records returns a DaemonSet's records so far, oldest first.
func (h *pauseHistory) records(name string) []pauseRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.byName[name])
}

// latest returns a DaemonSet's latest record.
func (h *pauseHistory) latest(name string) pauseRecord {
	recs := h.records(name)
	if len(recs) == 0 {
		return pauseRecord{}
	}
	return recs[len(recs)-1]
}

// outage is a time the operator was not running: from the kill until a new
// process started (or, with a standby replica, took the lead).
type outage struct {
	killed, back time.Time
}

// checkRestore checks a DaemonSet's history through a complete restore: it
// was paused, then went through each wave in turn, one step at a time,
// and was restored, with nothing going back, skipped or started again,
// none of it rewritten with a new start. Each wave came a probation after
// the one before, the first no earlier than the recorded next restore;
// and the first step after each outage came at least calm (the shorter of
// stableFor and probation) after the operator was back: time in which no
// operator read any signal counts for nothing.
func checkRestore(t *testing.T, name string, recs []pauseRecord, waves int, probation, calm time.Duration,
	outages []outage) {
	t.Helper()
	steps := slices.DeleteFunc(slices.Clone(recs), func(r pauseRecord) bool {
		return r.pausedBy == "" && r.restoredAt.IsZero()
	})
	path := make([]string, 0, len(steps))
	for _, r := range steps {
		path = append(path, r.String())
	}
	if len(steps) == 0 || steps[0].pausedBy == "" || steps[0].wave != 0 {
		t.Errorf("%s: the history does not start with the pause: %v", name, path)
		return
	}
	if last := steps[len(steps)-1]; last.pausedBy != "" {
		t.Errorf("%s: not restored: %v", name, path)
	}
	for i := 1; i < len(steps); i++ {
		prev, cur := steps[i-1], steps[i]
		var at time.Time
		switch {
		case cur.pausedBy == "" && prev.pausedBy != "":
			at = cur.restoredAt
			if prev.wave != waves {
				t.Errorf("%s: restored from wave %d of %d: %v", name, prev.wave, waves, path)
			}
			if at.Before(prev.waveStarted.Add(probation)) {
				t.Errorf("%s: restored at %v, within the probation of wave %d (started %v)", name, at, prev.wave, prev.waveStarted)
			}
		case cur.pausedBy == "":
			t.Errorf("%s: written again after its restore: %v", name, path)
			continue
		case cur.pausedAt != prev.pausedAt || cur.attempt != prev.attempt:
			t.Errorf("%s: paused again (a new pause or attempt) without a flood: %v", name, path)
			continue
		case cur.wave != prev.wave+1:
			t.Errorf("%s: went from wave %d to wave %d: %v", name, prev.wave, cur.wave, path)
			continue
		case prev.wave == 0:
			at = cur.waveStarted
			if at.Before(prev.nextRestore) {
				t.Errorf("%s: the restore started at %v, before its backoff allowed (%v)", name, at, prev.nextRestore)
			}
		default:
			at = cur.waveStarted
			if at.Before(prev.waveStarted.Add(probation)) {
				t.Errorf("%s: wave %d started at %v, within the probation of wave %d (started %v)", name, cur.wave, at,
					prev.wave, prev.waveStarted)
			}
		}
		for _, o := range outages {
			// The first step written after the operator came back (wave
			// starts are recorded to the second).
			if prev.seen.Before(o.back) && cur.seen.After(o.back) && at.Before(o.back.Add(calm-time.Second)) {
				t.Errorf("%s: %s, at %s, came within %v of the operator being back at %s: the time it was down "+
					"counted as calm", name, cur, at.Format(time.TimeOnly), calm, o.back.Format("15:04:05.000"))
			}
		}
	}
}

// snapshot is what loadshed writes of each telemetry DaemonSet: its
// loadshed.io/ annotations and the scheduling of its pod template.
func snapshot(t *testing.T) map[string]pauseRecord {
	t.Helper()
	dss := &appsv1.DaemonSetList{}
	if err := env.Client.List(context.Background(), dss, client.InNamespace("telemetry")); err != nil {
		t.Fatal(err)
	}
	out := map[string]pauseRecord{}
	for i := range dss.Items {
		r, err := recordOf(&dss.Items[i], "")
		if err != nil {
			t.Fatal(err)
		}
		out[dss.Items[i].Name] = r
	}
	return out
}

// blind keeps the operator down for d, and checks that nothing of
// loadshed's changed on the DaemonSets meanwhile.
func blind(t *testing.T, d time.Duration) {
	t.Helper()
	before := snapshot(t)
	time.Sleep(d)
	after := snapshot(t)
	for name, b := range before {
		if a := after[name]; !a.same(b) {
			t.Errorf("%s changed while no operator ran: %s, then %s", name, b, a)
		}
	}
}

// checkNothingLeft checks that, once policyName is gone, nothing of its is
// left: no throttle FlowSchema or priority level, no loadshed.io/
// annotation, no pause, on any of the DaemonSets; and that each
// DaemonSet's pod template is the one it had before the pause.
func checkNothingLeft(t *testing.T, policyName string, originals map[string]*appsv1.DaemonSet) {
	t.Helper()
	ctx := context.Background()
	err := env.Client.Get(ctx, client.ObjectKey{Name: policyName}, &v1alpha1.LoadShedPolicy{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the policy is still there (%v)", err)
	}
	if left := env.Owned(t); len(left) > 0 {
		t.Errorf("left after the policy was deleted: %v", left)
	}
	fss := &flowcontrolv1.FlowSchemaList{}
	plcs := &flowcontrolv1.PriorityLevelConfigurationList{}
	for _, l := range []client.ObjectList{fss, plcs} {
		if err := env.Client.List(ctx, l, client.MatchingLabels{v1alpha1.LabelPolicy: policyName}); err != nil {
			t.Fatal(err)
		}
	}
	if len(fss.Items)+len(plcs.Items) > 0 {
		t.Errorf("%d FlowSchemas and %d priority levels of the policy left", len(fss.Items), len(plcs.Items))
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: shed.ThrottleLevelName(policyName)},
		&flowcontrolv1.PriorityLevelConfiguration{}); !apierrors.IsNotFound(err) {
		t.Errorf("the policy's throttling priority level is still there (%v)", err)
	}
	for name, original := range originals {
		got := &appsv1.DaemonSet{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(original), got); err != nil {
			t.Fatal(err)
		}
		checkTemplate(t, original, got)
		for k := range got.Annotations {
			if strings.HasPrefix(k, "loadshed.io/") {
				t.Errorf("%s keeps annotation %s=%s", name, k, got.Annotations[k])
			}
		}
	}
}

// checkTemplate checks that a DaemonSet's pod template is the original one:
// its scheduling first, which the pause and the waves change, then all of it.
func checkTemplate(t *testing.T, original, got *appsv1.DaemonSet) {
	t.Helper()
	o, g := original.Spec.Template.Spec, got.Spec.Template.Spec
	switch {
	case !equality.Semantic.DeepEqual(o.NodeSelector, g.NodeSelector) ||
		!equality.Semantic.DeepEqual(o.Affinity, g.Affinity):
		t.Errorf("%s: scheduling %v %+v, want the original %v %+v", got.Name, g.NodeSelector, g.Affinity,
			o.NodeSelector, o.Affinity)
	case !harness.SameTemplate(original, got):
		t.Errorf("%s: the pod template differs from the original", got.Name)
	}
}

// waitPolicyGone waits until a policy, deleted, is gone.
func waitPolicyGone(t *testing.T, name string) {
	t.Helper()
	env.Eventually(t, "the policy "+name+" is gone", func() error {
		err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &v1alpha1.LoadShedPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return errors.Join(errors.New("still there"), err)
	})
}

// logFile names a process's log for messages.
func logFile(op *replay.Operator) string { return filepath.Base(op.Log) }
