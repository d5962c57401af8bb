package sampler

import (
	"context"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	goslices "slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/signals"

	"github.com/loadshed/loadshed/test/testutil"
)

// apiServer serves a recorded /metrics payload over TLS, in protobuf when
// asked for it and accepted by serveProtobuf, else in text.
func apiServer(t *testing.T, serveProtobuf bool, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	pb, text := testutil.Recorded(t, "apiserver.pb"), testutil.Recorded(t, "apiserver.txt")
	hits := new(atomic.Int64)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == apfdump.Path && r.URL.Query().Get("includeRequestDetails") != "" {
			http.ServeFile(w, r, "../apfdump/testdata/dump_requests.txt")
			return
		}
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if serveProtobuf && strings.Contains(r.Header.Get("Accept"), "protobuf") {
			w.Header().Set("Content-Type", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited")
			_, _ = w.Write(pb)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(text)
	}))
	t.Cleanup(srv.Close)
	return srv, hits
}

func restConfigFor(srv *httptest.Server) *rest.Config {
	return &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: false, CAData: pemOf(srv)}}
}

func pemOf(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

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
		srv, _ := apiServer(t, pb, 0)
		sc, err := newScraper(restConfigFor(srv), fixedSlices(nil))
		if err != nil {
			t.Fatal(err)
		}
		accums := inflightAccums(t)
		results, err := sc.scrape(context.Background(), sc.fallback, sc.host, accums, 5*time.Second)
		if err != nil {
			t.Fatalf("protobuf=%v: %v", pb, err)
		}
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
	srv, _ := apiServer(t, true, 0)
	sc, err := newScraper(restConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := sc.round(context.Background(), time.Now(), inflightAccums(t), 5*time.Second)
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
	sc, err := newScraper(restConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := sc.round(context.Background(), time.Now(), inflightAccums(t), 5*time.Second)
	if r.Instances[sc.host] == nil || !strings.Contains(r.ClientsFailed[sc.host], "HTTP 403") || len(r.Clients) != 0 {
		t.Errorf("instances %v, clients %v, failed %v; want the scrape kept and the dump's 403 reported",
			r.Instances, r.Clients, r.ClientsFailed)
	}
}

func TestARoundFallsBackToTheConfiguredHostAndSaysWhy(t *testing.T) {
	srv, _ := apiServer(t, true, 0)
	// The endpoint is advertised but nothing listens there.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	host, port, _ := strings.Cut(deadAddr, ":")
	reader := fixedSlices{{
		Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(parsePort(t, port))}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}}},
	}}
	sc, err := newScraper(restConfigFor(srv), reader)
	if err != nil {
		t.Fatal(err)
	}
	r, st := sc.round(context.Background(), time.Now(), inflightAccums(t), 2*time.Second)
	if len(r.Instances) != 1 || r.Instances[sc.host] == nil {
		t.Fatalf("the round scraped %v, want the configured host %s", r.Instances, sc.host)
	}
	if !strings.Contains(st.Fallback, "no endpoint of default/kubernetes could be scraped") || !strings.Contains(st.Fallback, deadAddr) {
		t.Errorf("the fallback is not explained: %q", st.Fallback)
	}

	// No endpoints at all: the same fallback, another reason.
	sc.reader = fixedSlices(nil)
	_, st = sc.round(context.Background(), time.Now(), inflightAccums(t), 2*time.Second)
	if !strings.Contains(st.Fallback, "lists no endpoints") {
		t.Errorf("the fallback is not explained: %q", st.Fallback)
	}
}

func TestASlowScrapeTimesOutAndIsReported(t *testing.T) {
	srv, _ := apiServer(t, true, 10*time.Second)
	sc, err := newScraper(restConfigFor(srv), fixedSlices(nil))
	if err != nil {
		t.Fatal(err)
	}
	r, st := sc.round(context.Background(), time.Now(), inflightAccums(t), 200*time.Millisecond)
	if len(r.Instances) != 0 || !strings.Contains(st.Failed[sc.host], "timed out after 200ms") {
		t.Errorf("a slow scrape gave instances %v, failures %v; want a timeout", r.Instances, st.Failed)
	}
	if r.ScrapeSeconds < 0.2 || !r.TimedOut {
		t.Errorf("the round's scrape latency is %vs (timed out: %v), want at least the timeout, marked as such", r.ScrapeSeconds, r.TimedOut)
	}
}

func TestRecordKeepsWhatThePoliciesNeed(t *testing.T) {
	s := &Sampler{interests: map[string]Interest{"a": {Retention: 30 * time.Second}, "b": {Retention: 50 * time.Second}}}
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	for i := range 20 {
		s.record(&signals.Round{T: t0.Add(time.Duration(i) * 10 * time.Second)}, Status{})
	}
	rounds := s.Rounds()
	if got := rounds[len(rounds)-1].T.Sub(rounds[0].T); got != 50*time.Second {
		t.Errorf("the history spans %v, want the longest retention, 50s", got)
	}
}

func TestPlanTakesTheSmallestIntervalAndSharesAccumulators(t *testing.T) {
	acc := inflightAccums(t)
	s := &Sampler{interests: map[string]Interest{
		"a": {Interval: 10 * time.Second, Timeout: 5 * time.Second, Accumulators: acc},
		"b": {Interval: 2 * time.Second, Timeout: 3 * time.Second, Accumulators: acc[:1]},
	}}
	interval, timeout, accums, ok := s.plan()
	if !ok || interval != 2*time.Second || timeout != 2*time.Second || len(accums) != 2 {
		t.Errorf("plan = %v %v %d accumulators %v; want 2s, 2s (capped by the interval), 2", interval, timeout, len(accums), ok)
	}
	if _, _, _, ok := (&Sampler{interests: map[string]Interest{}}).plan(); ok {
		t.Error("a sampler without policies plans a round")
	}
}

func TestStartScrapesForRegisteredPoliciesAndNotifiesThem(t *testing.T) {
	srv, hits := apiServer(t, true, 0)
	s, err := New(restConfigFor(srv), fixedSlices(nil), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()

	s.Register("flood", Interest{Interval: 100 * time.Millisecond, Timeout: time.Second, Retention: time.Minute, Accumulators: inflightAccums(t)})
	select {
	case ev := <-s.Events():
		if ev.Object.GetName() != "flood" {
			t.Errorf("the event names %q, want flood", ev.Object.GetName())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event after 30s")
	}
	if len(s.Rounds()) == 0 || hits.Load() == 0 {
		t.Errorf("notified without a round: %d rounds, %d requests", len(s.Rounds()), hits.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Start returned %v", err)
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

// TestARoundCountsAnInstanceNoLongerListedAsFailed: an API server that
// leaves default/kubernetes (as a stopping kube-apiserver takes itself out)
// is a target that failed, named in the status, until it is listed again.
func TestARoundCountsAnInstanceNoLongerListedAsFailed(t *testing.T) {
	a, _ := apiServer(t, true, 0)
	b, _ := apiServer(t, true, 0)
	slice := func(srv *httptest.Server) discoveryv1.EndpointSlice {
		host, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "https://"), ":")
		return discoveryv1.EndpointSlice{
			Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(parsePort(t, port))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}}},
		}
	}
	// The test servers' certificates name 127.0.0.1, not kubernetes.default.svc.
	cfg := restConfigFor(a)
	cfg.CAData = append(pemOf(a), pemOf(b)...)
	sc, err := newScraper(cfg, fixedSlices{slice(a), slice(b)})
	if err != nil {
		t.Fatal(err)
	}
	sc.direct = sc.fallback
	t0 := time.Now()
	r, st := sc.round(context.Background(), t0, inflightAccums(t), 5*time.Second)
	if len(r.Instances) != 2 || len(r.Failed) != 0 || st.Fallback != "" {
		t.Fatalf("both listed: instances %v, failed %v, fallback %q; want both scraped", len(r.Instances), r.Failed, st.Fallback)
	}
	if want := fmt.Sprintf("scraped 2 of 2 API server instances (%s, %s)", a.URL, b.URL); st.String() != want {
		t.Errorf("status %q, want %q", st.String(), want)
	}

	sc.reader = fixedSlices{slice(a)}
	r, st = sc.round(context.Background(), t0.Add(time.Second), inflightAccums(t), 5*time.Second)
	if r.Instances[a.URL] == nil || !strings.HasPrefix(r.Failed[b.URL], "no longer listed in default/kubernetes (last listed 1s") {
		t.Errorf("b no longer listed: instances %d, failed %v; want a scraped and b failed", len(r.Instances), r.Failed)
	}
	if want := fmt.Sprintf("scraped 1 of 2 API server instances (%s)", a.URL); st.String() != want || st.Failed[b.URL] == "" {
		t.Errorf("status %q (failed %v), want %q and b failed", st.String(), st.Failed, want)
	}

	sc.reader = fixedSlices{slice(a), slice(b)}
	r, _ = sc.round(context.Background(), t0.Add(2*time.Second), inflightAccums(t), 5*time.Second)
	if len(r.Instances) != 2 || len(r.Failed) != 0 {
		t.Errorf("b listed again: instances %d, failed %v; want both scraped", len(r.Instances), r.Failed)
	}
}

func TestEachPolicyIsNotifiedAtItsOwnInterval(t *testing.T) {
	s := &Sampler{
		interests: map[string]Interest{
			"fast": {Interval: 10 * time.Second}, "slow": {Interval: 30 * time.Second}, "odd": {Interval: 15 * time.Second},
		},
		events:   make(chan event.GenericEvent, 100),
		notified: map[string]time.Time{},
	}
	t0 := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	counts := map[string]int{}
	var at []string
	// Rounds come every 10s, the smallest interval, for two minutes, and
	// a little late each time, as scrapes take time.
	for i := range 13 {
		s.notify(t0.Add(time.Duration(i)*10*time.Second+time.Duration(i%3)*100*time.Millisecond), 10*time.Second)
		for len(s.events) > 0 {
			ev := <-s.events
			counts[ev.Object.GetName()]++
			if ev.Object.GetName() == "slow" {
				at = append(at, fmt.Sprint(i*10))
			}
		}
	}
	// 15s is halfway between rounds: every second round, 20s.
	want := map[string]int{"fast": 13, "slow": 5, "odd": 7}
	if !maps.Equal(counts, want) {
		t.Errorf("events over 2 minutes = %v, want %v", counts, want)
	}
	if got := strings.Join(at, ","); got != "0,30,60,90,120" {
		t.Errorf("the 30s policy was told at %s s, want 0,30,60,90,120", got)
	}
	s.Unregister("slow")
	s.interests["slow"] = Interest{Interval: 30 * time.Second}
	s.notify(t0.Add(130*time.Second), 10*time.Second)
	var told []string
	for len(s.events) > 0 {
		told = append(told, (<-s.events).Object.GetName())
	}
	if goslices.Sort(told); !goslices.Equal(told, []string{"fast", "slow"}) {
		t.Errorf("10s after the last round, told %v; want fast and slow (registered again: told at once)", told)
	}
}
