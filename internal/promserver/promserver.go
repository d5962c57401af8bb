// Package promserver runs a real Prometheus server (bin/prometheus-<version>,
// built by `make prometheus` from hack/prometheus) as its own process, for
// the tests and the replay: it scrapes the targets it is given over HTTPS,
// keeps its TSDB in a temporary directory, and serves its HTTP API over
// HTTPS with a certificate of its own, so that a client of it (the
// operator's Prometheus source) verifies it against a CA, as it would a
// Prometheus in a cluster. StartForCluster scrapes every kube-apiserver of a
// local cluster.
//
// The binary is built without the builtinassets tag: its web UI finds no
// assets and its pages fail, but the HTTP API (/api/v1/query, query_range,
// /-/ready), all that the tests and the operator use, works.
package promserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/internal/metrics/promsource"
)

// Options say how to run Prometheus.
type Options struct {
	// Binary is the Prometheus server's binary (LOADSHED_PROMETHEUS in the
	// tests, which `make test` sets).
	Binary string
	// Dir receives the configuration, the TLS files and the log, which
	// stay after Stop; the TSDB goes to a temporary directory removed by
	// Stop.
	Dir string
	// Jobs are the scrape jobs.
	Jobs []Job
	// ScrapeInterval is how often every target is scraped; 1s when zero.
	// ScrapeTimeout bounds a scrape: the interval when zero, never more.
	ScrapeInterval, ScrapeTimeout time.Duration
	// Name tells servers apart in Dir (their files start with it);
	// "prometheus" when empty.
	Name string
}

// Job is a scrape job over HTTPS with a bearer token.
type Job struct {
	// Name is the job label.
	Name string
	// Targets are the endpoints it scrapes.
	Targets []Target
	// CA is the PEM bundle that signs the targets' serving certificates.
	CA []byte
	// ServerName is the name their certificates are verified for; the
	// address's host when empty.
	ServerName string
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// MetricsPath is the path scraped; /metrics when empty.
	MetricsPath string
}

// Target is one endpoint of a job.
type Target struct {
	// Address is the host:port Prometheus dials.
	Address string
	// Instance is the target's instance label; Address when empty.
	Instance string
}

// Server is a running Prometheus.
type Server struct {
	// URL is the base URL of its HTTP API (https, on a loopback port).
	URL string
	// CA is the PEM certificate that signs its serving certificate: what a
	// client of it trusts (a policy's source.prometheus.caSecretRef).
	CA []byte
	// CAFile is the path of a copy of CA (for curl --cacert).
	CAFile string
	// Log is the path of its log, kept after Stop.
	Log string
	// Config is the path of its configuration file.
	Config string
	cmd    *exec.Cmd
	// exited is closed once the process has ended (and been waited for).
	exited chan struct{}
	data   string
}

// Start writes the configuration and starts Prometheus, and waits until it
// is ready (/-/ready). Stop it when done.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Binary == "" {
		return nil, errors.New("the Prometheus binary is not known: run `make prometheus` (make test passes it as LOADSHED_PROMETHEUS)")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("the Prometheus binary: %w (run `make prometheus`)", err)
	}
	if opts.Dir == "" {
		return nil, errors.New("no directory for Prometheus's configuration and log (Options.Dir)")
	}
	name := cmp.Or(opts.Name, "prometheus")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{URL: "https://" + addr, Log: filepath.Join(opts.Dir, name+".log"),
		Config: filepath.Join(opts.Dir, name+".yml")}
	args, err := s.writeFiles(opts, name, addr)
	if err != nil {
		return nil, err
	}
	if s.data, err = os.MkdirTemp("", "loadshed-prometheus-"); err != nil {
		return nil, err
	}
	args = append(args, "--storage.tsdb.path="+s.data)
	if err := s.start(opts.Binary, args); err != nil {
		_ = os.RemoveAll(s.data)
		return nil, err
	}
	if err := s.waitReady(ctx, time.Minute); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// writeFiles writes the scrape configuration, the bearer tokens, the CAs
// and the serving certificate into opts.Dir, and returns Prometheus's flags
// (but the TSDB's).
func (s *Server) writeFiles(opts Options, name, addr string) ([]string, error) {
	write := func(file string, data []byte) (string, error) {
		path := filepath.Join(opts.Dir, name+"-"+file)
		return path, os.WriteFile(path, data, 0o600)
	}
	cfg, err := scrapeConfig(opts, write)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.Config, cfg, 0o600); err != nil {
		return nil, err
	}
	ca, cert, key, err := servingCert()
	if err != nil {
		return nil, err
	}
	s.CA = ca
	if s.CAFile, err = write("ca.crt", ca); err != nil {
		return nil, err
	}
	certFile, err := write("tls.crt", cert)
	if err != nil {
		return nil, err
	}
	keyFile, err := write("tls.key", key)
	if err != nil {
		return nil, err
	}
	web, err := yaml.Marshal(map[string]any{"tls_server_config": map[string]string{"cert_file": certFile, "key_file": keyFile}})
	if err != nil {
		return nil, err
	}
	webFile, err := write("web.yml", web)
	if err != nil {
		return nil, err
	}
	return []string{"--config.file=" + s.Config, "--web.config.file=" + webFile, "--web.listen-address=" + addr,
		"--storage.tsdb.retention.time=1d", "--log.level=info"}, nil
}

// start runs the binary, its output appended to the log.
func (s *Server) start(bin string, args []string) error {
	log, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The process gets its own copy of the descriptor.
	defer func() { _ = log.Close() }()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting Prometheus: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	return nil
}

// waitReady polls /-/ready until Prometheus answers 200, or fails when the
// process exits first (its port taken, a bad configuration: the log says).
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	hc, err := s.httpClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("prometheus exited before it was ready (%v); its log: %s", s.cmd.ProcessState, s.Log)
		case <-ctx.Done():
			return fmt.Errorf("prometheus was not ready within %v (log: %s): %w", timeout, s.Log, ctx.Err())
		case <-tick.C:
		}
		if ready(ctx, hc, s.URL+"/-/ready") {
			return nil
		}
	}
}

func ready(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// httpClient trusts the server's CA.
func (s *Server) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CA) {
		return nil, errors.New("prometheus's CA: no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// Source is how the operator's Prometheus source (and any client of
// promsource) reaches this server.
func (s *Server) Source() promsource.Config {
	return promsource.Config{URL: s.URL, CAPEM: s.CA}
}

// Querier runs instant queries against the server, as the operator does.
func (s *Server) Querier() (*promsource.Querier, error) { return promsource.New(s.Source()) }

// WaitForTargets waits until n targets of the job are up (their last scrape
// succeeded).
func (s *Server) WaitForTargets(ctx context.Context, job string, n int, timeout time.Duration) error {
	q, err := s.Querier()
	if err != nil {
		return err
	}
	expr := fmt.Sprintf("count(up{job=%q} == 1)", job)
	deadline := time.Now().Add(timeout)
	for {
		v, _, err := q.Query(ctx, expr, time.Time{})
		if err == nil && int(v) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d targets of job %s up after %v, want %d (log: %s): %w", int(v), job, timeout, n, s.Log,
				cmp.Or(err, errors.New("some are down")))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Stop ends Prometheus as localcluster.StopProcess does (SIGINT, SIGKILL
// if it has not ended within 10s) and removes its TSDB; the log and the
// configuration stay. It may be called more than once.
func (s *Server) Stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.cmd = nil
	}
	if s.data != "" {
		_ = os.RemoveAll(s.data)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
