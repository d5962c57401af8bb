// Package scrape reads every kube-apiserver instance of a cluster once: the
// /metrics of each, at the address the EndpointSlices of default/kubernetes
// publish for it, then its API Priority and Fairness dump of the requests it
// holds. The operator's sampler reads a round per interval with it, and the
// kubectl plugin's top and record read the API servers exactly as the
// operator does, with the same discovery, TLS, fallback and parser.
//
// What a round keeps of each instance's samples is the caller's: a Sink
// takes them as they are parsed. Fold folds them into signals' results,
// which is what the operator and top keep; record writes them to a file.
package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/signals"
)

const (
	// ServerName is the name every kube-apiserver's serving certificate
	// carries, whatever address it is reached at: an instance reached at
	// its endpoint address is verified against it and the cluster's CA.
	ServerName = "kubernetes.default.svc"
	// maxBody bounds one /metrics response.
	maxBody = 128 << 20
)

// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=list;watch
// +kubebuilder:rbac:urls=/metrics,verbs=get
// +kubebuilder:rbac:urls=/debug/api_priority_and_fairness/dump_requests,verbs=get

// usersPerSample is how many clients of one API server one sample keeps
// (those with the most seats): the shares of those kept stay true.
const usersPerSample = 64

// maxDump bounds one APF dump: about 200 bytes a request held.
const maxDump = 32 << 20

// Sink takes the samples of one instance's scrape as they are parsed: a
// signals.Folder is one. A Sink is used by one goroutine; a scrape that
// fails leaves its Sink out of the round.
type Sink interface {
	// Families are the families to parse; the others are skipped.
	Families() exposition.Families
	// Add takes one sample, valid only during the call.
	Add(s *exposition.Sample)
}

// Round is one scrape of every API server instance, with what each
// instance's Sink took.
type Round[S Sink] struct {
	// T is when the round started.
	T time.Time
	// Scraped maps each instance scraped successfully to its Sink.
	Scraped map[string]S
	// Failed maps each instance that could not be scraped to why,
	// including those that count as missing (see Status.Targets).
	Failed map[string]string
	// ScrapeSeconds is the duration of the slowest scrape of the round,
	// failed ones included (a scrape that times out took the timeout).
	ScrapeSeconds float64
	// TimedOut says that a scrape of the round ran into its timeout.
	TimedOut bool
	// Clients maps each instance whose APF dump was read to whose requests
	// it held; ClientsFailed maps each instance whose dump could not be
	// read to why. The dump is read only of instances scraped.
	Clients       map[string]apfdump.Summary
	ClientsFailed map[string]string
}

// Scraper finds the API server instances and scrapes each. It remembers the
// instances it has seen listed (see Status.Targets), so that one that
// stops counts as missing: use one Scraper for a series of rounds, one
// round at a time.
type Scraper struct {
	reader client.Reader
	// direct reaches an instance by its endpoint address; fallback reaches
	// the configured host.
	direct, fallback *http.Client
	host             string
	buffers          sync.Pool
	// listed remembers the instances default/kubernetes listed, so that
	// one that stops (and leaves the list) counts as missing.
	listed listedInstances
}

// New returns a Scraper that reaches the API servers with cfg (its
// credentials and CA; an instance reached at its endpoint address is
// verified as ServerName) and finds their endpoints through reader, which
// must be able to list the EndpointSlices of default/kubernetes: the
// operator passes its cache, the plugin a client.
func New(cfg *rest.Config, reader client.Reader) (*Scraper, error) {
	fallback, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server client: %w", err)
	}
	directCfg := rest.CopyConfig(cfg)
	directCfg.ServerName = ServerName
	direct, err := rest.HTTPClientFor(directCfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server client: %w", err)
	}
	host, err := hostURL(cfg.Host)
	if err != nil {
		return nil, err
	}
	return &Scraper{
		reader:   reader,
		direct:   direct,
		fallback: fallback,
		host:     host,
		buffers:  sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}, nil
}

// Host is the configured host's base URL, which a round scrapes when the
// instances' endpoints cannot be used.
func (s *Scraper) Host() string { return s.host }

// hostURL returns the configured host as a base URL.
func hostURL(host string) (string, error) {
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		u, err = url.Parse("https://" + host)
	}
	if err != nil {
		return "", fmt.Errorf("parsing the API server host %q: %w", host, err)
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/"), nil
}

// Fold scrapes every instance once and folds each one's samples for accums
// (signals.Folder): the round the operator's signals are computed from.
func (s *Scraper) Fold(ctx context.Context, start time.Time, accums []signals.Accumulator,
	timeout time.Duration) (*signals.Round, Status) {
	r, st := Read(ctx, s, start, timeout, func(string) *signals.Folder { return signals.NewFolder(accums) })
	out := &signals.Round{T: r.T, Instances: make(map[string]map[string]signals.Result, len(r.Scraped)),
		Failed: r.Failed, ScrapeSeconds: r.ScrapeSeconds, TimedOut: r.TimedOut,
		Clients: r.Clients, ClientsFailed: r.ClientsFailed}
	for inst, f := range r.Scraped {
		out.Instances[inst] = f.Results()
	}
	return out, st
}

// Read scrapes every instance once, each into a Sink newSink makes for it
// (called from the instance's goroutine), within timeout per instance.
// When no endpoint is known, or none could be scraped, it scrapes the
// configured host instead and the Status says so. An instance that is no
// longer listed but counts as missing is a target that failed.
func Read[S Sink](ctx context.Context, s *Scraper, start time.Time, timeout time.Duration,
	newSink func(instance string) S) (*Round[S], Status) {
	r := &Round[S]{T: start, Scraped: map[string]S{}, Failed: map[string]string{},
		Clients: map[string]apfdump.Summary{}, ClientsFailed: map[string]string{}}
	st := Status{LastRound: start, Failed: map[string]string{}}

	targets, err := s.endpoints(ctx)
	var missing map[string]time.Time
	if err == nil {
		missing = s.listed.missing(start, targets)
	}
	switch {
	case err != nil:
		st.Fallback = fmt.Sprintf("could not read the API servers' endpoints (%v): scraped %s", err, s.host)
	case len(targets) == 0:
		st.Fallback = fmt.Sprintf("default/kubernetes lists no endpoints: scraped %s", s.host)
	default:
		scrapeAll(ctx, s, s.direct, targets, timeout, newSink, r)
		if len(r.Scraped) > 0 {
			st.Targets = targets
			r.addMissing(&st, missing)
			st.Failed = r.Failed
			return r, st
		}
		st.Fallback = fmt.Sprintf("no endpoint of default/kubernetes could be scraped (%s): scraped %s",
			firstFailure(r.Failed), s.host)
		r.Failed = map[string]string{}
		r.Clients, r.ClientsFailed = map[string]apfdump.Summary{}, map[string]string{}
	}
	scrapeAll(ctx, s, s.fallback, []string{s.host}, timeout, newSink, r)
	st.Targets = []string{s.host}
	r.addMissing(&st, missing)
	st.Failed = r.Failed
	return r, st
}

// addMissing adds the missing instances to the round's targets, as failed.
func (r *Round[S]) addMissing(st *Status, missing map[string]time.Time) {
	for _, u := range slices.Sorted(maps.Keys(missing)) {
		st.Targets = append(st.Targets, u)
		r.Failed[u] = fmt.Sprintf("no longer listed in default/kubernetes (last listed %v before this round): "+
			"an API server down is not read", r.T.Sub(missing[u]).Round(time.Second))
	}
}

// errTimedOut is the error of a scrape that ran into its timeout.
var errTimedOut = errors.New("timed out")

// scrapeAll scrapes the targets concurrently into r: each one's /metrics,
// then its APF dump. The dump comes after the scrape, not beside it, so
// that the only request of the reader's that it holds is the dump's own
// (which apfdump leaves out): the reader is not a client of every sample.
func scrapeAll[S Sink](ctx context.Context, s *Scraper, c *http.Client, targets []string, timeout time.Duration,
	newSink func(string) S, r *Round[S]) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, target := range targets {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			began := time.Now()
			sink := newSink(target)
			err := s.scrape(ctx, c, target, sink, timeout)
			took := time.Since(began).Seconds()
			mu.Lock()
			r.ScrapeSeconds = max(r.ScrapeSeconds, took)
			if err != nil {
				r.Failed[target] = err.Error()
				r.TimedOut = r.TimedOut || errors.Is(err, errTimedOut)
			} else {
				r.Scraped[target] = sink
			}
			mu.Unlock()
			if err != nil {
				return
			}
			clients, err := s.dump(ctx, c, target, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.ClientsFailed[target] = err.Error()
				return
			}
			r.Clients[target] = clients
		})
	}
	wg.Wait()
}

// scrape reads one instance's /metrics, asking for protobuf, into sink.
func (s *Scraper) scrape(ctx context.Context, c *http.Client, base string, sink Sink, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", exposition.AcceptHeader)
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w after %v", errTimedOut, timeout)
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("HTTP %d from %s/metrics", resp.StatusCode, base)
	}
	buf := s.buffers.Get().(*bytes.Buffer)
	defer s.buffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody)); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w after %v", errTimedOut, timeout)
		}
		return fmt.Errorf("reading %s/metrics: %w", base, err)
	}
	if err := exposition.Parse(resp.Header.Get("Content-Type"), buf.Bytes(), sink.Families(), sink.Add); err != nil {
		return fmt.Errorf("parsing %s/metrics: %w", base, err)
	}
	return nil
}

// Dumps reads the APF dump of each instance, as a round does after its
// scrape, concurrently: a caller samples them more often than it reads
// /metrics. An instance is reached as a round reaches it (the configured
// host through the configured client, any other at its address).
func (s *Scraper) Dumps(ctx context.Context, instances []string, timeout time.Duration) (
	held map[string]apfdump.Summary, failed map[string]string) {
	held, failed = map[string]apfdump.Summary{}, map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, inst := range instances {
		c := s.direct
		if inst == s.host {
			c = s.fallback
		}
		wg.Go(func() {
			sum, err := s.dump(ctx, c, inst, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[inst] = err.Error()
				return
			}
			held[inst] = sum
		})
	}
	wg.Wait()
	return held, failed
}

// dump reads one instance's APF dump of the requests it holds and sums it
// by user.
func (s *Scraper) dump(ctx context.Context, c *http.Client, base string, timeout time.Duration) (apfdump.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+apfdump.Path+"?"+apfdump.Query, nil)
	if err != nil {
		return apfdump.Summary{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return apfdump.Summary{}, fmt.Errorf("%w after %v", errTimedOut, timeout)
		}
		return apfdump.Summary{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return apfdump.Summary{}, fmt.Errorf("HTTP %d from %s%s", resp.StatusCode, base, apfdump.Path)
	}
	reqs, _, err := apfdump.Parse(io.LimitReader(resp.Body, maxDump))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return apfdump.Summary{}, fmt.Errorf("%w after %v", errTimedOut, timeout)
		}
		return apfdump.Summary{}, fmt.Errorf("reading %s%s: %w", base, apfdump.Path, err)
	}
	sum := apfdump.Summarize(reqs)
	sum.Trim(usersPerSample)
	return sum, nil
}

func firstFailure(failed map[string]string) string {
	for target, why := range failed {
		return target + ": " + why
	}
	return ""
}
