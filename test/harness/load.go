package harness

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/loadshed/loadshed/test/testutil"
)

// counting counts the HTTP 429 responses a client receives, including the
// ones client-go retries by itself (it honours Retry-After, as in production).
type counting struct {
	next      http.RoundTripper
	throttled *atomic.Int64
}

func (c counting) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		c.throttled.Add(1)
	}
	return resp, err
}

func (e Env) clientAs(t *testing.T, namespace string, throttled *atomic.Int64) *kubernetes.Clientset {
	t.Helper()
	cfg := testutil.AsServiceAccount(e.Config, namespace, agent)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return counting{next: rt, throttled: throttled} }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Load lists pods as a ServiceAccount from workers goroutines until
// stopped, counting successes, failures and the HTTP 429s on the wire.
type Load struct {
	// OK counts the LISTs served, Throttled the 429s received (client-go
	// retries some of them), Failed the LISTs that failed in the end.
	OK, Throttled, Failed atomic.Int64
	ctx                   context.Context
	cancel                context.CancelFunc
	wg                    sync.WaitGroup
}

// StartLoad lists pods as the agent ServiceAccount of namespace from
// workers goroutines, each waiting pause after each LIST, for three minutes
// at most.
func (e Env) StartLoad(t *testing.T, namespace string, workers int, pause time.Duration) *Load {
	l := &Load{}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	cs := e.clientAs(t, namespace, &l.Throttled)
	deadline := time.Now().Add(3 * time.Minute)
	for range workers {
		l.wg.Go(func() {
			for time.Now().Before(deadline) && l.ctx.Err() == nil {
				_, err := cs.CoreV1().Pods("").List(l.ctx, metav1.ListOptions{})
				switch {
				case l.ctx.Err() != nil:
					return // stopped: neither a success nor a failure
				case err == nil:
					l.OK.Add(1)
				default:
					l.Failed.Add(1)
				}
				time.Sleep(pause)
			}
		})
	}
	return l
}

// Stop stops the load at once, cancelling the requests in flight (and
// client-go's waits for a Retry-After), and waits for its workers;
// stopping twice is fine.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}
