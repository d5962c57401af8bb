package signals

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

var t0 = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)

// round returns a round at t0+s seconds where each instance has one result
// for the accumulator.
func round(s int, a Accumulator, perInstance map[string]Result) *Round {
	r := &Round{T: t0.Add(time.Duration(s) * time.Second), Instances: map[string]map[string]Result{}, Failed: map[string]string{}}
	for inst, res := range perInstance {
		r.Instances[inst] = map[string]Result{a.Key(): res}
	}
	return r
}

func query(t *testing.T, signal v1alpha1.Signal, window time.Duration) Query {
	t.Helper()
	q, err := ForTrigger(&policy.Trigger{Name: "t", Signal: signal, Window: window})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func newest(t *testing.T, q Query, rounds []*Round) (float64, bool, string) {
	t.Helper()
	pts, msg := q.Points(rounds)
	p := pts[len(pts)-1]
	return p.V, p.OK, msg
}

func TestGaugeSumsWithinAnInstanceAndTakesTheWorstInstance(t *testing.T) {
	q := query(t, v1alpha1.SignalInflightRequests, time.Minute)
	r := round(0, q.Accum, map[string]Result{
		"https://10.0.0.1:6443": {Series: 2, Sum: 300, Min: 100, Max: 200},
		"https://10.0.0.2:6443": {Series: 2, Sum: 500, Min: 200, Max: 300},
	})
	v, ok, _ := newest(t, q, []*Round{r})
	if !ok || v != 500 {
		t.Errorf("inflight = %v (ok %v), want 500: the busier instance's sum", v, ok)
	}
}

func TestRateSumsInstancesAndSurvivesACounterReset(t *testing.T) {
	q := query(t, v1alpha1.SignalRequestsPerSecond, time.Minute)
	a, b := "https://10.0.0.1:6443", "https://10.0.0.2:6443"
	rounds := []*Round{
		round(0, q.Accum, map[string]Result{a: {Series: 1, Sum: 1000}, b: {Series: 1, Sum: 500}}),
		round(10, q.Accum, map[string]Result{a: {Series: 1, Sum: 2000}, b: {Series: 1, Sum: 600}}),
		// b restarted: its counter began again from 0 and reached 50.
		round(20, q.Accum, map[string]Result{a: {Series: 1, Sum: 3000}, b: {Series: 1, Sum: 50}}),
	}
	v, ok, _ := newest(t, q, rounds)
	// a: 2000 over 20s = 100/s. b: 100 then 50 (after the reset) over 20s = 7.5/s.
	if !ok || math.Abs(v-107.5) > 1e-9 {
		t.Errorf("rate = %v (ok %v), want 107.5", v, ok)
	}
}

func TestRateNeedsTwoScrapesInTheWindow(t *testing.T) {
	q := query(t, v1alpha1.SignalRequestsPerSecond, 15*time.Second)
	a := "https://10.0.0.1:6443"
	rounds := []*Round{
		round(0, q.Accum, map[string]Result{a: {Series: 1, Sum: 1000}}),
		round(30, q.Accum, map[string]Result{a: {Series: 1, Sum: 2000}}),
	}
	if _, ok, msg := newest(t, q, rounds); ok || !strings.Contains(msg, "second scrape") {
		t.Errorf("a rate from one scrape in the window was OK (%q); want missing", msg)
	}
}

func TestQuantileOfBucketIncreases(t *testing.T) {
	q := query(t, v1alpha1.SignalListLatencyP99, time.Minute)
	a := "https://10.0.0.1:6443"
	inf := math.Inf(1)
	rounds := []*Round{
		round(0, q.Accum, map[string]Result{a: {Series: 4, Buckets: map[float64]float64{0.1: 1000, 1: 1000, 10: 1000, inf: 1000}}}),
		// 100 new LISTs: 50 under 0.1s, 40 between 0.1 and 1s, 10 between 1 and 10s.
		round(10, q.Accum, map[string]Result{a: {Series: 4, Buckets: map[float64]float64{0.1: 1050, 1: 1090, 10: 1100, inf: 1100}}}),
	}
	v, ok, _ := newest(t, q, rounds)
	// rank 99 of 100 falls in (1, 10], 9 of its 10: 1 + 9*9/10 = 9.1.
	if !ok || math.Abs(v-9.1) > 1e-9 {
		t.Errorf("p99 = %v (ok %v), want 9.1", v, ok)
	}
}

func TestQuantileWithoutRequestsIsZero(t *testing.T) {
	if got := histogramQuantile(0.99, map[float64]float64{0.1: 0, math.Inf(1): 0}); got != 0 {
		t.Errorf("p99 of nothing = %v, want 0", got)
	}
	if got := histogramQuantile(0.99, map[float64]float64{0.1: 0, 1: 0, math.Inf(1): 10}); got != 1 {
		t.Errorf("p99 past the largest bound = %v, want that bound (1)", got)
	}
}

func TestSeatUtilizationIsTheWorstPriorityLevel(t *testing.T) {
	q := query(t, v1alpha1.SignalSeatUtilization, time.Minute)
	r := &Round{T: t0, Instances: map[string]map[string]Result{"a": {
		q.Accum.Key():   {Series: 3, Groups: map[string]float64{"workload-low": 20, "global-default": 1, "exempt": 50}},
		q.Nominal.Key(): {Series: 3, Groups: map[string]float64{"workload-low": 25, "global-default": 10, "exempt": 0}},
	}}}
	v, ok, _ := newest(t, q, []*Round{r})
	if !ok || v != 0.8 {
		t.Errorf("seat utilization = %v (ok %v), want 0.8 (workload-low 20/25; exempt has no limit)", v, ok)
	}
}

func TestARoundWithNoInstanceIsMissing(t *testing.T) {
	q := query(t, v1alpha1.SignalInflightRequests, time.Minute)
	r := &Round{T: t0, Instances: map[string]map[string]Result{}, Failed: map[string]string{"https://10.0.0.1:6443": "timed out after 5s"}}
	_, ok, msg := newest(t, q, []*Round{r})
	if ok || !strings.Contains(msg, "timed out") {
		t.Errorf("a failed round gave ok=%v, %q; want missing, saying why", ok, msg)
	}
}

func TestAFamilyWithNoSeriesCountsAsZeroAndSaysSo(t *testing.T) {
	q := query(t, v1alpha1.SignalInqueueRequests, time.Minute)
	r := round(0, q.Accum, map[string]Result{"a": {Min: math.Inf(1), Max: math.Inf(-1)}})
	v, ok, msg := newest(t, q, []*Round{r})
	if !ok || v != 0 || !strings.Contains(msg, "no series") {
		t.Errorf("inqueue = %v ok=%v %q; want 0, ok, with a note", v, ok, msg)
	}
}

func TestGenericMetricsAndMatchers(t *testing.T) {
	m, err := policy.NewMatcher("priority_level", v1alpha1.MatchEqual, "workload-low")
	if err != nil {
		t.Fatal(err)
	}
	q, err := ForTrigger(&policy.Trigger{
		Name: "low-seats", Metric: &policy.Metric{Name: FamilyExecutingSeats, Aggregation: v1alpha1.AggregationMax, Transform: v1alpha1.TransformValue},
		Matchers: []policy.Matcher{m}, Window: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if q.Kind != Gauge || q.Within != v1alpha1.AggregationMax || q.Across != v1alpha1.AggregationMax || len(q.Accum.Matchers) != 1 {
		t.Errorf("generic metric query = %+v", q)
	}
	if got, want := q.PromQL(), `max(max by (instance) (apiserver_flowcontrol_current_executing_seats{priority_level="workload-low"}))`; got != want {
		t.Errorf("PromQL = %s\nwant    %s", got, want)
	}
}

func TestCataloguePromQL(t *testing.T) {
	tests := map[v1alpha1.Signal]string{
		v1alpha1.SignalInflightRequests:          `max(sum by (instance) (apiserver_current_inflight_requests))`,
		v1alpha1.SignalRejectedRequestsPerSecond: `sum(sum by (instance) (rate(apiserver_flowcontrol_rejected_requests_total[60s])))`,
		v1alpha1.SignalListLatencyP99: `max(histogram_quantile(0.99, sum by (instance, le) ` +
			`(rate(apiserver_request_sli_duration_seconds_bucket{verb="LIST", scope=~"namespace|cluster"}[60s]))))`,
		v1alpha1.SignalScrapeLatency: `max(scrape_duration_seconds{job=~".*apiserver.*"})`,
	}
	for sig, want := range tests {
		if got := query(t, sig, time.Minute).PromQL(); got != want {
			t.Errorf("%s: PromQL = %s\nwant %s", sig, got, want)
		}
	}
	// Every catalogue signal has a query and an expression.
	for sig := range catalogue {
		if query(t, sig, time.Minute).PromQL() == "" {
			t.Errorf("%s has no PromQL", sig)
		}
	}
}

func TestQueueWaitIsTheWorstPriorityLevelsQuantile(t *testing.T) {
	q := query(t, v1alpha1.SignalQueueWaitP99, time.Minute)
	if q.Accum.Kind != GroupedHistogram || q.Accum.GroupBy != "priority_level" {
		t.Fatalf("queue wait accumulates %+v, want a histogram per priority level", q.Accum)
	}
	a := "https://10.0.0.1:6443"
	inf := math.Inf(1)
	before := map[string]map[float64]float64{
		"workload-high": {0.1: 500, 1: 500, inf: 500},
		"workload-low":  {0.1: 100, 1: 100, inf: 100},
	}
	after := map[string]map[float64]float64{
		// 1,000 more requests, all quick: p99 under 0.1s.
		"workload-high": {0.1: 1500, 1: 1500, inf: 1500},
		// 10 more, 5 of them waited past 1s. Pooled with workload-high, p99
		// would still be under 1s; per level, workload-low's is past it.
		"workload-low": {0.1: 105, 1: 105, inf: 110},
	}
	rounds := []*Round{
		{T: t0, Instances: map[string]map[string]Result{a: {q.Accum.Key(): {Series: 6, GroupBuckets: before}}}},
		{T: t0.Add(10 * time.Second), Instances: map[string]map[string]Result{a: {q.Accum.Key(): {Series: 6, GroupBuckets: after}}}},
	}
	v, ok, _ := newest(t, q, rounds)
	if !ok || v != 1 {
		t.Errorf("queue wait p99 = %v (ok %v), want 1: workload-low's, past its largest finite bound", v, ok)
	}
}

func TestAGroupThatAppearsMidWindowCountsFromZero(t *testing.T) {
	q := query(t, v1alpha1.SignalQueueWaitP99, time.Minute)
	a := "https://10.0.0.1:6443"
	inf := math.Inf(1)
	rounds := []*Round{
		{T: t0, Instances: map[string]map[string]Result{a: {q.Accum.Key(): {Series: 3,
			GroupBuckets: map[string]map[float64]float64{"global-default": {0.5: 10, 2: 10, inf: 10}}}}}},
		// A throttle level appears: its first requests all waited over 0.5s.
		{T: t0.Add(10 * time.Second), Instances: map[string]map[string]Result{a: {q.Accum.Key(): {Series: 6,
			GroupBuckets: map[string]map[float64]float64{
				"global-default": {0.5: 20, 2: 20, inf: 20},
				"loadshed-x":     {0.5: 0, 2: 4, inf: 4},
			}}}}},
	}
	v, ok, _ := newest(t, q, rounds)
	if want := 0.5 + 1.5*0.99*4/4; !ok || math.Abs(v-want) > 1e-9 {
		t.Errorf("queue wait p99 = %v (ok %v), want %v: the new level's waits count", v, ok, want)
	}
}

func TestNewCataloguePromQL(t *testing.T) {
	tests := map[v1alpha1.Signal]string{
		v1alpha1.SignalSingleObjectDurationP99: `max(histogram_quantile(0.99, sum by (instance, le) (rate(apiserver_request_duration_seconds_bucket` +
			`{verb=~"GET|POST|PUT|PATCH|DELETE|APPLY", scope=~"resource|namespace|cluster", subresource!~"log|exec|attach|portforward|proxy"}[30s]))))`,
		v1alpha1.SignalListDurationP99: `max(histogram_quantile(0.99, sum by (instance, le) ` +
			`(rate(apiserver_request_duration_seconds_bucket{verb="LIST", scope=~"namespace|cluster"}[30s]))))`,
		v1alpha1.SignalQueueWaitP99: `max(histogram_quantile(0.99, sum by (priority_level, instance, le) ` +
			`(rate(apiserver_flowcontrol_request_wait_duration_seconds_bucket[30s]))))`,
		v1alpha1.SignalTimedOutRequestsPerSecond: `sum(sum by (instance) (rate(apiserver_request_total{code="504"}[30s])))`,
	}
	for sig, want := range tests {
		if got := query(t, sig, 30*time.Second).PromQL(); got != want {
			t.Errorf("%s: PromQL = %s\nwant %s", sig, got, want)
		}
	}
}

// TestDocsListEveryCatalogueSignal keeps docs/signals.md's table true: each
// signal's row shows the PromQL the code runs (window 1m).
func TestDocsListEveryCatalogueSignal(t *testing.T) {
	doc, err := os.ReadFile("../../docs/signals.md")
	if err != nil {
		t.Fatal(err)
	}
	for sig := range catalogue {
		row := fmt.Sprintf("| `%s` |", sig)
		i := strings.Index(string(doc), row)
		if i < 0 {
			t.Errorf("docs/signals.md has no row for %s", sig)
			continue
		}
		line := string(doc[i:])
		line = line[:strings.IndexByte(line, '\n')]
		want := strings.ReplaceAll(query(t, sig, time.Minute).PromQL(), "|", `\|`)
		if !strings.Contains(line, want) {
			t.Errorf("docs/signals.md's row for %s does not show its PromQL:\n%s\nwant it to contain\n%s", sig, line, want)
		}
	}
}

func TestScrapeLatencyIsReadWhenEveryScrapeTimedOut(t *testing.T) {
	q := query(t, v1alpha1.SignalScrapeLatency, time.Minute)
	stalled := &Round{T: t0, Instances: map[string]map[string]Result{}, ScrapeSeconds: 5, TimedOut: true,
		Failed: map[string]string{"https://10.0.0.1:6443": "timed out after 5s"}}
	if v, ok, _ := newest(t, q, []*Round{stalled}); !ok || v != 5 {
		t.Errorf("scrape latency of a stalled API server = %v (ok %v), want 5, the timeout", v, ok)
	}
	// Refused at once (an API server that is down) says nothing about its
	// latency: missing, never healthy.
	down := &Round{T: t0, Instances: map[string]map[string]Result{}, ScrapeSeconds: 0.001,
		Failed: map[string]string{"https://10.0.0.1:6443": "connection refused"}}
	if v, ok, _ := newest(t, q, []*Round{down}); ok {
		t.Errorf("scrape latency of an API server that refused the connection = %v, OK; want missing", v)
	}
}

func TestARoundMissingAnInstanceGivesALowerBoundOnlyForSumsAndMaxima(t *testing.T) {
	a, b := "https://10.0.0.1:6443", "https://10.0.0.2:6443"
	generic := func(agg v1alpha1.Aggregation) Query {
		q, err := ForTrigger(&policy.Trigger{Name: "t", Window: time.Minute,
			Metric: &policy.Metric{Name: "apiserver_current_inflight_requests", Aggregation: agg}})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	tests := []struct {
		name      string
		q         Query
		wantBound bool
	}{
		{"the worst instance's in-flight requests", query(t, v1alpha1.SignalInflightRequests, time.Minute), true},
		{"requests per second, summed over instances", query(t, v1alpha1.SignalListRequestsPerSecond, time.Minute), true},
		{"the worst instance's p99", query(t, v1alpha1.SignalListLatencyP99, time.Minute), true},
		{"a generic gauge summed", generic(v1alpha1.AggregationSum), true},
		{"a generic gauge's least instance", generic(v1alpha1.AggregationMin), false},
		{"a generic gauge's average", generic(v1alpha1.AggregationAvg), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := func(n float64) Result {
				return Result{Series: 1, Sum: n, Min: n, Max: n, Buckets: map[float64]float64{1: n, math.Inf(1): n}}
			}
			// Rates and quantiles need two scrapes of an instance.
			rounds := []*Round{round(0, tt.q.Accum, map[string]Result{a: res(100), b: res(100)}),
				round(10, tt.q.Accum, map[string]Result{a: res(200), b: res(200)}),
				round(20, tt.q.Accum, map[string]Result{a: res(300)})}
			rounds[2].Failed[b] = "connection refused"
			pts, msg := tt.q.Points(rounds)
			p := pts[2]
			if !strings.Contains(msg, "1 of 2 instances not scraped") {
				t.Errorf("the message does not say an instance is missing: %q", msg)
			}
			switch {
			case tt.wantBound && (!p.OK || !p.LowerBound || p.V <= 0):
				t.Errorf("point %+v, want a lower bound from the instance scraped", p)
			case !tt.wantBound && p.OK:
				t.Errorf("point %+v, want no value: the instances scraped bound nothing", p)
			}
			if full := pts[1]; !full.OK || full.LowerBound {
				t.Errorf("a round of every instance gave %+v, want a value that is not a bound", full)
			}
		})
	}
}

func TestAnInstanceScrapedOnceInTheWindowLeavesARateALowerBound(t *testing.T) {
	q := query(t, v1alpha1.SignalRequestsPerSecond, time.Minute)
	a, b := "https://10.0.0.1:6443", "https://10.0.0.2:6443"
	// b restarted (or joined) at 10s: its counters cannot give a rate yet.
	rounds := []*Round{
		round(0, q.Accum, map[string]Result{a: {Series: 1, Sum: 1000}}),
		round(10, q.Accum, map[string]Result{a: {Series: 1, Sum: 2000}, b: {Series: 1, Sum: 5}}),
	}
	pts, msg := q.Points(rounds)
	if p := pts[1]; !p.OK || !p.LowerBound || p.V != 100 {
		t.Errorf("point %+v, want 100/s from a, a lower bound", p)
	}
	if want := "waiting for a second scrape of " + b; !strings.Contains(msg, want) {
		t.Errorf("message %q, want it to say %q", msg, want)
	}
}
