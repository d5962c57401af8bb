package sampler

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/signals"
)

const (
	// apiServerName is the name every kube-apiserver's serving certificate
	// carries, whatever address it is reached at.
	apiServerName = "kubernetes.default.svc"
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

// scraper finds the API server instances and scrapes each.
type scraper struct {
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

// forgetAfter is how long an instance that default/kubernetes no longer
// lists counts as missing, unless as many instances as before are listed
// again (it was replaced): twice kubelet's longest crash-loop back-off
// (five minutes), so that an API server that crash-loops, listed only
// between its crashes, is never forgotten. An instance removed for good
// leaves the policies partially blind for that long.
const forgetAfter = 10 * time.Minute

// listedInstances remembers which instances default/kubernetes listed.
type listedInstances struct {
	// last is when each instance was last listed.
	last map[string]time.Time
	// most is the most instances listed at once, last at mostAt, within
	// forgetAfter.
	most   int
	mostAt time.Time
}

// missing records the instances listed at now, and returns those that are
// not listed any more and count as missing, with when each was last
// listed: while fewer instances are listed than were at once within
// forgetAfter, as many as are lacking, those listed last. Fewer listed
// than before, with none of them new, is an instance down (stopping, a
// kube-apiserver takes itself out of the list; crashed, it is taken out
// once its lease expires); as many, with a new one among them, is an
// instance replaced.
func (l *listedInstances) missing(now time.Time, listed []string) map[string]time.Time {
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	for _, u := range listed {
		l.last[u] = now
	}
	for u, at := range l.last {
		if now.Sub(at) > forgetAfter {
			delete(l.last, u)
		}
	}
	if len(listed) >= l.most || now.Sub(l.mostAt) > forgetAfter {
		l.most, l.mostAt = len(listed), now
	}
	lacking := l.most - len(listed)
	if lacking <= 0 {
		return nil
	}
	var gone []string
	for u := range l.last {
		if !slices.Contains(listed, u) {
			gone = append(gone, u)
		}
	}
	slices.SortFunc(gone, func(a, b string) int {
		return cmp.Or(l.last[b].Compare(l.last[a]), strings.Compare(a, b))
	})
	out := map[string]time.Time{}
	for _, u := range gone[:min(lacking, len(gone))] {
		out[u] = l.last[u]
	}
	return out
}

func newScraper(cfg *rest.Config, reader client.Reader) (*scraper, error) {
	fallback, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server client: %w", err)
	}
	directCfg := rest.CopyConfig(cfg)
	directCfg.ServerName = apiServerName
	direct, err := rest.HTTPClientFor(directCfg)
	if err != nil {
		return nil, fmt.Errorf("building the API server client: %w", err)
	}
	host, err := hostURL(cfg.Host)
	if err != nil {
		return nil, err
	}
	return &scraper{
		reader:   reader,
		direct:   direct,
		fallback: fallback,
		host:     host,
		buffers:  sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}, nil
}

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

// endpoints returns the base URL of every ready kube-apiserver instance,
// from the EndpointSlices of default/kubernetes (in the cache, so watched,
// not listed).
func (s *scraper) endpoints(ctx context.Context) ([]string, error) {
	list := &discoveryv1.EndpointSliceList{}
	if err := s.reader.List(ctx, list, client.InNamespace(metav1.NamespaceDefault),
		client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		return nil, fmt.Errorf("listing the EndpointSlices of default/kubernetes: %w", err)
	}
	return endpointURLs(list.Items), nil
}

// endpointURLs returns the base URL of every ready endpoint address of the
// slices, on their https port.
func endpointURLs(list []discoveryv1.EndpointSlice) []string {
	var urls []string
	for _, slice := range list {
		port := int32(0)
		for _, p := range slice.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				urls = append(urls, "https://"+net.JoinHostPort(addr, strconv.Itoa(int(port))))
			}
		}
	}
	return urls
}

// round scrapes every instance once. When no endpoint is known, or none
// could be scraped, it scrapes the configured host instead and says so. An
// instance that is no longer listed but counts as missing (see
// listedInstances) is a target that failed.
func (s *scraper) round(ctx context.Context, start time.Time, accums []signals.Accumulator, timeout time.Duration) (*signals.Round, Status) {
	r := &signals.Round{T: start, Instances: map[string]map[string]signals.Result{}, Failed: map[string]string{},
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
		s.scrapeAll(ctx, s.direct, targets, accums, timeout, r)
		if len(r.Instances) > 0 {
			st.Targets = targets
			addMissing(r, &st, missing)
			st.Failed = r.Failed
			return r, st
		}
		st.Fallback = fmt.Sprintf("no endpoint of default/kubernetes could be scraped (%s): scraped %s",
			firstFailure(r.Failed), s.host)
		r.Failed = map[string]string{}
		r.Clients, r.ClientsFailed = map[string]apfdump.Summary{}, map[string]string{}
	}
	s.scrapeAll(ctx, s.fallback, []string{s.host}, accums, timeout, r)
	st.Targets = []string{s.host}
	addMissing(r, &st, missing)
	st.Failed = r.Failed
	return r, st
}

// addMissing adds the missing instances to the round's targets, as failed.
func addMissing(r *signals.Round, st *Status, missing map[string]time.Time) {
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
// that the only request of the operator's that it holds is the dump's own
// (which apfdump leaves out): the operator is not a client of every sample.
func (s *scraper) scrapeAll(ctx context.Context, c *http.Client, targets []string, accums []signals.Accumulator,
	timeout time.Duration, r *signals.Round) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, target := range targets {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			began := time.Now()
			results, err := s.scrape(ctx, c, target, accums, timeout)
			took := time.Since(began).Seconds()
			mu.Lock()
			r.ScrapeSeconds = max(r.ScrapeSeconds, took)
			if err != nil {
				r.Failed[target] = err.Error()
				r.TimedOut = r.TimedOut || errors.Is(err, errTimedOut)
			} else {
				r.Instances[target] = results
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

// scrape reads one instance's /metrics, asking for protobuf, and folds it.
func (s *scraper) scrape(ctx context.Context, c *http.Client, base string, accums []signals.Accumulator,
	timeout time.Duration) (map[string]signals.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", exposition.AcceptHeader)
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w after %v", errTimedOut, timeout)
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("HTTP %d from %s/metrics", resp.StatusCode, base)
	}
	buf := s.buffers.Get().(*bytes.Buffer)
	defer s.buffers.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBody)); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w after %v", errTimedOut, timeout)
		}
		return nil, fmt.Errorf("reading %s/metrics: %w", base, err)
	}
	folder := signals.NewFolder(accums)
	if err := exposition.Parse(resp.Header.Get("Content-Type"), buf.Bytes(), folder.Families(), folder.Add); err != nil {
		return nil, fmt.Errorf("parsing %s/metrics: %w", base, err)
	}
	return folder.Results(), nil
}

// dump reads one instance's APF dump of the requests it holds and sums it
// by user.
func (s *scraper) dump(ctx context.Context, c *http.Client, base string, timeout time.Duration) (apfdump.Summary, error) {
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
