package backtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/metrics/promsource"
)

// fakePrometheus answers range queries of one expression with value(t) at
// each step, and records what it was asked.
type fakePrometheus struct {
	value func(t time.Time) (float64, bool)
	mu    sync.Mutex
	asked []string
}

func (f *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start, _ := strconv.ParseFloat(r.Form.Get("start"), 64)
	end, _ := strconv.ParseFloat(r.Form.Get("end"), 64)
	step, _ := strconv.ParseFloat(r.Form.Get("step"), 64)
	f.mu.Lock()
	f.asked = append(f.asked, fmt.Sprintf("%s from %s to %s every %gs", r.Form.Get("query"),
		time.Unix(int64(start), 0).UTC().Format(time.RFC3339), time.Unix(int64(end), 0).UTC().Format(time.RFC3339), step))
	f.mu.Unlock()
	var values [][2]any
	for s := start; s <= end; s += step {
		if v, ok := f.value(time.Unix(int64(s), 0)); ok {
			values = append(values, [2]any{s, strconv.FormatFloat(v, 'g', -1, 64)})
		}
	}
	result := []any{}
	if len(values) > 0 {
		result = append(result, map[string]any{"metric": map[string]string{}, "values": values})
	}
	body, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": result}})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func TestPrometheusFiresAndClearsButNamesNoOffender(t *testing.T) {
	cfg := readFloodPolicy(t)
	from, to := t0, t0.Add(20*time.Minute)
	// 600 in flight from 2m to 10m, and no data for a minute at 15m.
	fake := &fakePrometheus{value: func(at time.Time) (float64, bool) {
		switch d := at.Sub(from); {
		case d >= 15*time.Minute && d < 16*time.Minute:
			return 0, false
		case d >= 2*time.Minute && d < 10*time.Minute:
			return 600, true
		}
		return 100, true
	}}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/query_range", fake)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	series, err := QueryPrometheus(t.Context(), promsource.Config{URL: srv.URL}, cfg, from, to)
	if err != nil {
		t.Fatal(err)
	}
	wantAsked := fmt.Sprintf("%s from %s to %s every 10s", series.Queries["inflight"],
		from.Add(-detection.Retention(cfg)).Format(time.RFC3339), to.Format(time.RFC3339))
	if !slices.Equal(fake.asked, []string{wantAsked}) || !strings.Contains(series.Queries["inflight"], "apiserver_current_inflight_requests") {
		t.Errorf("asked %q, want %q", fake.asked, wantAsked)
	}
	res, err := Run(Input{Name: "flood", Config: cfg, World: world(), Operator: operatorSA, From: from, To: to,
		Source: "prometheus " + srv.URL, Prometheus: series})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(res.Timeline))
	for _, e := range res.Timeline {
		got = append(got, fmt.Sprintf("%s %s @%s", e.Kind, e.Subject, e.Time.Sub(t0)))
	}
	want := []string{"TriggerFired inflight @2m30s", "TriggerCleared inflight @10m30s",
		"TriggerUnknown inflight @15m0s", "TriggerKnown inflight @16m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("timeline %q, want %q", got, want)
	}
	s := res.Summary
	if s.TimesFired != 1 || len(s.Paused)+len(s.Throttled) != 0 || s.Unseen.NoAttribution == "" || s.Shedding.Duration != 0 {
		t.Errorf("summary %+v, want fired once, nothing shed, and why no offender is known", s)
	}
	if len(s.Unseen.Missing) != 1 || s.Unseen.Missing[0].Evaluations != 6 || !strings.Contains(s.Unseen.Missing[0].Reason, "no data") {
		t.Errorf("missing %+v, want inflight's 6 steps without data", s.Unseen.Missing)
	}
	var text strings.Builder
	if err := res.WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "No offenders from prometheus") {
		t.Errorf("the text does not say that Prometheus names no offender:\n%s", text.String())
	}
}

func TestPrometheusRefusals(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/query_range", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, err := QueryPrometheus(t.Context(), promsource.Config{URL: srv.URL}, readFloodPolicy(t), t0, t0.Add(time.Hour))
	if err == nil || !strings.Contains(err.Error(), "trigger inflight") || !strings.Contains(err.Error(), "parse error") {
		t.Errorf("error %v, want the trigger and Prometheus's refusal", err)
	}
}
