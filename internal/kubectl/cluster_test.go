package kubectl

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/ptr"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func TestReleaseNeedsExactlyOneScope(t *testing.T) {
	for _, args := range [][]string{
		{"release"},
		{"release", "telemetry/agent", "--all"},
		{"release", "--policy", "p", "--all"},
		{"release", "a", "b"},
		{"release", "Not_A/Name"},
	} {
		cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
		cmd.SetArgs(args)
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestDaemonSetArg(t *testing.T) {
	o := &Options{Config: genericclioptions.NewConfigFlags(false)}
	o.Config.Namespace = ptr.To("payments")
	for _, tt := range []struct{ arg, want string }{
		{"telemetry/agent", "telemetry/agent"},
		{"agent", "payments/agent"},
	} {
		got, err := daemonSetArg(o, tt.arg)
		if err != nil || got.String() != tt.want {
			t.Errorf("%q: %v (%v), want %s", tt.arg, got, err, tt.want)
		}
	}
	if _, err := daemonSetArg(o, "a/b/c"); err == nil {
		t.Error("a/b/c: no error")
	}
}

// TestPaintKeepsColumnsAligned: every painted cell carries the same
// invisible bytes, so a column of states stays aligned in a table.
func TestPaintKeepsColumnsAligned(t *testing.T) {
	o := &Options{ColorMode: "always"}
	states := []string{string(v1alpha1.TriggerFiring), string(v1alpha1.TriggerOK), string(v1alpha1.TriggerPending), "Normal"}
	var buf bytes.Buffer
	sc := newScribe(&buf)
	sc.table()
	for _, s := range states {
		sc.printf("%s\tx\n", paint(o, s))
	}
	sc.flush()
	if sc.err != nil {
		t.Fatal(sc.err)
	}
	col := -1
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		i := strings.LastIndex(line, "x")
		if col >= 0 && i != col {
			t.Errorf("columns not aligned:\n%q", buf.String())
		}
		col = i
	}
	if !strings.Contains(buf.String(), red+"Firing"+reset) {
		t.Errorf("Firing is not red: %q", buf.String())
	}
}
