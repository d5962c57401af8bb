package kubectl

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loadshed/loadshed/internal/recording"
	"github.com/loadshed/loadshed/internal/scrape"
)

// TestRecordsOutputFlagNamesTheFile: record's -o is the file, shadowing the
// plugin's -o (json|yaml) without a clash, and what it refuses says why.
func TestRecordsOutputFlagNamesTheFile(t *testing.T) {
	out, _, err := run(t, "record", "--help")
	if err != nil || !strings.Contains(out, "-o, --output string") || !strings.Contains(out, "The file to write") {
		t.Fatalf("record --help: %v\n%s", err, out)
	}
	existing := filepath.Join(t.TempDir(), "rec.lsrec")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"record", "--duration", "1m"}, "-o FILE is required"},
		{[]string{"record", "-o", "json"}, "--duration is required"},
		{[]string{"record", "-o", existing, "--duration", "1m"}, "exists: choose another file, or pass --overwrite"},
		{[]string{"record", "-o", "x", "--duration", "1m", "--interval", "0s"}, "--interval and --timeout must be positive"},
	} {
		_, stderr, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: %v (stderr %q), want an error saying %q", tt.args, err, stderr, tt.want)
		}
	}
	if b, _ := os.ReadFile(existing); string(b) != "x" {
		t.Error("a refused record touched the existing file")
	}
}

func TestBytesOf(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 3 << 20: "3.0 MiB"} {
		if got := bytesOf(n); got != want {
			t.Errorf("bytesOf(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestProgressStopsAFirstRoundThatReadNothingAndWarnsOnce: a first round
// that read no API server ends record; a fallback is warned of once, not
// every round.
func TestProgressStopsAFirstRoundThatReadNothingAndWarnsOnce(t *testing.T) {
	var file, out bytes.Buffer
	w, err := recording.NewWriter(&file, recording.Header{Families: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &progress{out: &out, w: w, file: "f"}
	failed := &scrape.Round[*recording.Sink]{Scraped: map[string]*recording.Sink{},
		Failed: map[string]string{"https://10.0.0.1:6443": "HTTP 403"}}
	if err := w.WriteRound(failed); err != nil {
		t.Fatal(err)
	}
	if err := p.round(failed, scrape.Status{}); !errors.Is(err, errNothingRead) {
		t.Errorf("a first round that read nothing: %v, want errNothingRead", err)
	}

	p = &progress{out: &out, w: w, file: "f"}
	read := &scrape.Round[*recording.Sink]{Scraped: map[string]*recording.Sink{"https://lb:6443": w.NewSink("https://lb:6443")}}
	fallback := scrape.Status{Fallback: "could not read the API servers' endpoints (forbidden): scraped https://lb:6443"}
	for range 3 {
		if err := w.WriteRound(read); err != nil {
			t.Fatal(err)
		}
		if err := p.round(read, fallback); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(out.String(), "warning:"); n != 1 {
		t.Errorf("3 rounds through the fallback warned %d times:\n%s", n, out.String())
	}
}
