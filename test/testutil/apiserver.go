package testutil

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// The APF dump endpoint, as package apfdump names it (testutil imports
// nothing of loadshed).
const apfDumpPath = "/debug/api_priority_and_fairness/dump_requests"

// RecordedAPIServer serves over TLS the recorded /metrics payload (see
// Recorded), in protobuf when asked for it and serveProtobuf is set, else
// in text, after delay; and the recorded APF dump of internal/apfdump's
// testdata. It counts the requests it gets, and stops when the test ends.
func RecordedAPIServer(t *testing.T, serveProtobuf bool, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	pb, text := Recorded(t, "apiserver.pb"), Recorded(t, "apiserver.txt")
	dump := filepath.Join(repoRoot(), "internal", "apfdump", "testdata", "dump_requests.txt")
	hits := new(atomic.Int64)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == apfDumpPath && r.URL.Query().Get("includeRequestDetails") != "" {
			http.ServeFile(w, r, dump)
			return
		}
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if serveProtobuf && strings.Contains(r.Header.Get("Accept"), "protobuf") {
			w.Header().Set("Content-Type", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
			_, _ = w.Write(pb)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(text)
	}))
	t.Cleanup(srv.Close)
	return srv, hits
}

// ConfigFor is a client configuration that reaches a test server over TLS,
// trusting its certificate.
func ConfigFor(srv *httptest.Server) *rest.Config {
	return &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: PEMOf(srv)}}
}

// PEMOf is a test server's certificate, PEM-encoded.
func PEMOf(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}
