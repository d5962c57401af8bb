package replay

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Second is what a client saw during one second.
type Second struct {
	Requests int
	Errors   int
	// P99 is the 99th percentile latency of the second's requests.
	P99 time.Duration
	// Latencies are every request's, sorted.
	Latencies []time.Duration
}

// Recorder keeps, per second since it started, each request's latency and
// whether it failed.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	lat   map[int][]time.Duration
	errs  map[int]int
}

// NewRecorder starts recording at start.
func NewRecorder(start time.Time) *Recorder {
	return &Recorder{start: start, lat: map[int][]time.Duration{}, errs: map[int]int{}}
}

// Observe records one request that began at began.
func (r *Recorder) Observe(began time.Time, took time.Duration, err error) {
	s := int(began.Sub(r.start) / time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat[s] = append(r.lat[s], took)
	if err != nil {
		r.errs[s]++
	}
}

// Second returns what was seen in second s.
func (r *Recorder) Second(s int) Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.lat[s], r.errs[s])
}

func summarize(lats []time.Duration, errs int) Second {
	if len(lats) == 0 {
		return Second{}
	}
	sorted := append([]time.Duration(nil), lats...)
	slices.Sort(sorted)
	return Second{Requests: len(lats), Errors: errs, P99: percentile(sorted, 99), Latencies: sorted}
}

// Seconds returns what was seen in each second from 0 to the last one.
func (r *Recorder) Seconds() []Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := -1
	for s := range r.lat {
		last = max(last, s)
	}
	out := make([]Second, last+1)
	for s, lats := range r.lat {
		out[s] = summarize(lats, r.errs[s])
	}
	return out
}

// clientAs returns a clientset authenticated as a ServiceAccount with a
// token from the TokenRequest API.
func clientAs(ctx context.Context, admin kubernetes.Interface, base *rest.Config, namespace, name string) (*kubernetes.Clientset, error) {
	tr, err := admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for %s/%s: %w", namespace, name, err)
	}
	cfg := rest.AnonymousClientConfig(base)
	cfg.BearerToken = tr.Status.Token
	cfg.QPS, cfg.Burst = -1, 0
	return kubernetes.NewForConfig(cfg)
}

// Pace is how an innocent client sends its requests.
type Pace struct {
	// Period is the time between two rounds of requests.
	Period time.Duration
	// Timeout is how long a request may take before the client gives up
	// and counts it as failed, as a client with a deadline would (for DNS,
	// a stale answer); 0 for no limit.
	Timeout time.Duration
}

// timed runs one request with the pace's timeout and records it; it
// reports false when ctx is done.
func (p Pace) timed(ctx context.Context, rec *Recorder, req func(context.Context) error) (bool, error) {
	reqCtx, cancel := ctx, context.CancelFunc(func() {})
	if p.Timeout > 0 {
		reqCtx, cancel = context.WithTimeout(ctx, p.Timeout)
	}
	defer cancel()
	began := time.Now()
	err := req(reqCtx)
	if ctx.Err() != nil {
		return false, err
	}
	rec.Observe(began, time.Since(began), err)
	return true, err
}

// RunDNSLike behaves like CoreDNS: it lists EndpointSlices cluster-wide
// every period (as its informer's relist would) and keeps a watch open,
// recording each LIST, as a kube-system ServiceAccount. It runs until ctx
// is done.
func RunDNSLike(ctx context.Context, admin kubernetes.Interface, base *rest.Config, sa string, pace Pace, rec *Recorder) error {
	cs, err := clientAs(ctx, admin, base, metav1.NamespaceSystem, sa)
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			w, err := cs.DiscoveryV1().EndpointSlices("").Watch(ctx, metav1.ListOptions{})
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			for range w.ResultChan() {
			}
		}
	}()
	tick := time.NewTicker(pace.Period)
	defer tick.Stop()
	for {
		ok, _ := pace.timed(ctx, rec, func(ctx context.Context) error {
			_, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return err
		})
		if !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// RunControllerLike behaves like a controller reconciling its own object:
// every period it GETs a ConfigMap it owns and UPDATEs it, recording both,
// as the ServiceAccount namespace/sa. It runs until ctx is done.
func RunControllerLike(ctx context.Context, admin kubernetes.Interface, base *rest.Config, namespace, sa string,
	pace Pace, rec *Recorder) error {
	cs, err := clientAs(ctx, admin, base, namespace, sa)
	if err != nil {
		return err
	}
	name := "controller-like-" + sa
	_, err = admin.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the controller's ConfigMap: %w", err)
	}
	tick := time.NewTicker(pace.Period)
	defer tick.Stop()
	for n := 0; ; n++ {
		var cm *corev1.ConfigMap
		ok, err := pace.timed(ctx, rec, func(ctx context.Context) (err error) {
			cm, err = cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
			return err
		})
		if !ok {
			return nil
		}
		if err == nil {
			cm.Data = map[string]string{"generation": fmt.Sprint(n)}
			if ok, _ := pace.timed(ctx, rec, func(ctx context.Context) error {
				_, err := cs.CoreV1().ConfigMaps(namespace).Update(ctx, cm, metav1.UpdateOptions{})
				return err
			}); !ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// percentile returns the p-th percentile of sorted durations (nearest
// rank), 0 for none.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	idx := (len(sorted)*p + 99) / 100
	return sorted[max(min(idx, len(sorted)), 1)-1]
}
