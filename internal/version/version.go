// Package version tells which build of loadshed is running: the version and
// revision the build stamped into it (hack/build.sh sets them with
// -ldflags -X), the Go release it was built with and its platform. Every
// command under cmd/ answers --version with Line, and the operator exports
// the same as the loadshed_build_info gauge.
package version

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the SemVer of the build with its leading v (hack/version.sh),
// or "dev" when the build did not stamp one.
var Version = "dev"

// Revision is the full git commit the build was made from, or "unknown"
// when the build did not stamp one.
var Revision = "unknown"

// GoVersion is the Go release the binary was built with.
func GoVersion() string {
	return runtime.Version()
}

// Line is the one line a command prints for --version, e.g.
// "loadshed-operator v0.1.0 (revision 0123abc..., go1.26.8, linux/amd64)".
func Line(command string) string {
	return fmt.Sprintf("%s %s (revision %s, %s, %s/%s)",
		command, Version, Revision, GoVersion(), runtime.GOOS, runtime.GOARCH)
}

// AddFlag adds --version to fs: given, it prints Line(command) on standard
// output and exits 0 while the flags are parsed. A command's main calls it
// once, before parsing its flags:
//
//	version.AddFlag(flag.CommandLine, "loadshed-operator")
func AddFlag(fs *flag.FlagSet, command string) {
	fs.Var(&Flag{Command: command, Out: os.Stdout, Exit: os.Exit}, "version",
		"Print the version of this build and exit.")
}

// Flag is the --version flag: a boolean flag that, set, writes Line(Command)
// to Out and calls Exit(0).
type Flag struct {
	// Command names the binary in the line printed.
	Command string
	// Out receives the line.
	Out io.Writer
	// Exit ends the program.
	Exit func(code int)
}

// IsBoolFlag lets --version be given without a value.
func (f *Flag) IsBoolFlag() bool { return true }

// String is the flag's default, false.
func (f *Flag) String() string { return "false" }

// Set prints the version and exits when the flag is true.
func (f *Flag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	if v {
		if _, err := fmt.Fprintln(f.Out, Line(f.Command)); err != nil {
			return err
		}
		f.Exit(0)
	}
	return nil
}

// Label keys of the build info gauge.
const (
	labelVersion   = "version"
	labelRevision  = "revision"
	labelGoVersion = "goversion"
)

// NewCollector returns the loadshed_build_info gauge: always 1, with this
// build's version, revision and Go release as labels, so that a query can
// join any of the operator's series with the build that produced it.
func NewCollector() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loadshed_build_info",
		Help: "Always 1; the labels name the build of the operator: version, revision and Go release.",
	}, []string{labelVersion, labelRevision, labelGoVersion})
	g.WithLabelValues(Version, Revision, GoVersion()).Set(1)
	return g
}
