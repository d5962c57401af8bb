package kubectl

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// run runs the plugin with args and returns what it wrote.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "--version")
	if err != nil || !strings.HasPrefix(out, Name+" ") {
		t.Errorf("--version printed %q (%v), want a line starting with %q", out, err, Name)
	}
}

func TestPrintFollowsOutput(t *testing.T) {
	v := map[string]int{"paused": 1}
	for _, tt := range []struct{ output, want string }{
		{"json", "{\n  \"paused\": 1\n}\n"},
		{"yaml", "paused: 1\n"},
		{"", "text\n"},
	} {
		var out bytes.Buffer
		o := &Options{Output: tt.output, Streams: genericiooptions.IOStreams{Out: &out}}
		err := o.Print(v, func(w io.Writer) error {
			_, err := io.WriteString(w, "text\n")
			return err
		})
		if err != nil || out.String() != tt.want {
			t.Errorf("-o %q printed %q (%v), want %q", tt.output, out.String(), err, tt.want)
		}
	}
}

func TestBadSharedFlagsAreRefused(t *testing.T) {
	for _, args := range [][]string{{"noop"}, {"-o", "wide", "noop"}, {"--color", "sometimes", "noop"}} {
		cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
		cmd.AddCommand(&cobra.Command{Use: "noop", RunE: func(*cobra.Command, []string) error { return nil }})
		cmd.SetArgs(args)
		if err := cmd.Execute(); (err == nil) != (len(args) == 1) {
			t.Errorf("%v: error %v", args, err)
		}
	}
}

func TestColorIsOffOffATerminal(t *testing.T) {
	var out bytes.Buffer
	o := &Options{ColorMode: "auto", Streams: genericiooptions.IOStreams{Out: &out}}
	if o.Color() {
		t.Error("auto colours a buffer")
	}
	o.ColorMode = "always"
	if !o.Color() {
		t.Error("always does not colour")
	}
}
