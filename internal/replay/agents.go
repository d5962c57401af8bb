// Package replay reproduces the incident of 2024-12-11 on a local cluster:
// a telemetry DaemonSet whose agents, one per pod, flood the API servers
// with cluster-wide LISTs, while innocent clients (DNS-like and
// controller-like) measure what the flood does to everyone else, with and
// without loadshed. This file holds the agents; scenario.go runs the
// timeline and report.go scores it.
package replay

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// AgentOptions say what each agent does.
type AgentOptions struct {
	// Namespace and Selector find the DaemonSet's pods; ServiceAccount is
	// what they run as.
	Namespace      string
	Selector       string
	ServiceAccount string
	// Work is what each agent does at first; Agents.Set changes it.
	Work
	// Parallel is how many requests one agent has in flight at most; 1 when
	// unset.
	Parallel int
}

// Work is what an agent does: GET Path, Rate times a second.
type Work struct {
	// Path is what each agent GETs, e.g. /api/v1/configmaps (an expensive
	// cluster-wide LIST); "{node}" in it becomes the pod's node name.
	Path string
	// Rate is requests per second per agent.
	Rate float64
	// List says that Path is a LIST: its requests count in Counts.Lists
	// and Counts.ListAttempts, the agents' offered load.
	List bool
}

// Counts are what the agents did so far.
type Counts struct {
	Running  int64
	Requests int64
	// ListAttempts are the LISTs the agents meant to send, one per agent
	// and period while the work was a LIST: those sent, and those skipped
	// because the agent already had Parallel requests in flight. They are
	// what the agents offer, whatever the API server makes of it.
	ListAttempts int64
	// Lists are the LISTs sent (each once: client-go's own retries of a
	// 429 are not counted again): fewer than the attempts when the API
	// server is slow to answer. Bytes is every response body byte read,
	// counted as it arrives.
	Lists     int64
	Bytes     int64
	Errors    int64
	Throttled int64
}

// Agents runs one agent per existing pod of a DaemonSet: when a pod is
// deleted its agent stops, and when a pod comes back so does its agent.
// Each agent authenticates as the pod's ServiceAccount with a token bound
// to the pod (from the TokenRequest API), asks for protobuf and discards
// the body (counting its bytes), so that the API server, not this process,
// does the work.
type Agents struct {
	admin   kubernetes.Interface
	base    *rest.Config
	opts    AgentOptions
	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
	work    atomic.Pointer[Work]

	requests, attempts, lists, bytes, errors, throttled atomic.Int64
}

// NewAgents returns agents for the pods admin can see; base is the API
// server's address and CA (its credentials are not used).
func NewAgents(admin kubernetes.Interface, base *rest.Config, opts AgentOptions) *Agents {
	opts.Parallel = max(opts.Parallel, 1)
	a := &Agents{admin: admin, base: base, opts: opts, running: map[string]context.CancelFunc{}}
	a.Set(opts.Work)
	return a
}

// Set changes what every agent does from its next request on, as a new
// configuration rolled out to the agents would.
func (a *Agents) Set(w Work) { a.work.Store(&w) }

// Run follows the pods until ctx is done, then stops every agent.
func (a *Agents) Run(ctx context.Context) {
	lw := cache.NewFilteredListWatchFromClient(a.admin.CoreV1().RESTClient(), "pods", a.opts.Namespace,
		func(o *metav1.ListOptions) {
			o.LabelSelector = a.opts.Selector
			o.FieldSelector = fields.Everything().String()
		})
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { a.sync(ctx, obj) },
			UpdateFunc: func(_, obj any) { a.sync(ctx, obj) },
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if pod, ok := obj.(*corev1.Pod); ok {
					a.stop(pod.Name)
				}
			},
		},
	})
	informer.RunWithContext(ctx)
	a.mu.Lock()
	for name, cancel := range a.running {
		cancel()
		delete(a.running, name)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// sync starts an agent for a pod that is Running and not terminating, and
// stops it otherwise.
func (a *Agents) sync(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		// Terminating, not started yet, or done: no agent process runs.
		a.stop(pod.Name)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.running[pod.Name]; ok {
		return
	}
	agentCtx, cancel := context.WithCancel(ctx)
	a.running[pod.Name] = cancel
	a.wg.Go(func() { a.agent(agentCtx, pod) })
}

func (a *Agents) stop(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cancel, ok := a.running[name]; ok {
		cancel()
		delete(a.running, name)
	}
}

// agent LISTs at its rate until ctx is done.
func (a *Agents) agent(ctx context.Context, pod *corev1.Pod) {
	cs, err := a.clientFor(ctx, pod)
	if err != nil {
		// Forget the agent, so that the pod's next update starts it again.
		a.errors.Add(1)
		a.stop(pod.Name)
		return
	}
	// Requests go out at the set rate whether or not the previous ones
	// came back (a misconfigured agent's collectors do not wait for each
	// other), up to Parallel at a time.
	slots := make(chan struct{}, a.opts.Parallel)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	// Agents start spread over their period, as pods started at different
	// times would.
	next := time.Now().Add(time.Duration(rand.Int64N(int64(a.period()))))
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		next = next.Add(a.period())
		if now := time.Now(); next.Before(now) {
			// Late: no catching up, like a ticker.
			next = now
		}
		w := a.work.Load()
		if w.Rate <= 0 {
			continue
		}
		if w.List {
			a.attempts.Add(1)
		}
		select {
		case slots <- struct{}{}:
		default:
			// As many requests in flight as the agent allows: skip this one.
			continue
		}
		path := strings.ReplaceAll(w.Path, "{node}", pod.Spec.NodeName)
		inflight.Go(func() {
			defer func() { <-slots }()
			a.get(ctx, cs, path, w.List)
		})
	}
}

// clientFor returns a client that authenticates as the agents'
// ServiceAccount with a token bound to the pod, asks for protobuf, counts
// the 429s it gets and has no client-side rate limit.
func (a *Agents) clientFor(ctx context.Context, pod *corev1.Pod) (*kubernetes.Clientset, error) {
	tr, err := a.admin.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, a.opts.ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	cfg := rest.AnonymousClientConfig(a.base)
	cfg.BearerToken = tr.Status.Token
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf"
	cfg.QPS, cfg.Burst = -1, 0
	cfg.WrapTransport = countThrottled(&a.throttled)
	return kubernetes.NewForConfig(cfg)
}

// get sends one request, reads the body, counting its bytes, and throws it
// away. A LIST counts in Lists after it counts in Requests, and Counts
// reads them the other way round, so that it never sees more LISTs than
// requests.
func (a *Agents) get(ctx context.Context, cs kubernetes.Interface, path string, list bool) {
	a.requests.Add(1)
	if list {
		a.lists.Add(1)
	}
	body, err := cs.CoreV1().RESTClient().Get().AbsPath(path).Stream(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.errors.Add(1)
		}
		return
	}
	_, _ = io.Copy(countingWriter{&a.bytes}, body)
	_ = body.Close()
}

// countingWriter counts what is written to it and throws it away.
type countingWriter struct{ n *atomic.Int64 }

func (w countingWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// period is the time between two requests of one agent.
// An idle agent (rate 0) looks again every second.
func (a *Agents) period() time.Duration {
	if r := a.work.Load().Rate; r > 0 {
		return time.Duration(float64(time.Second) / r)
	}
	return time.Second
}

// Counts returns what the agents did so far.
func (a *Agents) Counts() Counts {
	a.mu.Lock()
	running := int64(len(a.running))
	a.mu.Unlock()
	lists := a.lists.Load()
	return Counts{Running: running, Requests: a.requests.Load(), ListAttempts: a.attempts.Load(), Lists: lists,
		Bytes: a.bytes.Load(), Errors: a.errors.Load(), Throttled: a.throttled.Load()}
}

// String describes counts for logs.
func (c Counts) String() string {
	return fmt.Sprintf("%d agents, %d requests (%d LISTs of %d attempted), %d bytes read, %d errors, %d HTTP 429",
		c.Running, c.Requests, c.Lists, c.ListAttempts, c.Bytes, c.Errors, c.Throttled)
}
