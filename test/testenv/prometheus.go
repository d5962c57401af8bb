package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/promserver"
)

// PrometheusBinary is the pinned Prometheus server's path, from
// LOADSHED_PROMETHEUS (which `make test` sets); it fails the test when unset.
func PrometheusBinary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("LOADSHED_PROMETHEUS")
	if bin == "" {
		tb.Fatal("LOADSHED_PROMETHEUS is not set: run `make test`, or `make prometheus` and " +
			"export LOADSHED_PROMETHEUS=$PWD/bin/prometheus-<version>")
	}
	return bin
}

// StartPrometheus starts a Prometheus server that scrapes every
// kube-apiserver of the control plane every interval, job "apiserver" (see
// promserver.StartForCluster), and stops it when the test ends. When the
// test failed, the end of Prometheus's log is in its output.
func (e *Env) StartPrometheus(tb testing.TB, interval time.Duration) *promserver.Server {
	tb.Helper()
	dir := tb.TempDir()
	s, err := promserver.StartForCluster(context.Background(), e, promserver.Options{
		Binary: PrometheusBinary(tb), Dir: dir, ScrapeInterval: interval})
	if err != nil {
		logTail(tb, dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			logTail(tb, dir)
		}
	})
	return s
}

// logTail logs the last lines of Prometheus's log in dir.
func logTail(tb testing.TB, dir string) {
	tb.Helper()
	data, err := os.ReadFile(dir + "/prometheus.log")
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	tb.Logf("the last lines of Prometheus's log:\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
}
