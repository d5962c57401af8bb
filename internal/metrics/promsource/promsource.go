// Package promsource reads a LoadShedPolicy's signals from a Prometheus HTTP
// API with instant queries, as an alternative to scraping the API servers.
//
// A trigger's value is a PromQL expression that must evaluate to exactly one
// number: a scalar, or a vector with exactly one sample. Anything else is an
// error, and an expression that matches no series is reported as missing data
// (ErrNoData), never as zero.
package promsource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultTimeout bounds one query when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxShownSeries is how many label sets an error about too many samples lists.
const maxShownSeries = 3

// maxDetail is how many bytes of an unexpected response body an error quotes.
const maxDetail = 256

var (
	// ErrNoData says that the expression matched no series: the signal is
	// missing, which is not the same as zero.
	ErrNoData = errors.New("no data: the expression matched no series")

	// ErrTimeout says that a query did not finish in time: the caller's
	// context deadline, Config.Timeout, or Prometheus's own query timeout
	// (errorType "timeout") ran out.
	ErrTimeout = errors.New("prometheus query timed out")
)

// Config says how to reach a Prometheus HTTP API.
type Config struct {
	// URL is the base address of the Prometheus HTTP API, without the
	// /api/v1 suffix, e.g. https://prometheus.monitoring:9090. It may carry
	// a path prefix (https://thanos.example/prometheus) but no query or
	// fragment.
	URL string
	// CAPEM is an optional PEM bundle of certificate authorities trusted for
	// an https URL instead of the system's. It is parsed (and must hold at
	// least one certificate) even when the URL is http, where it is unused.
	CAPEM []byte
	// BearerToken, when not empty, is sent as "Authorization: Bearer
	// <token>". Surrounding white space (a trailing newline from a mounted
	// file) is removed.
	BearerToken string
	// Timeout bounds one query, including connecting and reading the answer.
	// It is also sent as the query's timeout parameter, truncated to whole
	// milliseconds below one second and to whole seconds above it, so that
	// Prometheus can parse it. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Querier runs instant queries against one Prometheus HTTP API. It keeps one
// HTTP client, so connections are reused across queries. It is safe for
// concurrent use.
type Querier struct {
	api     promv1.API
	timeout time.Duration
}

// New returns a Querier for cfg. It fails when the URL is not an absolute
// http or https URL, when CAPEM holds no certificate, or when Timeout is
// negative.
//
// The HTTP transport honours the HTTP_PROXY, HTTPS_PROXY and NO_PROXY
// environment variables, as client-go and the Go standard library do; set
// NO_PROXY to reach an in-cluster Prometheus past a cluster-wide proxy. TLS is
// at least version 1.2.
func New(cfg Config) (*Querier, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing prometheus url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("prometheus url %q: scheme must be http or https", cfg.URL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("prometheus url %q: no host", cfg.URL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("prometheus url %q: must not have a query or fragment", cfg.URL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("prometheus timeout %s: must not be negative", cfg.Timeout)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}

	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, errors.New("prometheus ca bundle: no pem certificate found")
		}
		tlsConfig.RootCAs = pool
	}

	// The same settings as api.DefaultRoundTripper, with our TLS config.
	var rt http.RoundTripper = &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
	}
	if token := strings.TrimSpace(cfg.BearerToken); token != "" {
		rt = &bearerAuth{token: token, next: rt}
	}

	client, err := api.NewClient(api.Config{Address: u.String(), RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("creating prometheus client: %w", err)
	}
	return &Querier{api: promv1.NewAPI(client), timeout: timeout}, nil
}

// Query evaluates the PromQL expression expr at time at (the server's current
// time when at is zero) and returns its single value and the warnings
// Prometheus sent with the answer.
//
// A scalar result gives its value, and a vector with exactly one float sample
// gives that sample's value. NaN and ±Inf are returned as they are; the caller
// decides what they mean. Every other result is an error:
//   - an empty vector wraps ErrNoData: the expression matched no series;
//   - a vector with more than one sample says how many; the expression must
//     aggregate them to one, e.g. with max();
//   - a native histogram sample, a range vector (matrix) or a string;
//   - an error answered by Prometheus, which wraps a *promv1.Error holding
//     its errorType and error message;
//   - running out of time, through ctx or Config.Timeout, wraps ErrTimeout.
//
// Warnings are returned whenever Prometheus sent some, also with an error.
func (q *Querier) Query(ctx context.Context, expr string, at time.Time) (float64, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()

	value, warnings, _, err := q.api.Query(ctx, expr, at, promv1.WithTimeout(serverTimeout(q.timeout)))
	if len(warnings) == 0 {
		warnings = nil
	}
	if err != nil {
		return 0, warnings, queryError(err)
	}
	v, err := single(value)
	return v, warnings, err
}

// single returns the one value of an instant query's result.
func single(value model.Value) (float64, error) {
	switch v := value.(type) {
	case *model.Scalar:
		return float64(v.Value), nil
	case model.Vector:
		switch len(v) {
		case 0:
			return 0, fmt.Errorf("empty vector: %w", ErrNoData)
		case 1:
			if v[0].Histogram != nil {
				return 0, fmt.Errorf("the expression returned a native histogram sample %s, not a number", v[0].Metric)
			}
			return float64(v[0].Value), nil
		default:
			return 0, fmt.Errorf("the expression returned %d samples (%s); it must aggregate them to exactly one, e.g. with max()",
				len(v), seriesList(v))
		}
	case model.Matrix:
		return 0, fmt.Errorf("the expression returned a range vector of %d series; an instant value is needed, "+
			"e.g. with rate() or max_over_time()", len(v))
	case nil:
		return 0, errors.New("prometheus answered without a result")
	default:
		return 0, fmt.Errorf("the expression returned a %s, not a scalar or an instant vector", value.Type())
	}
}

// seriesList names the first series of v, for an error message.
func seriesList(v model.Vector) string {
	names := make([]string, 0, maxShownSeries+1)
	for i, s := range v {
		if i == maxShownSeries {
			names = append(names, "...")
			break
		}
		names = append(names, s.Metric.String())
	}
	return strings.Join(names, ", ")
}

// queryError turns an error from the client into ours: timeouts wrap
// ErrTimeout, and Prometheus's errors keep their type and message.
func queryError(err error) error {
	var apiErr *promv1.Error
	if errors.As(err, &apiErr) {
		apiErr = fromBody(apiErr)
		if apiErr.Type == promv1.ErrTimeout {
			return fmt.Errorf("%w: prometheus: %w", ErrTimeout, apiErr)
		}
		if apiErr.Detail != "" {
			return fmt.Errorf("prometheus query failed: %w (response: %s)", apiErr, detail(apiErr.Detail))
		}
		return fmt.Errorf("prometheus query failed: %w", apiErr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("prometheus query failed: %w", err)
}

// fromBody recovers the errorType and error that Prometheus put in the body
// of an answer whose status code client_golang does not decode (only 400 and
// 422 are; a query timeout comes as 503 and an internal error as 500).
func fromBody(e *promv1.Error) *promv1.Error {
	if e.Detail == "" {
		return e
	}
	var body struct {
		Status    string           `json:"status"`
		ErrorType promv1.ErrorType `json:"errorType"`
		Error     string           `json:"error"`
	}
	if err := json.Unmarshal([]byte(e.Detail), &body); err != nil || body.Status != "error" || body.ErrorType == "" {
		return e
	}
	return &promv1.Error{Type: body.ErrorType, Msg: body.Error}
}

// detail shortens an unexpected response body to quote in an error.
func detail(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxDetail {
		s = s[:maxDetail] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// serverTimeout is d in a form that Prometheus parses as a duration: it takes
// a float of seconds or "1m30s"-like strings, but client_golang sends
// d.String(), which is "1.5s" for 1500ms.
func serverTimeout(d time.Duration) time.Duration {
	if d < time.Second {
		return max(d.Truncate(time.Millisecond), time.Millisecond)
	}
	return d.Truncate(time.Second)
}

// bearerAuth adds a bearer token to every request.
type bearerAuth struct {
	token string
	next  http.RoundTripper
}

// RoundTrip sends a copy of req with the Authorization header set.
func (b *bearerAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
