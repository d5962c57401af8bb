// Package release tests the release kit as make builds it: every command's
// --version, hack/version.sh, the OCI image and SBOMs of `make image` read
// back from disk, and that the Dockerfile builds with the same flags from the
// same script. See docs/release.md.
package release_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// root is the repository checkout.
func root(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// run runs a command in the checkout with env added to the test's own
// (less make's variables, so that a make run inside `make test` is a fresh
// one), and returns its standard output.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root(t)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	if took := time.Since(start); took > time.Second {
		t.Logf("%s %s: %s", name, strings.Join(args, " "), took.Round(100*time.Millisecond))
	}
	return string(out)
}

// revision is the checkout's commit.
func revision(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(run(t, nil, "hack/version.sh", "revision"))
}
