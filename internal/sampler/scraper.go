package sampler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
func endpointURLs(slices []discoveryv1.EndpointSlice) []string {
	var urls []string
	for _, slice := range slices {
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
// could be scraped, it scrapes the configured host instead and says so.
func (s *scraper) round(ctx context.Context, start time.Time, accums []signals.Accumulator, timeout time.Duration) (*signals.Round, Status) {
	r := &signals.Round{T: start, Instances: map[string]map[string]signals.Result{}, Failed: map[string]string{},
		Clients: map[string]apfdump.Summary{}, ClientsFailed: map[string]string{}}
	st := Status{LastRound: start, Failed: map[string]string{}}

	targets, err := s.endpoints(ctx)
	switch {
	case err != nil:
		st.Fallback = fmt.Sprintf("could not read the API servers' endpoints (%v): scraped %s", err, s.host)
	case len(targets) == 0:
		st.Fallback = fmt.Sprintf("default/kubernetes lists no endpoints: scraped %s", s.host)
	default:
		s.scrapeAll(ctx, s.direct, targets, accums, timeout, r)
		if len(r.Instances) > 0 {
			st.Targets, st.Failed = targets, r.Failed
			return r, st
		}
		st.Fallback = fmt.Sprintf("no endpoint of default/kubernetes could be scraped (%s): scraped %s",
			firstFailure(r.Failed), s.host)
		r.Failed = map[string]string{}
		r.Clients, r.ClientsFailed = map[string]apfdump.Summary{}, map[string]string{}
	}
	s.scrapeAll(ctx, s.fallback, []string{s.host}, accums, timeout, r)
	st.Targets, st.Failed = []string{s.host}, r.Failed
	return r, st
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
