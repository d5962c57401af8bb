package promsource

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// reply is one canned answer of a fake Prometheus.
type reply struct {
	code int
	body string
}

// answer serves r as Prometheus does: JSON with the given status code.
func answer(r reply) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(r.code)
		_, _ = io.WriteString(w, r.body)
	}
}

// success wraps data in a successful Prometheus API envelope.
func success(data string) reply {
	return reply{code: http.StatusOK, body: `{"status":"success","data":` + data + `}`}
}

// newServer starts a plain HTTP fake Prometheus serving h on /api/v1/query.
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	return newServerAt(t, "/api/v1/query", h)
}

// newServerAt starts a plain HTTP fake Prometheus serving h on path.
func newServerAt(t *testing.T, path string, h http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// newQuerier returns a Querier for cfg and fails the test if New fails.
func newQuerier(t *testing.T, cfg Config) *Querier {
	t.Helper()
	q, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) failed: %v", cfg, err)
	}
	return q
}

// parsePromDuration parses a duration as Prometheus's HTTP API does: a float
// of seconds, or a Prometheus duration string.
func parsePromDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	return time.Duration(d), err
}

var at = time.Unix(1700000000, 123000000)

func TestQueryResults(t *testing.T) {
	tests := []struct {
		name         string
		reply        reply
		want         float64
		wantNaN      bool
		wantWarnings []string
		wantIs       error
		wantContains []string
	}{
		{
			name:  "a scalar gives its value",
			reply: success(`{"resultType":"scalar","result":[1700000000,"3"]}`),
			want:  3,
		},
		{
			name: "a vector with one sample gives its value",
			reply: success(`{"resultType":"vector","result":[` +
				`{"metric":{"instance":"a"},"value":[1700000000.123,"42.5"]}]}`),
			want: 42.5,
		},
		{
			name:    "NaN is returned as it is",
			reply:   success(`{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}`),
			wantNaN: true,
		},
		{
			name:  "positive infinity is returned as it is",
			reply: success(`{"resultType":"scalar","result":[1700000000,"+Inf"]}`),
			want:  math.Inf(1),
		},
		{
			name:  "negative infinity is returned as it is",
			reply: success(`{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"-Inf"]}]}`),
			want:  math.Inf(-1),
		},
		{
			name:   "an empty vector is missing data, not zero",
			reply:  success(`{"resultType":"vector","result":[]}`),
			wantIs: ErrNoData,
		},
		{
			name: "warnings come back with an empty vector",
			reply: reply{code: http.StatusOK, body: `{"status":"success",` +
				`"data":{"resultType":"vector","result":[]},"warnings":["remote read failed"]}`},
			wantIs:       ErrNoData,
			wantWarnings: []string{"remote read failed"},
		},
		{
			name: "warnings come back with a value",
			reply: reply{code: http.StatusOK, body: `{"status":"success",` +
				`"data":{"resultType":"scalar","result":[1700000000,"1"]},"warnings":["w1","w2"]}`},
			want:         1,
			wantWarnings: []string{"w1", "w2"},
		},
		{
			name: "two samples are an error saying how many and how to aggregate",
			reply: success(`{"resultType":"vector","result":[` +
				`{"metric":{"instance":"a"},"value":[1700000000,"1"]},` +
				`{"metric":{"instance":"b"},"value":[1700000000,"2"]}]}`),
			wantContains: []string{"2 samples", "max()", `instance="a"`, `instance="b"`},
		},
		{
			name: "a native histogram sample is an error, not zero",
			reply: success(`{"resultType":"vector","result":[{"metric":{"__name__":"h"},` +
				`"histogram":[1700000000,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}]}`),
			wantContains: []string{"histogram"},
		},
		{
			name:         "a range vector is an error",
			reply:        success(`{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}`),
			wantContains: []string{"range vector"},
		},
		{
			name:         "a string is an error",
			reply:        success(`{"resultType":"string","result":[1700000000,"hello"]}`),
			wantContains: []string{"string"},
		},
		{
			name: "a bad_data error keeps its type and message",
			reply: reply{code: http.StatusBadRequest, body: `{"status":"error","errorType":"bad_data",` +
				`"error":"1:5: parse error: unexpected right parenthesis ')'"}`},
			wantContains: []string{"bad_data", "parse error: unexpected right parenthesis"},
		},
		{
			name: "an execution error keeps its type and message",
			reply: reply{code: http.StatusUnprocessableEntity, body: `{"status":"error","errorType":"execution",` +
				`"error":"query processing would load too many samples into memory"}`},
			wantContains: []string{"execution", "too many samples"},
		},
		{
			name: "a 503 error body keeps its type and message",
			reply: reply{code: http.StatusServiceUnavailable, body: `{"status":"error","errorType":"unavailable",` +
				`"error":"TSDB not ready"}`},
			wantContains: []string{"unavailable", "TSDB not ready"},
		},
		{
			name: "a query timed out in Prometheus is a timeout",
			reply: reply{code: http.StatusServiceUnavailable, body: `{"status":"error","errorType":"timeout",` +
				`"error":"query timed out in expression evaluation"}`},
			wantIs:       ErrTimeout,
			wantContains: []string{"query timed out in expression evaluation"},
		},
		{
			name: "an error status with a 200 code is an error",
			reply: reply{code: http.StatusOK, body: `{"status":"error","errorType":"internal",` +
				`"error":"something broke"}`},
			wantContains: []string{"internal", "something broke"},
		},
		{
			name:         "a proxy's HTML error page is quoted",
			reply:        reply{code: http.StatusBadGateway, body: "<html><body>502 Bad Gateway</body></html>"},
			wantContains: []string{"502", "Bad Gateway"},
		},
		{
			name:         "a body that is not JSON is an error",
			reply:        reply{code: http.StatusOK, body: "not json"},
			wantContains: []string{"bad_response"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, answer(tt.reply))
			q := newQuerier(t, Config{URL: srv.URL, Timeout: 5 * time.Second})

			got, warnings, err := q.Query(t.Context(), "up", at)

			if strings.Join(warnings, "|") != strings.Join(tt.wantWarnings, "|") {
				t.Errorf("warnings = %q, want %q", warnings, tt.wantWarnings)
			}
			wantErr := tt.wantIs != nil || len(tt.wantContains) > 0
			if !wantErr {
				if err != nil {
					t.Fatalf("Query failed: %v", err)
				}
				if tt.wantNaN {
					if !math.IsNaN(got) {
						t.Errorf("value = %v, want NaN", got)
					}
				} else if got != tt.want {
					t.Errorf("value = %v, want %v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Query returned %v, want an error", got)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not wrap %q", err, tt.wantIs)
			}
			if !errors.Is(tt.wantIs, ErrTimeout) && errors.Is(err, ErrTimeout) {
				t.Errorf("error %q wraps ErrTimeout, want another error", err)
			}
			if !errors.Is(tt.wantIs, ErrNoData) && errors.Is(err, ErrNoData) {
				t.Errorf("error %q wraps ErrNoData, want another error", err)
			}
			for _, s := range tt.wantContains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// request is what the fake Prometheus saw of one query.
type request struct {
	method, contentType, path, auth string
	form                            map[string][]string
}

// recorder answers a scalar and records each request it receives.
type recorder struct {
	mu       sync.Mutex
	requests []request
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec.mu.Lock()
	rec.requests = append(rec.requests, request{
		method:      r.Method,
		contentType: r.Header.Get("Content-Type"),
		path:        r.URL.Path,
		auth:        r.Header.Get("Authorization"),
		form:        r.Form,
	})
	rec.mu.Unlock()
	answer(success(`{"resultType":"scalar","result":[1700000000,"7"]}`))(w, r)
}

// only returns the one request recorded, failing the test otherwise.
func (rec *recorder) only(t *testing.T) request {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.requests) != 1 {
		t.Fatalf("server received %d requests, want 1", len(rec.requests))
	}
	return rec.requests[0]
}

func TestQuerySendsTheQuery(t *testing.T) {
	const expr = `max(rate(apiserver_request_total{code=~"5.."}[1m]))`
	tests := []struct {
		name        string
		token       string
		timeout     time.Duration
		at          time.Time
		wantAuth    string
		wantTimeout time.Duration
	}{
		{
			name:        "the expression, time, timeout and token are sent",
			token:       "s3cret",
			timeout:     2 * time.Second,
			at:          at,
			wantAuth:    "Bearer s3cret",
			wantTimeout: 2 * time.Second,
		},
		{
			name:        "a token read from a file loses its trailing newline",
			token:       "s3cret\n",
			timeout:     2 * time.Second,
			at:          at,
			wantAuth:    "Bearer s3cret",
			wantTimeout: 2 * time.Second,
		},
		{
			name:        "no token sends no Authorization header",
			timeout:     300 * time.Millisecond,
			at:          at,
			wantTimeout: 300 * time.Millisecond,
		},
		{
			name:        "a fractional timeout is sent in a form Prometheus parses",
			timeout:     1500 * time.Millisecond,
			at:          at,
			wantTimeout: time.Second,
		},
		{
			name:        "no timeout sends the default",
			at:          at,
			wantTimeout: DefaultTimeout,
		},
		{
			name:        "a zero time sends no time, so Prometheus uses its own now",
			timeout:     time.Second,
			wantTimeout: time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			srv := newServer(t, rec)
			q := newQuerier(t, Config{URL: srv.URL, BearerToken: tt.token, Timeout: tt.timeout})

			got, _, err := q.Query(t.Context(), expr, tt.at)
			if err != nil {
				t.Fatalf("Query failed: %v", err)
			}
			if got != 7 {
				t.Errorf("value = %v, want 7", got)
			}

			req := rec.only(t)
			// client_golang POSTs a form and falls back to GET; either is
			// what Prometheus accepts.
			switch req.method {
			case http.MethodPost:
				if req.contentType != "application/x-www-form-urlencoded" {
					t.Errorf("POST with Content-Type %q, want a form", req.contentType)
				}
			case http.MethodGet:
			default:
				t.Errorf("method = %s, want POST or GET", req.method)
			}
			if req.auth != tt.wantAuth {
				t.Errorf("Authorization = %q, want %q", req.auth, tt.wantAuth)
			}
			if got := req.form["query"]; len(got) != 1 || got[0] != expr {
				t.Errorf("query = %q, want %q", got, expr)
			}
			if tt.at.IsZero() {
				if got, ok := req.form["time"]; ok {
					t.Errorf("time = %q, want none", got)
				}
			} else {
				sec, err := strconv.ParseFloat(firstOf(req.form["time"]), 64)
				if err != nil {
					t.Fatalf("time %q is not a float of seconds: %v", req.form["time"], err)
				}
				if d := time.Duration(sec*1e9) - time.Duration(tt.at.UnixNano()); d.Abs() > time.Millisecond {
					t.Errorf("time = %q, want %v", req.form["time"], tt.at.UnixMilli())
				}
			}
			timeout, err := parsePromDuration(firstOf(req.form["timeout"]))
			if err != nil {
				t.Fatalf("Prometheus would reject the timeout parameter: %v", err)
			}
			if timeout != tt.wantTimeout {
				t.Errorf("timeout = %s, want %s", timeout, tt.wantTimeout)
			}
		})
	}
}

// firstOf returns the first of vs, or "" if there is none.
func firstOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func TestQueryFallsBackToGETWhenPOSTIsRefused(t *testing.T) {
	rec := &recorder{}
	var posts atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			http.Error(w, "read-only proxy", http.StatusMethodNotAllowed)
			return
		}
		rec.ServeHTTP(w, r)
	}))
	q := newQuerier(t, Config{URL: srv.URL, BearerToken: "tok"})

	got, _, err := q.Query(t.Context(), "vector(7)", at)
	if err != nil {
		t.Fatalf("Query failed: %v", err)
	}
	if got != 7 {
		t.Errorf("value = %v, want 7", got)
	}
	if posts.Load() != 1 {
		t.Errorf("server refused %d POSTs, want 1", posts.Load())
	}
	req := rec.only(t)
	if req.method != http.MethodGet || firstOf(req.form["query"]) != "vector(7)" || req.auth != "Bearer tok" {
		t.Errorf("fallback request = %+v, want a GET with the query and the token", req)
	}
}

func TestQueryUsesTheURLPathPrefix(t *testing.T) {
	rec := &recorder{}
	mux := http.NewServeMux()
	mux.Handle("/prometheus/api/v1/query", rec)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	q := newQuerier(t, Config{URL: srv.URL + "/prometheus/"})

	if _, _, err := q.Query(t.Context(), "up", at); err != nil {
		t.Fatalf("Query failed: %v", err)
	}
	if got := rec.only(t).path; got != "/prometheus/api/v1/query" {
		t.Errorf("path = %q, want /prometheus/api/v1/query", got)
	}
}

// slowServer answers only when the client gives up or the test ends.
func slowServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		answer(success(`{"resultType":"scalar","result":[1700000000,"1"]}`))(w, r)
	}))
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv
}

func TestQueryTimeouts(t *testing.T) {
	const short = 200 * time.Millisecond
	tests := []struct {
		name        string
		timeout     time.Duration
		ctx         func(context.Context) (context.Context, context.CancelFunc)
		wantTimeout bool
		wantIs      error
	}{
		{
			name:        "a server slower than Config.Timeout is a timeout",
			timeout:     short,
			ctx:         func(ctx context.Context) (context.Context, context.CancelFunc) { return ctx, func() {} },
			wantTimeout: true,
		},
		{
			name:    "a context deadline shorter than Config.Timeout is a timeout",
			timeout: time.Minute,
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, short)
			},
			wantTimeout: true,
		},
		{
			name:    "a cancelled context is not a timeout",
			timeout: time.Minute,
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(short, cancel)
				return ctx, cancel
			},
			wantIs: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := slowServer(t)
			q := newQuerier(t, Config{URL: srv.URL, Timeout: tt.timeout})
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()

			start := time.Now()
			_, _, err := q.Query(ctx, "up", at)
			elapsed := time.Since(start)

			if err == nil {
				t.Fatal("Query succeeded, want an error")
			}
			if errors.Is(err, ErrTimeout) != tt.wantTimeout {
				t.Errorf("errors.Is(%q, ErrTimeout) = %t, want %t", err, !tt.wantTimeout, tt.wantTimeout)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not wrap %q", err, tt.wantIs)
			}
			if elapsed > 10*short {
				t.Errorf("Query returned after %s, want about %s", elapsed, short)
			}
		})
	}
}

// newTLSServer starts an HTTPS fake Prometheus serving h, which does not log
// the handshake errors that the tests provoke.
func newTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/api/v1/query", h)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// caPEM returns the certificate of srv, PEM-encoded.
func caPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func TestQueryOverTLS(t *testing.T) {
	rec := &recorder{}
	srv := newTLSServer(t, rec)
	tests := []struct {
		name    string
		ca      []byte
		wantErr bool
	}{
		{name: "the server's CA makes the certificate trusted", ca: caPEM(srv)},
		{name: "without the CA the certificate is refused", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuerier(t, Config{URL: srv.URL, CAPEM: tt.ca, BearerToken: "tok"})

			got, _, err := q.Query(t.Context(), "up", at)

			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Query failed: %v", err)
				}
				if got != 7 {
					t.Errorf("value = %v, want 7", got)
				}
				return
			}
			var verr *tls.CertificateVerificationError
			if !errors.As(err, &verr) {
				t.Fatalf("error %v is not a certificate verification error", err)
			}
			if errors.Is(err, ErrTimeout) {
				t.Errorf("error %q wraps ErrTimeout", err)
			}
		})
	}
}

func TestQueryReusesConnections(t *testing.T) {
	var conns atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/api/v1/query", &recorder{})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	q := newQuerier(t, Config{URL: srv.URL, CAPEM: caPEM(srv)})

	for range 5 {
		if _, _, err := q.Query(t.Context(), "up", at); err != nil {
			t.Fatalf("Query failed: %v", err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("5 sequential queries opened %d connections, want 1", n)
	}
}

func TestQueryIsSafeForConcurrentUse(t *testing.T) {
	srv := newServer(t, &recorder{})
	q := newQuerier(t, Config{URL: srv.URL, BearerToken: "tok"})

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if _, _, err := q.Query(t.Context(), "up", at); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Query failed: %v", err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "an http URL is accepted", cfg: Config{URL: "http://prometheus.monitoring:9090"}},
		{name: "an https URL with a path prefix is accepted", cfg: Config{URL: "https://thanos.example/prometheus"}},
		{
			name: "a CA bundle with an http URL is accepted and unused",
			cfg:  Config{URL: "http://prometheus:9090", CAPEM: caPEMForNew(t)},
		},
		{name: "an ftp URL is refused", cfg: Config{URL: "ftp://prometheus:9090"}, wantErr: "http or https"},
		{name: "a URL without a scheme is refused", cfg: Config{URL: "prometheus:9090"}, wantErr: "http or https"},
		{name: "an empty URL is refused", cfg: Config{}, wantErr: "http or https"},
		{name: "a URL without a host is refused", cfg: Config{URL: "http:///api"}, wantErr: "no host"},
		{name: "a URL that does not parse is refused", cfg: Config{URL: "http://[::1"}, wantErr: "parsing"},
		{name: "a URL with a query is refused", cfg: Config{URL: "http://p:9090/?x=1"}, wantErr: "query"},
		{
			name:    "a CA bundle that is not PEM is refused",
			cfg:     Config{URL: "https://p:9090", CAPEM: []byte("not a certificate")},
			wantErr: "no pem certificate",
		},
		{
			name: "a PEM bundle without a certificate is refused",
			cfg: Config{URL: "https://p:9090", CAPEM: pem.EncodeToMemory(
				&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("key")})},
			wantErr: "no pem certificate",
		},
		{
			name:    "a negative timeout is refused",
			cfg:     Config{URL: "http://p:9090", Timeout: -time.Second},
			wantErr: "negative",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || q == nil {
					t.Fatalf("New = %v, %v; want a Querier", q, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// caPEMForNew returns some valid CA certificate, PEM-encoded.
func caPEMForNew(t *testing.T) []byte {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return caPEM(srv)
}

func TestServerTimeoutParsesInPrometheus(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		want time.Duration
	}{
		{name: "whole seconds are kept", in: 5 * time.Second, want: 5 * time.Second},
		{name: "minutes and seconds are kept", in: 90 * time.Second, want: 90 * time.Second},
		{name: "fractions above a second are truncated", in: 2500 * time.Millisecond, want: 2 * time.Second},
		{name: "milliseconds below a second are kept", in: 250 * time.Millisecond, want: 250 * time.Millisecond},
		{name: "below a millisecond becomes one", in: 100 * time.Microsecond, want: time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := serverTimeout(tt.in)
			if got != tt.want {
				t.Errorf("serverTimeout(%s) = %s, want %s", tt.in, got, tt.want)
			}
			parsed, err := parsePromDuration(got.String())
			if err != nil || parsed != got {
				t.Errorf("Prometheus parses %q as %s, %v; want %s", got.String(), parsed, err, got)
			}
		})
	}
}
