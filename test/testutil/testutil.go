// Package testutil holds what the tests share: waiting until a check
// passes, a client configuration that impersonates a ServiceAccount, and the
// recorded kube-apiserver scrapes. It imports nothing of loadshed, so that
// the tests of any package, inside or outside it, can use it.
package testutil

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Poll calls check every interval until it returns nil, and returns nil;
// or, after timeout, an error with check's last error.
func Poll(timeout, interval time.Duration, check func() error) error {
	var last error
	poll := func(context.Context) (bool, error) {
		last = check()
		return last == nil, nil
	}
	err := wait.PollUntilContextTimeout(context.Background(), interval, timeout, true, poll)
	if err != nil {
		return fmt.Errorf("gave up after %v: %w", timeout, last)
	}
	return nil
}

// Eventually polls check every 100 ms until it returns nil, or fails the
// test with its last error after timeout.
func Eventually(tb testing.TB, timeout time.Duration, check func() error) {
	tb.Helper()
	if err := Poll(timeout, 100*time.Millisecond, check); err != nil {
		tb.Fatal(err)
	}
}

// AsServiceAccount returns a copy of cfg that impersonates a ServiceAccount
// with the groups the API server gives its tokens, so that RBAC and API
// Priority and Fairness treat its requests as that ServiceAccount's. It has
// no client-side rate limit: the tests that flood mean it.
func AsServiceAccount(cfg *rest.Config, namespace, name string) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.QPS, out.Burst = -1, 0
	out.Impersonate = rest.ImpersonationConfig{
		UserName: serviceaccount.MakeUsername(namespace, name),
		Groups:   append(serviceaccount.MakeGroupNames(namespace), user.AllAuthenticated),
	}
	return out
}

var (
	recordedMu sync.Mutex
	recorded   = map[string][]byte{}
)

// Recorded returns a recorded kube-apiserver /metrics payload, unzipped:
// name is a file of internal/metrics/testdata without its .gz, such as
// "apiserver.txt" (text format) or "apiserver.pb" (delimited protobuf). Each
// is read once per test binary.
func Recorded(tb testing.TB, name string) []byte {
	tb.Helper()
	recordedMu.Lock()
	defer recordedMu.Unlock()
	if b, ok := recorded[name]; ok {
		return b
	}
	b, err := ReadGzip(filepath.Join(repoRoot(), "internal", "metrics", "testdata", name+".gz"))
	if err != nil {
		tb.Fatal(err)
	}
	recorded[name] = b
	return b
}

// ReadGzip returns the unzipped content of a gzipped file.
func ReadGzip(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return io.ReadAll(zr)
}

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FirstEventAt returns when the first event of a reason regarding the
// object named regarding happened; zero if none did.
func FirstEventAt(t *testing.T, c client.Reader, regarding, reason string) time.Time {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := c.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	for _, e := range list.Items {
		if e.Regarding.Name != regarding || e.Reason != reason {
			continue
		}
		if at := e.EventTime.Time; first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}
