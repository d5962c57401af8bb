package version_test

import (
	"bytes"
	"flag"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loadshed/loadshed/internal/version"
)

func TestLineNamesTheBuild(t *testing.T) {
	stamp(t, "v1.2.3-dev.abc1234", "abc1234def")
	want := "loadshed-operator v1.2.3-dev.abc1234 (revision abc1234def, " +
		runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	if got := version.Line("loadshed-operator"); got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

func TestAnUnstampedBuildIsDev(t *testing.T) {
	if !strings.HasPrefix(version.Line("x"), "x dev (revision unknown, go") {
		t.Errorf("Line of an unstamped test binary = %q, want it to start with %q",
			version.Line("x"), "x dev (revision unknown, go")
	}
}

func TestTheVersionFlagPrintsOneLineAndExitsZero(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--version=true"}} {
		var out bytes.Buffer
		exited := -1
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Var(&version.Flag{Command: "x", Out: &out, Exit: func(code int) { exited = code }}, "version", "")
		if err := fs.Parse(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if exited != 0 {
			t.Errorf("%v: exited with %d, want 0", args, exited)
		}
		if got, want := out.String(), version.Line("x")+"\n"; got != want {
			t.Errorf("%v: printed %q, want %q", args, got, want)
		}
	}
}

func TestWithoutTheVersionFlagNothingHappens(t *testing.T) {
	var out bytes.Buffer
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Var(&version.Flag{Command: "x", Out: &out, Exit: func(int) { t.Error("exited") }}, "version", "")
	if err := fs.Parse([]string{"--version=false", "arg"}); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || fs.Arg(0) != "arg" {
		t.Errorf("printed %q, args %v", out.String(), fs.Args())
	}
}

func TestTheBuildInfoGaugeIsOneWithTheBuildsLabels(t *testing.T) {
	stamp(t, "v0.1.0", "0123456789abcdef")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(version.NewCollector())
	want := `# HELP loadshed_build_info Always 1; the labels name the build of the operator: version, revision and Go release.
# TYPE loadshed_build_info gauge
loadshed_build_info{goversion="` + runtime.Version() + `",revision="0123456789abcdef",version="v0.1.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "loadshed_build_info"); err != nil {
		t.Error(err)
	}
}

// stamp sets Version and Revision as -ldflags -X would, until the test ends.
func stamp(t *testing.T, v, rev string) {
	t.Helper()
	oldV, oldRev := version.Version, version.Revision
	version.Version, version.Revision = v, rev
	t.Cleanup(func() { version.Version, version.Revision = oldV, oldRev })
}
