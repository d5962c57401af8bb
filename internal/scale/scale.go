// Package scale measures the operator as it ships, from outside: it starts
// a local kube-apiserver, fills it with a big cluster's Nodes, namespaces
// and DaemonSets, runs the operator's binary as its own process with
// several policies, and, after a warm-up, reports over a quiet window the
// operator's peak memory, CPU, allocations, reconcile durations and the
// requests it sent, by verb and resource (from kube-apiserver's audit log).
package scale

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/procfs"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/localcluster"
	"github.com/loadshed/loadshed/internal/replay"
	loadshedscheme "github.com/loadshed/loadshed/internal/scheme"
)

// Options are the cluster's size and the measurement's timing.
type Options struct {
	// Assets is the directory of the control plane's binaries; Root the
	// repository checkout (the CRD, RBAC, sample policy and cmd/manager).
	Assets, Root string
	// Dir receives the logs, the audit log and the operator's binary.
	Dir string
	// Nodes, Namespaces and DaemonSets (spread over the namespaces) make
	// the cluster; Policies are copies of the sample policy, each selecting
	// its share of the DaemonSets.
	Nodes, Namespaces, DaemonSets, Policies int
	// Interval is every policy's interval.
	Interval time.Duration
	// Warmup runs before the measurement: the operator's caches fill and
	// its first status writes are made.
	Warmup time.Duration
	// Measure is the quiet window measured.
	Measure time.Duration
	// Say reports progress; nil is quiet.
	Say func(format string, args ...any)
}

// Report is what a run measured.
type Report struct {
	Options Options
	// SetUp is how long creating the objects took.
	SetUp time.Duration
	// Took is how long the operator took from its start to every policy
	// being Ready with metrics.
	Ready time.Duration
	// PeakRSS is the operator's VmHWM at the end, RSS its VmRSS, in bytes.
	PeakRSS, RSS int64
	// HeapInuse is the Go heap in use at the end, in bytes.
	HeapInuse float64
	// CPUCores is CPU time over wall time in the window.
	CPUCores float64
	// AllocatedPerSecond is bytes allocated per second; GCsPerMinute the
	// garbage collections.
	AllocatedPerSecond, GCsPerMinute float64
	// ReconcilesPerMinute counts the policy controller's reconciles, also
	// the wake-ups that find a policy not yet due (they read one object
	// from the cache); EvaluationsPerMinute the evaluations of all
	// policies, with their mean and 99th percentile durations (the p99 is
	// the upper bound of its histogram bucket).
	ReconcilesPerMinute, EvaluationsPerMinute float64
	EvaluationMean, EvaluationP99             time.Duration
	// Requests are the operator's requests per minute, by verb and
	// resource, most first.
	Requests []RequestRate
	// LoadshedFlowSchemas are the FlowSchemas loadshed owns at the end.
	LoadshedFlowSchemas int
}

// Run builds the cluster, runs the operator and measures it.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Say == nil {
		opts.Say = func(string, ...any) {}
	}
	if opts.Namespaces < 1 || opts.Policies < 1 {
		return nil, fmt.Errorf("need at least one namespace and one policy")
	}
	auditLog := filepath.Join(opts.Dir, "audit.log")
	c, err := startCluster(opts, auditLog)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Stop() }()
	cfg := *c.Config
	cfg.QPS, cfg.Burst = 2000, 4000
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return nil, err
	}
	scheme, err := loadshedscheme.New()
	if err != nil {
		return nil, err
	}
	admin, err := client.New(&cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	rep := &Report{Options: opts}
	began := time.Now()
	opts.Say("adding %d Nodes, %d namespaces and %d DaemonSets", opts.Nodes, opts.Namespaces, opts.DaemonSets)
	if err := Populate(ctx, cs, opts.Nodes, opts.Namespaces, opts.DaemonSets, opts.Policies); err != nil {
		return nil, err
	}
	rep.SetUp = time.Since(began)
	opts.Say("objects created in %v", rep.SetUp.Round(time.Second))
	if err := rep.measure(ctx, admin, c, auditLog); err != nil {
		return nil, err
	}
	return rep, nil
}

// startCluster starts etcd and kube-apiserver, with an audit log.
func startCluster(opts Options, auditLog string) (*localcluster.Cluster, error) {
	audit, err := writeAuditPolicy(opts.Dir)
	if err != nil {
		return nil, err
	}
	return localcluster.Start(localcluster.Options{
		Assets: opts.Assets,
		CRDs:   []string{filepath.Join(opts.Root, "config", "crd", "bases")},
		Logs:   opts.Dir,
		APIServerFlags: map[string]string{"audit-policy-file": audit, "audit-log-path": auditLog,
			"audit-log-format": "json", "audit-log-maxbackup": "0", "audit-log-maxsize": "0"},
	})
}

// measure runs the operator, creates the policies, waits for them to be
// Ready, warms up and measures.
func (r *Report) measure(ctx context.Context, admin client.Client, c *localcluster.Cluster, auditLog string) error {
	opts := r.Options
	metricsAddr, err := freeAddress()
	if err != nil {
		return err
	}
	op, err := replay.StartOperator(ctx, admin, c.Config, replay.OperatorOptions{Root: opts.Root,
		Namespace: replay.OperatorNamespace, ServiceAccount: replay.OperatorServiceAccount, Dir: opts.Dir,
		ProxyURL: c.ProxyURL(),
		// Leader election on, as it ships: its Lease updates are part of its cost.
		LeaderElection: &replay.LeaderElection{},
		Args:           []string{"--metrics-bind-address=" + metricsAddr, "--metrics-secure=false", "--log-level=info"}})
	if err != nil {
		return err
	}
	defer op.Stop()
	started := time.Now()
	if err := createPolicies(ctx, admin, opts); err != nil {
		return err
	}
	if err := waitReady(ctx, admin, opts.Policies); err != nil {
		return fmt.Errorf("%w (the operator's log: %s)", err, op.Log)
	}
	r.Ready = time.Since(started)
	opts.Say("every policy Ready with metrics %v after the operator started; warming up for %v", r.Ready.Round(time.Second), opts.Warmup)
	if err := sleep(ctx, opts.Warmup); err != nil {
		return err
	}
	metricsURL := "http://" + metricsAddr + "/metrics"
	before, err := readProcess(ctx, op.Pid(), metricsURL)
	if err != nil {
		return err
	}
	opts.Say("measuring for %v", opts.Measure)
	if err := sleep(ctx, opts.Measure); err != nil {
		return err
	}
	after, err := readProcess(ctx, op.Pid(), metricsURL)
	if err != nil {
		return err
	}
	r.fill(before, after)
	user := "system:serviceaccount:" + replay.OperatorNamespace + ":" + replay.OperatorServiceAccount
	if r.Requests, err = countRequests(auditLog, user, before.at, after.at); err != nil {
		return err
	}
	r.LoadshedFlowSchemas, err = loadshedFlowSchemas(ctx, admin)
	return err
}

// Policies returns n copies of root's sample policy, policy i selecting
// the DaemonSets of group i, at interval (the sample's when zero).
func Policies(root string, n int, interval time.Duration) ([]*v1alpha1.LoadShedPolicy, error) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "samples", "loadshed_v1alpha1_loadshedpolicy.yaml"))
	if err != nil {
		return nil, err
	}
	sample := &v1alpha1.LoadShedPolicy{}
	if err := yaml.UnmarshalStrict(raw, sample); err != nil {
		return nil, fmt.Errorf("reading the sample policy: %w", err)
	}
	out := make([]*v1alpha1.LoadShedPolicy, n)
	for i := range n {
		p := sample.DeepCopy()
		p.Name = fmt.Sprintf("scale-%02d", i)
		if interval > 0 {
			p.Spec.Interval = &metav1.Duration{Duration: interval}
		}
		p.Spec.Targets.Selector = &v1alpha1.LabelSelector{MatchLabels: map[string]v1alpha1.LabelValue{GroupLabel: v1alpha1.LabelValue(strconv.Itoa(i))}}
		out[i] = p
	}
	return out, nil
}

// createPolicies creates the policies of opts.
func createPolicies(ctx context.Context, c client.Client, opts Options) error {
	policies, err := Policies(opts.Root, opts.Policies, opts.Interval)
	if err != nil {
		return err
	}
	for _, p := range policies {
		if err := c.Create(ctx, p); err != nil {
			return fmt.Errorf("creating policy %s: %w", p.Name, err)
		}
	}
	return nil
}

// waitReady waits until every policy is Ready and reads its metrics.
func waitReady(ctx context.Context, c client.Client, n int) error {
	err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &v1alpha1.LoadShedPolicyList{}
		if err := c.List(ctx, list); err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range list.Items {
			if meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionReady) &&
				meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionMetricsAvailable) {
				ready++
			}
		}
		return ready == n, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %d policies to be Ready with metrics: %w", n, err)
	}
	return nil
}

// loadshedFlowSchemas counts the FlowSchemas loadshed owns.
func loadshedFlowSchemas(ctx context.Context, c client.Client) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(flowSchemaListKind)
	if err := c.List(ctx, list, client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}); err != nil {
		return 0, fmt.Errorf("listing FlowSchemas: %w", err)
	}
	return len(list.Items), nil
}

// processReading is what was read of the operator at one time.
type processReading struct {
	at      time.Time
	cpu     float64
	peakRSS int64
	rss     int64
	metrics operatorMetrics
}

// readProcess reads the operator's CPU time and memory from /proc and its
// own metrics.
func readProcess(ctx context.Context, pid int, metricsURL string) (processReading, error) {
	out := processReading{at: time.Now()}
	proc, err := procfs.NewProc(pid)
	if err != nil {
		return out, err
	}
	stat, err := proc.Stat()
	if err != nil {
		return out, err
	}
	out.cpu = stat.CPUTime()
	status, err := proc.NewStatus()
	if err != nil {
		return out, err
	}
	out.peakRSS, out.rss = int64(status.VmHWM), int64(status.VmRSS)
	out.metrics, err = scrapeOperator(ctx, metricsURL)
	return out, err
}

// fill computes the report's rates from two readings.
func (r *Report) fill(before, after processReading) {
	secs := after.at.Sub(before.at).Seconds()
	r.PeakRSS, r.RSS = after.peakRSS, after.rss
	r.HeapInuse = after.metrics.heapInuse
	r.CPUCores = (after.cpu - before.cpu) / secs
	r.AllocatedPerSecond = (after.metrics.allocated - before.metrics.allocated) / secs
	r.GCsPerMinute = (after.metrics.gcs - before.metrics.gcs) / secs * 60
	r.ReconcilesPerMinute = (after.metrics.reconciles - before.metrics.reconciles) / secs * 60
	ev := after.metrics.evaluations.sub(before.metrics.evaluations)
	r.EvaluationsPerMinute = ev.count / secs * 60
	if ev.count > 0 {
		r.EvaluationMean = seconds(ev.sum / ev.count)
		r.EvaluationP99 = seconds(ev.quantile(0.99))
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// freeAddress returns a loopback address with a free port.
func freeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// httpClient reads the operator's metrics.
var httpClient = &http.Client{Timeout: 10 * time.Second}
