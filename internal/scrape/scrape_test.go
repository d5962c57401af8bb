package scrape

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"

	"github.com/loadshed/loadshed/test/testutil"
)

func parsePort(t *testing.T, s string) int32 {
	t.Helper()
	p, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return int32(p)
}

// fixedSlices is a client.Reader that lists fixed EndpointSlices: the
// discovery is tested here, the cache that serves it in production is
// controller-runtime's.
type fixedSlices []discoveryv1.EndpointSlice

func (s fixedSlices) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return nil
}

func (s fixedSlices) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	list.(*discoveryv1.EndpointSliceList).Items = append([]discoveryv1.EndpointSlice(nil), s...)
	return nil
}

var _ client.Reader = fixedSlices(nil)

func inflightAccums(t *testing.T) []signals.Accumulator {
	t.Helper()
	q, err := signals.ForTrigger(&policy.Trigger{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return append(q.Accumulators(), signals.DispatchedByFlowSchema)
}

func TestEndpointURLs(t *testing.T) {
	got := endpointURLs([]discoveryv1.EndpointSlice{
		{
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](6443)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
				{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
				{Addresses: []string{"fd00::3"}},
			},
		},
		{Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.9"}}}}, // no port: skipped
	})
	want := []string{"https://10.0.0.1:6443", "https://[fd00::3]:6443"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("endpointURLs = %v, want %v (ready or unknown, IPv6 bracketed)", got, want)
	}
}

func TestScrapeAsksForProtobufAndFallsBackToText(t *testing.T) {
	for _, pb := range []bool{true, false} {
		srv, _ := testutil.RecordedAPIServer(t, pb, 0)
		sc, err := New(testutil.ConfigFor(srv), fixedSlices(nil))
		if err != nil {
			t.Fatal(err)
		}
		accums := inflightAccums(t)
		f := signals.NewFolder(accums)
		if err := sc.scrape(context.Background(), sc.fallback, sc.host, f, 5*time.Second); err != nil {
			t.Fatalf("protobuf=%v: %v", pb, err)
		}
		results := f.Results()
		inflight := results[accums[0].Key()]
		if inflight.Series != 2 || inflight.Sum != 4 {
			t.Errorf("protobuf=%v: inflight folded to %+v, want 2 series summing to 4", pb, inflight)
		}
		if d := results[signals.DispatchedByFlowSchema.Key()]; d.Groups["exempt"] == 0 {
			t.Errorf("protobuf=%v: dispatched by flow schema folded to %v", pb, d.Groups)
		}
	}
}

func TestARoundReadsWhoTheAPIServerHolds(t *testing.T) {
	srv, _ := testutil.RecordedAPIServer(t, true, 0)
	sc, err := New(testutil.ConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := sc.Fold(context.Background(), time.Now(), inflightAccums(t), 5*time.Second)
	held := r.Clients[sc.host]
	if len(r.ClientsFailed) > 0 || held.ByUser["system:serviceaccount:telemetry:agent"].Requests != 20 || held.Total.Requests != 25 {
		t.Errorf("the round read %+v (failed %v); want the dump's 25 requests, 20 of them the agents'", held, r.ClientsFailed)
	}
}

func TestADumpThatCannotBeReadIsReportedAndTheScrapeKept(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == apfdump.Path {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(testutil.Recorded(t, "apiserver.txt"))
	}))
	t.Cleanup(srv.Close)
	sc, err := New(testutil.ConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := sc.Fold(context.Background(), time.Now(), inflightAccums(t), 5*time.Second)
	if r.Instances[sc.host] == nil || !strings.Contains(r.ClientsFailed[sc.host], "HTTP 403") || len(r.Clients) != 0 {
		t.Errorf("instances %v, clients %v, failed %v; want the scrape kept and the dump's 403 reported",
			r.Instances, r.Clients, r.ClientsFailed)
	}
}

func TestARoundFallsBackToTheConfiguredHostAndSaysWhy(t *testing.T) {
	srv, _ := testutil.RecordedAPIServer(t, true, 0)
	// The endpoint is advertised but nothing listens there.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	host, port, _ := strings.Cut(deadAddr, ":")
	reader := fixedSlices{{
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(parsePort(t, port))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}}},
	}}
	sc, err := New(testutil.ConfigFor(srv), reader)
	if err != nil {
		t.Fatal(err)
	}
	r, st := sc.Fold(context.Background(), time.Now(), inflightAccums(t), 2*time.Second)
	if len(r.Instances) != 1 || r.Instances[sc.host] == nil {
		t.Fatalf("the round scraped %v, want the configured host %s", r.Instances, sc.host)
	}
	if !strings.Contains(st.Fallback, "no endpoint of default/kubernetes could be scraped") || !strings.Contains(st.Fallback, deadAddr) {
		t.Errorf("the fallback is not explained: %q", st.Fallback)
	}

	// No endpoints at all: the same fallback, another reason.
	sc.reader = fixedSlices(nil)
	_, st = sc.Fold(context.Background(), time.Now(), inflightAccums(t), 2*time.Second)
	if !strings.Contains(st.Fallback, "lists no endpoints") {
		t.Errorf("the fallback is not explained: %q", st.Fallback)
	}
}

func TestASlowScrapeTimesOutAndIsReported(t *testing.T) {
	srv, _ := testutil.RecordedAPIServer(t, true, 10*time.Second)
	sc, err := New(testutil.ConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, st := sc.Fold(context.Background(), time.Now(), inflightAccums(t), 200*time.Millisecond)
	if len(r.Instances) != 0 || !strings.Contains(st.Failed[sc.host], "timed out after 200ms") {
		t.Errorf("a slow scrape gave instances %v, failures %v; want a timeout", r.Instances, st.Failed)
	}
	if r.ScrapeSeconds < 0.2 || !r.TimedOut {
		t.Errorf("the round's scrape latency is %vs (timed out: %v), want at least the timeout, marked as such", r.ScrapeSeconds, r.TimedOut)
	}
}

func TestAnInstanceThatLeavesTheListIsMissingUntilBackOrReplaced(t *testing.T) {
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	type step struct {
		after  time.Duration
		listed []string
		want   map[string]time.Duration // missing, by when last listed (after t0)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"one that leaves the list is missing, and no longer once it is back", []step{
			{0, []string{"a", "b"}, nil},
			{time.Second, []string{"a"}, map[string]time.Duration{"b": 0}},
			{time.Minute, []string{"a"}, map[string]time.Duration{"b": 0}},
			{2 * time.Minute, []string{"a", "b"}, nil},
		}},
		{"one replaced by another is not missing", []step{
			{0, []string{"a", "b"}, nil},
			{time.Second, []string{"a", "c"}, nil},
		}},
		{"two down are both missing", []step{
			{0, []string{"a", "b", "c"}, nil},
			{time.Second, []string{"a"}, map[string]time.Duration{"b": 0, "c": 0}},
		}},
		{"of a replaced one and its replacement, the one listed last is missing", []step{
			{0, []string{"a", "b"}, nil},
			{time.Second, []string{"a", "c"}, nil},
			{2 * time.Second, []string{"a"}, map[string]time.Duration{"c": time.Second}},
		}},
		{"a crash-looping one, listed between crashes, is missing whenever it is down", []step{
			{0, []string{"a", "b"}, nil},
			{4 * time.Minute, []string{"a"}, map[string]time.Duration{"b": 0}},
			{5 * time.Minute, []string{"a", "b"}, nil},
			{14 * time.Minute, []string{"a"}, map[string]time.Duration{"b": 5 * time.Minute}},
		}},
		{"one removed for good is forgotten after forgetAfter", []step{
			{0, []string{"a", "b"}, nil},
			{forgetAfter, []string{"a"}, map[string]time.Duration{"b": 0}},
			{forgetAfter + time.Second, []string{"a"}, nil},
			{forgetAfter + time.Minute, []string{"a"}, nil},
		}},
		{"nothing listed any more: every instance listed is missing", []step{
			{0, []string{"a", "b"}, nil},
			{time.Second, nil, map[string]time.Duration{"a": 0, "b": 0}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l listedInstances
			for _, s := range tt.steps {
				got := l.missing(t0.Add(s.after), s.listed)
				want := map[string]time.Time{}
				for u, at := range s.want {
					want[u] = t0.Add(at)
				}
				if len(got) != len(want) || !maps.EqualFunc(got, want, time.Time.Equal) {
					t.Fatalf("after %v with %v listed: missing %v, want %v", s.after, s.listed, got, want)
				}
			}
		})
	}
}

func TestARoundCountsAnInstanceNoLongerListedAsFailed(t *testing.T) {
	a, _ := testutil.RecordedAPIServer(t, true, 0)
	b, _ := testutil.RecordedAPIServer(t, true, 0)
	slice := func(srv *httptest.Server) discoveryv1.EndpointSlice {
		host, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "https://"), ":")
		return discoveryv1.EndpointSlice{
			Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(parsePort(t, port))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}}},
		}
	}
	// The test servers' certificates name 127.0.0.1, not kubernetes.default.svc.
	cfg := testutil.ConfigFor(a)
	cfg.CAData = append(testutil.PEMOf(a), testutil.PEMOf(b)...)
	sc, err := New(cfg, fixedSlices{slice(a), slice(b)})
	if err != nil {
		t.Fatal(err)
	}
	sc.direct = sc.fallback
	t0 := time.Now()
	r, st := sc.Fold(context.Background(), t0, inflightAccums(t), 5*time.Second)
	if len(r.Instances) != 2 || len(r.Failed) != 0 || st.Fallback != "" {
		t.Fatalf("both listed: instances %v, failed %v, fallback %q; want both scraped", len(r.Instances), r.Failed, st.Fallback)
	}
	if want := fmt.Sprintf("scraped 2 of 2 API server instances (%s, %s)", a.URL, b.URL); st.String() != want {
		t.Errorf("status %q, want %q", st.String(), want)
	}

	sc.reader = fixedSlices{slice(a)}
	r, st = sc.Fold(context.Background(), t0.Add(time.Second), inflightAccums(t), 5*time.Second)
	if r.Instances[a.URL] == nil || !strings.HasPrefix(r.Failed[b.URL], "no longer listed in default/kubernetes (last listed 1s") {
		t.Errorf("b no longer listed: instances %d, failed %v; want a scraped and b failed", len(r.Instances), r.Failed)
	}
	if want := fmt.Sprintf("scraped 1 of 2 API server instances (%s)", a.URL); st.String() != want || st.Failed[b.URL] == "" {
		t.Errorf("status %q (failed %v), want %q and b failed", st.String(), st.Failed, want)
	}

	sc.reader = fixedSlices{slice(a), slice(b)}
	r, _ = sc.Fold(context.Background(), t0.Add(2*time.Second), inflightAccums(t), 5*time.Second)
	if len(r.Instances) != 2 || len(r.Failed) != 0 {
		t.Errorf("b listed again: instances %d, failed %v; want both scraped", len(r.Instances), r.Failed)
	}
}

func TestDumpsReadsEachInstancesDump(t *testing.T) {
	srv, _ := testutil.RecordedAPIServer(t, true, 0)
	sc, err := New(testutil.ConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	held, failed := sc.Dumps(context.Background(), []string{sc.Host(), "https://192.0.2.9:1"}, time.Second)
	if held[sc.Host()].Total.Requests != 25 || len(held) != 1 || failed["https://192.0.2.9:1"] == "" {
		t.Errorf("Dumps read %+v, failed %v; want the host's 25 requests and the other's failure", held, failed)
	}
}
