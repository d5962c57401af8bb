package recording

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/scrape"
	"github.com/loadshed/loadshed/internal/signals"

	"github.com/loadshed/loadshed/test/testutil"
)

// allSignals are the catalogue's signals.
var allSignals = []v1alpha1.Signal{
	v1alpha1.SignalInflightRequests, v1alpha1.SignalInqueueRequests, v1alpha1.SignalRejectedRequestsPerSecond,
	v1alpha1.SignalMutatingLatencyP99, v1alpha1.SignalReadLatencyP99, v1alpha1.SignalListLatencyP99,
	v1alpha1.SignalRequestsPerSecond, v1alpha1.SignalListRequestsPerSecond, v1alpha1.SignalSeatUtilization,
	v1alpha1.SignalEtcdLatencyP99, v1alpha1.SignalTerminatedRequestsPerSecond, v1alpha1.SignalScrapeLatency,
	v1alpha1.SignalSingleObjectDurationP99, v1alpha1.SignalListDurationP99, v1alpha1.SignalQueueWaitP99,
	v1alpha1.SignalTimedOutRequestsPerSecond,
}

// allAccums are what every catalogue signal and attribution fold.
func allAccums(t *testing.T) []signals.Accumulator {
	t.Helper()
	accums := []signals.Accumulator{signals.DispatchedByFlowSchema, signals.RejectedByFlowSchema, signals.SeatsByFlowSchema}
	for _, sig := range allSignals {
		q, err := signals.ForTrigger(&policy.Trigger{Name: "t", Signal: sig, Window: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		accums = append(accums, q.Accumulators()...)
	}
	return accums
}

// payload is a recorded /metrics response.
type payload struct {
	contentType string
	data        []byte
}

func recorded(t *testing.T) (text, pb *payload) {
	t.Helper()
	return &payload{"text/plain; version=0.0.4", testutil.Recorded(t, "apiserver.txt")},
		&payload{"application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
			testutil.Recorded(t, "apiserver.pb")}
}

// feed parses a payload once and hands each sample, changed by mutate
// (which drops it by returning false), to every sink.
func feed(t *testing.T, p *payload, mutate func(i int, s *exposition.Sample) bool, sinks ...scrape.Sink) {
	t.Helper()
	i := 0
	err := exposition.Parse(p.contentType, p.data, exposition.Want(signals.CatalogueFamilies()...), func(s *exposition.Sample) {
		i++
		if mutate != nil && !mutate(i, s) {
			return
		}
		for _, sink := range sinks {
			sink.Add(s)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newWriter writes a recording of the catalogue's families into a file of
// the test's.
func newWriter(t *testing.T) (*Writer, *os.File) {
	t.Helper()
	return newWriterOf(t, Snapshot{})
}

// newWriterOf is newWriter with a snapshot.
func newWriterOf(t *testing.T, snap Snapshot) (*Writer, *os.File) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "rec.lsr"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	w, err := NewWriter(f, Header{Started: time.Now(), Interval: metav1.Duration{Duration: time.Second},
		Families: signals.CatalogueFamilies(), Server: "https://127.0.0.1:6443", Snapshot: snap})
	if err != nil {
		t.Fatal(err)
	}
	return w, f
}

// step is one round of the test's two instances, written and folded live.
type step struct {
	// a and b give each instance's payload and its change; a nil payload
	// is a failed scrape.
	a, b       *payload
	mutA, mutB func(int, *exposition.Sample) bool
	extra      *exposition.Sample
}

const instA, instB = "https://192.0.2.1:6443", "https://192.0.2.2:6443"

// roundOf writes one step and returns the round the live sampler would
// have folded from the same samples.
func roundOf(t *testing.T, w *Writer, accums []signals.Accumulator, at time.Time, s step) *signals.Round {
	t.Helper()
	rec := &scrape.Round[*Sink]{T: at, Scraped: map[string]*Sink{}, Failed: map[string]string{}, ScrapeSeconds: 0.25,
		Clients: map[string]apfdump.Summary{}, ClientsFailed: map[string]string{}}
	live := &signals.Round{T: at, Instances: map[string]map[string]signals.Result{}, Failed: map[string]string{},
		ScrapeSeconds: 0.25, Clients: map[string]apfdump.Summary{}, ClientsFailed: map[string]string{}}
	for _, inst := range []struct {
		name string
		data *payload
		mut  func(int, *exposition.Sample) bool
	}{{instA, s.a, s.mutA}, {instB, s.b, s.mutB}} {
		if inst.data == nil {
			rec.Failed[inst.name], live.Failed[inst.name] = "timed out after 1s", "timed out after 1s"
			rec.TimedOut, live.TimedOut = true, true
			continue
		}
		sink, folder := w.NewSink(inst.name), signals.NewFolder(accums)
		feed(t, inst.data, inst.mut, sink, folder)
		if s.extra != nil {
			sink.Add(s.extra)
			folder.Add(s.extra)
		}
		rec.Scraped[inst.name], live.Instances[inst.name] = sink, folder.Results()
	}
	if _, ok := rec.Scraped[instA]; ok {
		held := apfdump.Summary{Total: apfdump.Load{Requests: 25, Waiting: 3, Seats: 40},
			ByUser: map[string]apfdump.Load{"system:serviceaccount:telemetry:agent": {Requests: 20, Waiting: 3, Seats: 36}}}
		rec.Clients[instA], live.Clients[instA] = held, held
	}
	if _, ok := rec.Scraped[instB]; ok {
		rec.ClientsFailed[instB], live.ClientsFailed[instB] = "HTTP 403 from dump", "HTTP 403 from dump"
	}
	if err := w.WriteRound(rec); err != nil {
		t.Fatal(err)
	}
	return live
}

// TestRecordedRoundsFoldToTheLiveResults: rounds written from a real
// kube-apiserver's scrapes, read back and folded for every catalogue signal
// and attribution, give exactly the rounds the sampler folded from the same
// samples: across changed values (integers and not), series gone and back,
// a new series, an instance failing and coming back afresh.
func TestRecordedRoundsFoldToTheLiveResults(t *testing.T) {
	text, pb := recorded(t)
	accums := allAccums(t)
	bump := func(i int, s *exposition.Sample) bool {
		switch i % 7 {
		case 0:
			return false // gone this round
		case 1:
			s.Value += 3
		case 2:
			s.Value += 0.5
		}
		return true
	}
	newSeries := exposition.NewSample(signals.FamilyInflight, exposition.SuffixNone, 0, 7,
		[]exposition.LabelPair{{Name: "request_kind", Value: "recorded"}})
	steps := []step{
		{a: text, b: pb},
		{a: text, mutA: bump},
		{a: text, mutA: bump, b: text, mutB: bump},
		{a: text, b: text, extra: newSeries},
		{a: pb, b: text, mutB: bump},
	}
	w, f := newWriter(t)
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 123456789, time.UTC)
	live := make([]*signals.Round, 0, len(steps))
	for i, s := range steps {
		live = append(live, roundOf(t, w, accums, t0.Add(time.Duration(i)*time.Second), s))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	got, err := rec.Rounds(accums)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(live) {
		t.Fatalf("read %d rounds, wrote %d", len(got), len(live))
	}
	for i := range live {
		if !got[i].T.Equal(live[i].T) {
			t.Errorf("round %d: at %v, want %v", i, got[i].T, live[i].T)
		}
		got[i].T = live[i].T
		if !reflect.DeepEqual(got[i], live[i]) {
			for inst, res := range live[i].Instances {
				for key, want := range res {
					if g := got[i].Instances[inst][key]; !reflect.DeepEqual(g, want) {
						t.Errorf("round %d, %s, %s: folded %+v from the recording, %+v live", i, inst, key, g, want)
					}
				}
			}
			t.Fatalf("round %d differs: recorded %+v, live %+v", i, got[i], live[i])
		}
	}
}

// TestARecordingIsCompact measures a recording of one real API server: the
// first round defines every series; a round where nothing changed costs
// next to nothing, one where a tenth of the values changed a fraction of
// the first.
func TestARecordingIsCompact(t *testing.T) {
	text, _ := recorded(t)
	accums := allAccums(t)
	w, _ := newWriter(t)
	t0 := time.Now()
	// A tenth of the samples, at random, grow by a random count.
	some := func(round uint64) func(int, *exposition.Sample) bool {
		rnd := rand.New(rand.NewPCG(round, 1))
		return func(_ int, s *exposition.Sample) bool {
			if rnd.IntN(10) == 0 {
				s.Value += float64(1 + rnd.IntN(50))
			}
			return true
		}
	}
	steps := []step{{a: text}, {a: text}, {a: text, mutA: some(1)}, {a: text, mutA: some(2)}}
	sizes := make([]int64, 0, 1+len(steps))
	sizes = append(sizes, w.Bytes())
	for i, s := range steps {
		s.b = text
		roundOf(t, w, accums, t0.Add(time.Duration(i)*time.Second), s)
		sizes = append(sizes, w.Bytes())
	}
	header, first, same, changed := sizes[0], sizes[1]-sizes[0], sizes[2]-sizes[1], sizes[4]-sizes[3]
	t.Logf("header %d B; rounds of 2 instances (%d KB of text each): first %d B, unchanged %d B, a tenth changed %d B",
		header, len(text.data)>>10, first, same, changed)
	if same > 200 || changed > first/2 || first > int64(len(text.data))/20 {
		t.Errorf("first round %d B, unchanged %d B, a tenth changed %d B: not compact", first, same, changed)
	}
}

// writeThree writes three rounds without the end mark, as a record killed
// after them leaves its file, and returns the bytes.
func writeThree(t *testing.T) []byte {
	t.Helper()
	text, _ := recorded(t)
	w, f := newWriter(t)
	for i := range 3 {
		roundOf(t, w, allAccums(t), time.Now().Add(time.Duration(i)*time.Second), step{a: text})
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestARecordingCutShortReadsItsWholeRounds: whatever its last byte, a
// file cut short gives the rounds it holds whole and ErrCutShort, or, cut
// within its header, an error saying so.
func TestARecordingCutShortReadsItsWholeRounds(t *testing.T) {
	whole := writeThree(t)
	dir := t.TempDir()
	lastRounds := -1
	var cuts []int
	for cut := 10; cut < len(whole); cut += max(1, len(whole)/100) {
		cuts = append(cuts, cut)
	}
	for _, cut := range append(cuts, len(whole)) {
		path := filepath.Join(dir, "cut.lsr")
		if err := os.WriteFile(path, whole[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := Open(path)
		if err != nil {
			if !errors.Is(err, ErrCutShort) && !strings.Contains(err.Error(), "not a loadshed recording") {
				t.Fatalf("cut at %d of %d bytes: Open: %v", cut, len(whole), err)
			}
			continue
		}
		rounds, err := rec.Rounds(allAccums(t))
		if !errors.Is(err, ErrCutShort) {
			t.Fatalf("cut at %d of %d bytes: %d rounds, error %v; want ErrCutShort", cut, len(whole), len(rounds), err)
		}
		if len(rounds) < lastRounds {
			t.Fatalf("cut at %d: %d rounds, fewer than a shorter cut gave (%d)", cut, len(rounds), lastRounds)
		}
		lastRounds = len(rounds)
	}
	if lastRounds != 3 {
		t.Errorf("the whole file without its end mark gave %d rounds, want 3", lastRounds)
	}
}

func TestTheFormatIsChecked(t *testing.T) {
	dir := t.TempDir()
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.Bytes()
	}
	for _, tt := range []struct {
		name, want string
		data       []byte
	}{
		{"a file that is not gzip", "not a loadshed recording (not gzip", []byte("apiserver_request_total 1\n")},
		{"gzip of something else", "not a loadshed recording (it does not start with", gz("apiserver_request_total 1\n")},
		{"a newer format", "format version 2, newer than this kubectl-loadshed reads (1)", gz("loadshed-recording 2\n")},
		{"a version that is not one", "not a loadshed recording (version", gz("loadshed-recording x\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestAFamilyTheRecordingLacksIsNamed(t *testing.T) {
	w, f := newWriter(t)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	accums := append(allAccums(t), signals.Accumulator{Family: "workqueue_depth"})
	_, err = rec.Rounds(accums)
	if err == nil || !strings.Contains(err.Error(), "does not hold the metric families workqueue_depth") ||
		!strings.Contains(err.Error(), "--family workqueue_depth") {
		t.Errorf("Rounds: %v, want an error naming workqueue_depth and --family", err)
	}
	if rounds, err := rec.Rounds(allAccums(t)); err != nil || len(rounds) != 0 {
		t.Errorf("an empty recording read %d rounds, %v", len(rounds), err)
	}
}

// TestRecordReadsOnScheduleAndStopsWhole records a fake API server at 200ms
// for a second, then again until its context is cancelled: both files are
// whole, with a round per interval (fewer on a machine too busy to read a
// round within one).
func TestRecordReadsOnScheduleAndStopsWhole(t *testing.T) {
	srv, _ := testutil.RecordedAPIServer(t, true, 0)
	for _, tt := range []struct {
		name     string
		cancelAt time.Duration
		min, max int
	}{
		{name: "until the schedule ends", min: 2, max: 5},
		{name: "until cancelled", cancelAt: 500 * time.Millisecond, min: 1, max: 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := scrape.New(testutil.ConfigFor(srv), noSlices{})
			if err != nil {
				t.Fatal(err)
			}
			w, f := newWriter(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelAt > 0 {
				time.AfterFunc(tt.cancelAt, cancel)
			}
			progress := 0
			err = Record(ctx, sc, w, Schedule{Start: time.Now(), Duration: time.Second, Interval: 200 * time.Millisecond,
				Timeout: time.Second, Progress: func(*scrape.Round[*Sink], scrape.Status) error { progress++; return nil }})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rec, err := Open(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			rounds, err := rec.Rounds(allAccums(t))
			if err != nil || len(rounds) < tt.min || len(rounds) > tt.max || progress != len(rounds) {
				t.Fatalf("read %d rounds (%v), %d progress calls; want %d to %d", len(rounds), err, progress, tt.min, tt.max)
			}
			if len(rounds[0].Instances) != 1 || rounds[0].Clients[sc.Host()].Total.Requests != 25 {
				t.Errorf("the first round holds %d instances, dump %+v; want the fake API server's", len(rounds[0].Instances), rounds[0].Clients)
			}
		})
	}
}

// noSlices is a client.Reader that lists no EndpointSlices: the configured
// host is scraped.
type noSlices struct{ client.Reader }

func (noSlices) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// A DaemonSet made while recording (the flood's, often) is in the
// recording: record reads the snapshot again, and writes it when it
// changed; the reader merges every snapshot, the latest version of each
// object first.
func TestADaemonSetMadeWhileRecordingIsRead(t *testing.T) {
	srv, _ := testutil.RecordedAPIServer(t, true, 0)
	sc, err := scrape.New(testutil.ConfigFor(srv), noSlices{})
	if err != nil {
		t.Fatal(err)
	}
	ds := func(name, sa string) appsv1.DaemonSet {
		d := appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: name}}
		d.Spec.Template.Spec.ServiceAccountName = sa
		return d
	}
	first := Snapshot{DaemonSets: []appsv1.DaemonSet{ds("old", "old")}}
	later := Snapshot{DaemonSets: []appsv1.DaemonSet{ds("agent", "agent"), ds("old", "renamed")},
		Namespaces: map[string]labels.Set{"telemetry": {"team": "obs"}}}
	reads := 0
	w, f := newWriterOf(t, first)
	err = Record(context.Background(), sc, w, Schedule{Start: time.Now(), Duration: time.Second,
		Interval: 200 * time.Millisecond, Timeout: time.Second, Last: first,
		Snapshot: func(context.Context) (Snapshot, error) {
			reads++
			if reads == 1 {
				return first, nil // unchanged: not written
			}
			return later, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if reads < 3 {
		t.Fatalf("the snapshot was read %d times in 5 rounds, want one after each", reads)
	}
	rec, err := Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(rec.DaemonSets()))
	for _, d := range rec.DaemonSets() {
		got = append(got, d.Name+" as "+d.Spec.Template.Spec.ServiceAccountName)
	}
	if want := []string{"agent as agent", "old as renamed"}; !slices.Equal(got, want) {
		t.Errorf("DaemonSets %v, want %v", got, want)
	}
	if rec.Namespaces()["telemetry"]["team"] != "obs" {
		t.Errorf("namespaces %v, want telemetry's later labels", rec.Namespaces())
	}
	if _, err := rec.Rounds(allAccums(t)); err != nil {
		t.Errorf("reading the rounds past the snapshots: %v", err)
	}
}
