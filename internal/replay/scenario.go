package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/cpunoise"
	"github.com/loadshed/loadshed/internal/localcluster"
	"github.com/loadshed/loadshed/internal/promserver"
	loadshedscheme "github.com/loadshed/loadshed/internal/scheme"
)

// Phases of the timeline.
const (
	// PhaseQuiet: the agents behave.
	PhaseQuiet = "quiet"
	// PhaseFlood: the bad configuration is out; every agent LISTs
	// everything.
	PhaseFlood = "flood"
	// PhaseRelapse: still misconfigured, after loadshed began a restore.
	PhaseRelapse = "relapse"
	// PhaseFixed: the configuration fix is out; the agents behave again.
	PhaseFixed = "fixed"
	// PhaseBurst: a benign burst of load is under way; the agents behave.
	PhaseBurst = "burst"
	// PhaseTail: after a benign burst.
	PhaseTail = "tail"
)

// Replay's own timeline events (the operator's are its Event reasons).
const (
	EventFloodStarted = "FloodStarted"
	EventConfigFixed  = "ConfigFixed"
)

// Config is one scenario: the cluster, the load and the timeline.
type Config struct {
	// Name names the scenario in the report.
	Name string
	// Assets is the directory of the control plane's binaries; Root the
	// repository checkout (CRDs, RBAC and cmd/manager come from it).
	Assets, Root string
	// Dir receives the components' and the operator's logs.
	Dir string
	// APIServers is how many kube-apiservers run on the cluster's etcd (one
	// when zero); the agents, the innocent clients and the replay's own
	// readings use the first, and the operator scrapes each.
	APIServers int
	// Nodes is how many fake Nodes (and telemetry agents) there are.
	Nodes int
	// ConfigMaps of ConfigMapBytes each make every cluster-wide LIST
	// expensive, as a real cluster's objects do.
	ConfigMaps, ConfigMapBytes int
	// AgentRate is how many LISTs a misconfigured agent sends per second,
	// AgentParallel how many it has in flight at most.
	AgentRate     float64
	AgentParallel int
	// Quiet is before the flood; FixAfter from the flood's start to the
	// configuration fix; Tail from the fix to the end.
	Quiet, FixAfter, Tail time.Duration
	// HoldFixForRelapse holds the fix past FixAfter until the operator has
	// paused the DaemonSet again after a restore, for at most another
	// FixAfter: a test about the relapse always sees one. The demo keeps
	// to its set times.
	HoldFixForRelapse bool
	// Innocent is how each innocent client sends its requests.
	Innocent Pace
	// Policy, when set, is created with the operator running before the
	// timeline starts; the baseline has none (and no operator).
	Policy *v1alpha1.LoadShedPolicy
	// Shadow, when set (with Policy), is a second policy created beside
	// Policy, such as a dryRun twin of it that reads Prometheus: its
	// trigger events are in Result.ShadowEvents, to compare with Policy's.
	Shadow *v1alpha1.LoadShedPolicy
	// Prometheus, when set, runs a Prometheus server that scrapes every
	// kube-apiserver of the cluster from before the policies are created
	// (Result.Prometheus). A policy or shadow with the Prometheus source is
	// pointed at it: its URL, and its CA in the Secret PrometheusCASecret of
	// the operator's namespace. A scenario that has a policy read
	// Prometheus needs it; one that compares with such a scenario runs it
	// too, so that both see the same machine.
	Prometheus *Prometheus
	// Burst, when set, plays a benign burst of load instead of the flood:
	// the agents behave all along, the burst starts at the end of the
	// quiet phase, its phase lasts until it is done but at least BurstFor,
	// and Tail follows it. FixAfter and HoldFixForRelapse do not apply.
	Burst Burst
	// BurstFor is the burst phase's least length; DefaultBurstFor when
	// unset.
	BurstFor time.Duration
	// CPUNoise is how many cores' worth of CPU a competing process burns
	// during the timeline (1.0 is one core); 0 for none.
	CPUNoise float64
	// Progress receives a line per second and the operator's actions as
	// they happen; nil for silence.
	Progress io.Writer
	// Keep leaves the cluster (and the operator) running when Run returns;
	// Result.Stop ends them.
	Keep bool
	// OnCluster is called with the admin kubeconfig's path once the
	// cluster is up.
	OnCluster func(kubeconfig string)
}

// Result is a scenario's timeline and what the replay checked on the way.
type Result struct {
	Scenario
	// TemplateBefore is the telemetry DaemonSet's pod template before the
	// flood; TemplateAfter at the end (after the policy was deleted).
	TemplateBefore, TemplateAfter corev1.PodTemplateSpec
	// Pauses are the pauses of the telemetry DaemonSet, in order.
	Pauses []PauseRecord
	// Offenders is the policy's status.offenders when it first named them
	// while triggered or shedding.
	Offenders []v1alpha1.OffenderStatus
	// PausedAtEnd says whether the DaemonSet was still paused when the
	// timeline ended.
	PausedAtEnd bool
	// Leftovers is what loadshed left in the cluster after the policy was
	// deleted.
	Leftovers []string
	// Agents is what the telemetry agents did.
	Agents Counts
	// Stop ends the cluster and the operator when Config.Keep was set.
	Stop func()
	// Started is when the timeline began (its t=0).
	Started time.Time
	// ShadowEvents are Config.Shadow's events, as Events are Policy's.
	ShadowEvents []Event
	// Triggers and ShadowTriggers are when the policy's and the shadow's
	// triggers started and stopped firing, as TriggerFired and
	// TriggerCleared Events read from their status each second
	// (triggerWatcher): unlike their Events, none is lost.
	Triggers, ShadowTriggers []Event
	// Prometheus is the scenario's Prometheus (Config.Prometheus). It
	// outlives Run, Keep or not, so that the scenario's whole time range
	// can be queried afterwards (its targets are gone once the cluster is:
	// they are down from then on); the caller stops it. Run stops it when
	// it fails.
	Prometheus *promserver.Server
}

// Run runs one scenario end to end: it starts a local cluster, builds the
// world (nodes, background objects, the telemetry DaemonSet), starts the
// operator and the policy if there is one, plays the timeline while
// recording a sample per second, then deletes the policy and checks what
// is left. It stops everything it started unless cfg.Keep.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	if cfg.BurstFor <= 0 {
		cfg.BurstFor = DefaultBurstFor
	}
	if cfg.Shadow != nil && cfg.Policy == nil {
		return nil, errors.New("a shadow policy needs a policy: the operator runs only with one")
	}
	r := &runner{cfg: cfg, res: &Result{Scenario: Scenario{Name: cfg.Name, FloodStart: cfg.Quiet}}}
	if cfg.Burst != nil {
		r.res.Burst = cfg.Burst.Name()
	}
	defer func() {
		if err != nil || !cfg.Keep {
			r.stopAll()
		} else {
			r.res.Stop = r.stopAll
		}
		if err != nil && r.res.Prometheus != nil {
			r.res.Prometheus.Stop()
		}
	}()
	if err := r.setUp(ctx); err != nil {
		return nil, err
	}
	if err := r.play(ctx); err != nil {
		return nil, err
	}
	if err := r.tearDown(ctx); err != nil {
		return nil, err
	}
	return r.res, nil
}

// runner holds one scenario's run.
type runner struct {
	cfg Config
	res *Result
	// triggers and shadowTriggers read the policies' trigger transitions
	// from their status (observe's goroutine only).
	triggers, shadowTriggers *triggerWatcher
	stops                    []func()
	cluster                  *localcluster.Cluster
	admin                    client.Client
	cs                       kubernetes.Interface
	metrics                  *metricsReader
	op                       *Operator
	agents                   *Agents
	// noise is the CPU noise's binary, when there is noise.
	noise string
	// opRequests totals the operator's requests across API server restarts.
	opRequests counter
	// counted is what the agents had done at the last sample.
	counted Counts
}

func (r *runner) stopAll() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
	r.stops = nil
}

func (r *runner) say(format string, args ...any) {
	if r.cfg.Progress != nil {
		_, _ = fmt.Fprintf(r.cfg.Progress, "[%-8s] "+format+"\n", append([]any{r.cfg.Name}, args...)...)
	}
}

// setUp starts the cluster and builds the world, up to the quiet phase.
func (r *runner) setUp(ctx context.Context) error {
	cfg := r.cfg
	began := time.Now()
	if err := r.startCluster(); err != nil {
		return err
	}
	c := r.cluster
	if cfg.Prometheus != nil {
		if err := r.startPrometheus(ctx); err != nil {
			return err
		}
	}
	r.say("control plane up in %v; adding %d nodes and %d ConfigMaps of %d bytes",
		time.Since(began).Round(100*time.Millisecond), cfg.Nodes, cfg.ConfigMaps, cfg.ConfigMapBytes)
	if err := c.AddNodes(ctx, cfg.Nodes); err != nil {
		return fmt.Errorf("adding nodes: %w", err)
	}
	if err := SeedConfigMaps(ctx, r.cs, backgroundNamespace, cfg.ConfigMaps, cfg.ConfigMapBytes); err != nil {
		return err
	}
	if err := createAll(ctx, r.admin, worldObjects()); err != nil {
		return err
	}
	if err := r.waitFor(ctx, fmt.Sprintf("%d telemetry pods Running", cfg.Nodes), 3*time.Minute, r.agentPodsRunning); err != nil {
		return err
	}
	ds, err := r.cs.AppsV1().DaemonSets(TelemetryNamespace).Get(ctx, TelemetryName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	r.res.TemplateBefore = *ds.Spec.Template.DeepCopy()
	if err := r.prepareExtras(ctx); err != nil {
		return err
	}
	if cfg.Policy != nil {
		if err := r.startOperator(ctx); err != nil {
			return err
		}
	}
	r.agents = NewAgents(r.cs, c.Config, AgentOptions{Namespace: TelemetryNamespace,
		Selector: metav1.FormatLabelSelector(ds.Spec.Selector), ServiceAccount: TelemetryName,
		Work: Work{Path: normalPath, Rate: normalRate}, Parallel: cfg.AgentParallel})
	r.say("world ready in %v: %d nodes, a telemetry agent on each", time.Since(began).Round(100*time.Millisecond), cfg.Nodes)
	return nil
}

// startCluster starts the cluster and the replay's admin clients.
func (r *runner) startCluster() error {
	c, err := localcluster.Start(localcluster.Options{
		Assets:     r.cfg.Assets,
		CRDs:       []string{filepath.Join(r.cfg.Root, "config", "crd", "bases")},
		Components: []string{"kube-controller-manager", "kube-scheduler", "kwok"},
		Logs:       r.cfg.Dir,
		APIServers: r.cfg.APIServers,
	})
	if err != nil {
		return err
	}
	r.cluster = c
	r.stops = append(r.stops, func() {
		if err := c.Stop(); err != nil {
			r.say("stopping the cluster: %v", err)
		}
	})
	if r.cfg.OnCluster != nil {
		r.cfg.OnCluster(c.Kubeconfig())
	}
	scheme, err := loadshedscheme.New()
	if err != nil {
		return err
	}
	if r.admin, err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if r.cs, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	r.metrics, err = newMetricsReader(c.Config)
	return err
}

// prepareExtras builds what the burst needs, and the CPU noise's binary.
func (r *runner) prepareExtras(ctx context.Context) error {
	if r.cfg.Burst != nil {
		if err := r.cfg.Burst.Prepare(ctx, r.burstEnv()); err != nil {
			return fmt.Errorf("preparing the %s burst: %w", r.cfg.Burst.Name(), err)
		}
	}
	if r.cfg.CPUNoise > 0 {
		bin, err := cpunoise.Build(ctx, r.cfg.Root, r.cfg.Dir)
		if err != nil {
			return err
		}
		r.noise = bin
	}
	return nil
}

// burstEnv is what the scenario's burst works with.
func (r *runner) burstEnv() *BurstEnv {
	return &BurstEnv{Admin: r.cs, Client: r.admin, Base: r.cluster.Config, Cluster: r.cluster,
		Nodes: r.cfg.Nodes, For: r.cfg.BurstFor, Say: r.say}
}

func (r *runner) agentPodsRunning(ctx context.Context) (bool, error) {
	running, _, err := localcluster.RunningPods(ctx, r.cs, TelemetryNamespace)
	if err != nil {
		return false, nil
	}
	return running >= r.cfg.Nodes, nil
}

func (r *runner) waitFor(ctx context.Context, what string, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, cond); err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// startOperator runs the operator as its own process and creates the
// policy (and the shadow), and waits until each reads its signals.
func (r *runner) startOperator(ctx context.Context) error {
	op, err := StartOperator(ctx, r.admin, r.cluster.Config, OperatorOptions{Root: r.cfg.Root,
		Namespace: OperatorNamespace, ServiceAccount: OperatorServiceAccount, Dir: r.cfg.Dir, ProxyURL: r.cluster.ProxyURL()})
	if err != nil {
		return err
	}
	r.op = op
	r.stops = append(r.stops, op.Stop)
	return r.createPolicies(ctx)
}

// snapshot is the latest of what the observer read.
type snapshot struct {
	mu       sync.Mutex
	metrics  apiMetrics
	state    clusterState
	worst    string
	relapsed bool
	repaused bool
}

// observe reads the API server's metrics, loadshed's objects, the policy
// and its Events every second until ctx is done.
func (r *runner) observe(ctx context.Context, start time.Time, snap *snapshot) {
	var events, shadow *eventWatcher
	r.triggers, r.shadowTriggers = newTriggerWatcher(start), newTriggerWatcher(start)
	if r.cfg.Policy != nil {
		events = newEventWatcher(r.cfg.Policy.Name, start)
	}
	if r.cfg.Shadow != nil {
		shadow = newEventWatcher(r.cfg.Shadow.Name, start)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.observeMetrics(ctx, snap) })
	var pauses pauseTracker
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		o := r.read(readCtx, events, shadow)
		cancel()
		snap.mu.Lock()
		r.note(o, snap, &pauses, start)
		snap.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// observation is one read of loadshed's objects, the policy and its
// Events; what failed to read is left out.
type observation struct {
	state   clusterState
	stateOK bool
	policy  *v1alpha1.LoadShedPolicy
	events  []Event
	// shadow and shadowEvents are the shadow policy's.
	shadow       *v1alpha1.LoadShedPolicy
	shadowEvents []Event
}

func (r *runner) read(ctx context.Context, events, shadow *eventWatcher) observation {
	var o observation
	var err error
	o.state, err = readState(ctx, r.admin)
	o.stateOK = err == nil
	if shadow != nil {
		o.shadowEvents, _ = shadow.poll(ctx, r.admin)
		p := &v1alpha1.LoadShedPolicy{}
		if err := r.admin.Get(ctx, client.ObjectKeyFromObject(r.cfg.Shadow), p); err == nil {
			o.shadow = p
		}
	}
	if events != nil {
		o.events, _ = events.poll(ctx, r.admin)
		p := &v1alpha1.LoadShedPolicy{}
		if err := r.admin.Get(ctx, client.ObjectKeyFromObject(r.cfg.Policy), p); err == nil {
			o.policy = p
		}
	}
	return o
}

// pauseTracker tells a new pause from one already seen.
type pauseTracker struct {
	wasPaused bool
	lastNext  time.Time
}

// note records an observation into snap and the result; snap is locked.
func (r *runner) note(o observation, snap *snapshot, pauses *pauseTracker, start time.Time) {
	if o.stateOK {
		st := o.state
		snap.state = st
		// A pause begins when the DaemonSet becomes paused, or when a
		// relapse sets a new next restore time.
		paused := st.Paused && st.Wave == 0
		if paused && (!pauses.wasPaused || !st.nextRestore.Equal(pauses.lastNext)) {
			rec := PauseRecord{At: time.Since(start), Attempt: st.attempt}
			if !st.nextRestore.IsZero() {
				rec.Backoff = max(time.Until(st.nextRestore).Round(time.Second), 0)
			}
			r.res.Pauses = append(r.res.Pauses, rec)
		}
		pauses.wasPaused, pauses.lastNext = paused, st.nextRestore
	}
	if p := o.policy; p != nil {
		snap.worst = p.Status.WorstSignal
		if len(r.res.Offenders) == 0 && len(p.Status.Offenders) > 0 &&
			(p.Status.Phase == v1alpha1.PhaseTriggered || p.Status.Phase == v1alpha1.PhaseShedding) {
			r.res.Offenders = p.Status.Offenders
		}
	}
	for _, e := range o.events {
		switch e.Reason {
		case v1alpha1.EventRestoreStarted:
			snap.relapsed = true
		case v1alpha1.EventRepaused:
			snap.repaused = true
		}
		r.res.Events = append(r.res.Events, e)
		r.say("t=%4ds %-16s %s", int(e.At/time.Second), e.Reason, e.Note)
	}
	for _, e := range o.shadowEvents {
		r.res.ShadowEvents = append(r.res.ShadowEvents, e)
		r.say("t=%4ds shadow %-16s %s", int(e.At/time.Second), e.Reason, e.Note)
	}
	if o.policy != nil {
		r.res.Triggers = append(r.res.Triggers, r.triggers.note(o.policy)...)
	}
	if o.shadow != nil {
		r.res.ShadowTriggers = append(r.res.ShadowTriggers, r.shadowTriggers.note(o.shadow)...)
	}
}

// observeMetrics reads the API server's metrics about every second until
// ctx is done. An overloaded API server may take several seconds to answer:
// the last value read stands until then.
func (r *runner) observeMetrics(ctx context.Context, snap *snapshot) {
	for ctx.Err() == nil {
		next := time.Now().Add(time.Second)
		readCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := r.metrics.read(readCtx)
		cancel()
		if err == nil {
			snap.mu.Lock()
			snap.metrics = m
			r.opRequests.observe(m.OperatorRequests)
			snap.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
	}
}

// play runs the timeline: quiet, then the flood (and relapse) and the fix,
// or a burst; then the tail. The agents, the innocent clients, the
// observer and the CPU noise run all along.
func (r *runner) play(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The timeline starts with every agent running.
	wg.Go(func() { r.agents.Run(runCtx) })
	err := r.waitFor(ctx, "an agent per pod", time.Minute, func(context.Context) (bool, error) {
		return r.agents.Counts().Running >= int64(r.cfg.Nodes), nil
	})
	if err != nil {
		return err
	}
	if r.noise != "" {
		noise, err := cpunoise.Start(runCtx, r.noise, r.cfg.CPUNoise)
		if err != nil {
			return err
		}
		defer noise.Stop()
	}
	start := time.Now()
	r.res.Started = start
	rec := NewRecorder(start)
	innocentErrs := make(chan error, 2)
	wg.Go(func() {
		innocentErrs <- RunDNSLike(runCtx, r.cs, r.cluster.Config, dnsServiceAccount, r.cfg.Innocent, rec)
	})
	wg.Go(func() {
		innocentErrs <- RunControllerLike(runCtx, r.cs, r.cluster.Config, shopNamespace, controllerServiceAccount, r.cfg.Innocent, rec)
	})
	snap := &snapshot{}
	wg.Go(func() { r.observe(runCtx, start, snap) })
	ld := r.newLoad(runCtx, snap)
	defer ld.stop()
	r.counted = r.agents.Counts()
	if err := r.tick(ctx, start, ld, snap, rec, innocentErrs); err != nil {
		return err
	}
	ld.stop()
	cancel()
	wg.Wait()
	r.finish(rec, snap)
	return nil
}

// tick steps the load and records a sample every second until the load
// says the timeline is over.
func (r *runner) tick(ctx context.Context, start time.Time, ld load, snap *snapshot, rec *Recorder, innocentErrs <-chan error) error {
	for s := 0; ; s++ {
		at := time.Duration(s) * time.Second
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-innocentErrs:
			if err != nil {
				return fmt.Errorf("an innocent client failed to start: %w", err)
			}
		case <-time.After(time.Until(start.Add(at))):
		}
		phase, done, err := ld.step(ctx, at)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		r.record(s, phase, snap, rec)
	}
}

// record appends second s's sample, gives the second before it what the
// agents did in it, and prints the progress line.
func (r *runner) record(s int, phase string, snap *snapshot, rec *Recorder) {
	at := time.Duration(s) * time.Second
	n := r.agents.Counts()
	r.countAgents(n)
	snap.mu.Lock()
	sample := Sample{At: at, Phase: phase, Inflight: snap.metrics.Inflight, Paused: b2i(snap.state.Paused),
		Throttled: snap.state.Throttled, AgentsRunning: int(n.Running)}
	worst := snap.worst
	snap.mu.Unlock()
	r.res.Samples = append(r.res.Samples, sample)
	prev, last := Second{}, Sample{}
	if s > 0 {
		prev = rec.Second(s - 1)
		last = r.res.Samples[s-1]
	}
	r.say("t=%4ds %-7s inflight %4.0f  innocent p99 %6s err %d/%-3d  paused %d throttled %d  agents %d LIST/s %d of %d  %s",
		s, sample.Phase, sample.Inflight, prev.P99.Round(time.Millisecond), prev.Errors, prev.Requests,
		sample.Paused, sample.Throttled, n.Running, last.AgentLists, last.AgentListAttempts, worst)
}

// countAgents gives the last sample what the agents did since it began.
func (r *runner) countAgents(n Counts) {
	if k := len(r.res.Samples); k > 0 {
		x := &r.res.Samples[k-1]
		x.AgentListAttempts = n.ListAttempts - r.counted.ListAttempts
		x.AgentLists, x.AgentBytes = n.Lists-r.counted.Lists, n.Bytes-r.counted.Bytes
	}
	r.counted = n
}

// finish gives the samples the innocent clients' figures and records what
// the timeline ended with.
func (r *runner) finish(rec *Recorder, snap *snapshot) {
	r.res.Agents = r.agents.Counts()
	r.countAgents(r.res.Agents)
	for i, sec := range rec.Seconds() {
		if i < len(r.res.Samples) {
			x := &r.res.Samples[i]
			x.InnocentRequests, x.InnocentErrors, x.InnocentP99, x.InnocentLatencies = sec.Requests, sec.Errors, sec.P99, sec.Latencies
		}
	}
	r.res.PausedAtEnd = snap.state.Paused
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (r *runner) addEvent(snap *snapshot, at time.Duration, reason, note string) {
	snap.mu.Lock()
	defer snap.mu.Unlock()
	r.res.Events = append(r.res.Events, Event{At: at, Reason: reason, Note: note})
	r.say("t=%4ds %-16s %s", int(at/time.Second), reason, note)
}

// configure rolls a configuration out to the agents: the ConfigMap they
// mount says it for whoever looks with kubectl, and the agents (which have
// no kubelet to sync the volume) are told directly.
func (r *runner) configure(ctx context.Context, mode string, w Work) error {
	cm, err := r.cs.CoreV1().ConfigMaps(TelemetryNamespace).Get(ctx, telemetryConfig, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the agents' configuration: %w", err)
	}
	cm.Data = map[string]string{"mode": mode}
	if _, err := r.cs.CoreV1().ConfigMaps(TelemetryNamespace).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("rolling out the agents' configuration: %w", err)
	}
	r.agents.Set(w)
	return nil
}

// deletePolicies deletes the policy and the shadow, if any, and waits for
// their finalizers to undo what they did.
func (r *runner) deletePolicies(ctx context.Context) error {
	policies := []*v1alpha1.LoadShedPolicy{r.cfg.Policy.DeepCopy()}
	if r.cfg.Shadow != nil {
		policies = append(policies, r.cfg.Shadow.DeepCopy())
	}
	for _, p := range policies {
		if err := r.admin.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting policy %s: %w", p.Name, err)
		}
	}
	for _, p := range policies {
		err := r.waitFor(ctx, fmt.Sprintf("the finalizer of policy %s", p.Name), 2*time.Minute, func(ctx context.Context) (bool, error) {
			err := r.admin.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.LoadShedPolicy{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return err
		}
	}
	r.say("policy deleted")
	return nil
}

// leftoversGrace is how long, after the policy is gone, loadshed has to
// remove the rest of what it made.
const leftoversGrace = 30 * time.Second

// tearDown records the operator's figures, deletes the policy, waits for
// its finalizer to undo everything, and records what is left.
func (r *runner) tearDown(ctx context.Context) error {
	if r.op != nil {
		stats := &OperatorStats{}
		if m, err := r.metrics.read(ctx); err == nil {
			r.opRequests.observe(m.OperatorRequests)
		}
		stats.Requests = r.opRequests.total()
		if rss, err := r.op.PeakRSS(); err == nil {
			stats.PeakRSS = rss
		}
		r.res.Operator = stats
		if err := r.deletePolicies(ctx); err != nil {
			return err
		}
	}
	// What the finalizer removes may take a moment to be gone from the
	// API server's answers.
	var left []string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, leftoversGrace, true, func(ctx context.Context) (bool, error) {
		var err error
		left, err = leftovers(ctx, r.admin)
		return err == nil && len(left) == 0, err
	})
	if err != nil && len(left) == 0 {
		return fmt.Errorf("reading what loadshed left: %w", err)
	}
	r.res.Leftovers = left
	ds, err := r.cs.AppsV1().DaemonSets(TelemetryNamespace).Get(ctx, TelemetryName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	r.res.TemplateAfter = *ds.Spec.Template.DeepCopy()
	return nil
}
