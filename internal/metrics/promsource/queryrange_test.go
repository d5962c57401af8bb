package promsource

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// series is one series a fake range query answers: its labels, and its
// value at a time, if it has one then.
type series struct {
	labels map[string]string
	value  func(t time.Time) (float64, bool)
}

// rangeServer is a fake Prometheus answering /api/v1/query_range as
// Prometheus does: the series' values at start, start+step, ..., end. It
// records the ranges it was asked for.
type rangeServer struct {
	series []series
	mu     sync.Mutex
	asked  []askedRange
	auth   []string
}

type askedRange struct {
	start, end time.Time
	step       time.Duration
	query      string
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start, errS := parseUnix(r.Form.Get("start"))
	end, errE := parseUnix(r.Form.Get("end"))
	step, errD := parsePromDuration(r.Form.Get("step"))
	if err := errors.Join(errS, errE, errD); err != nil || step <= 0 {
		answer(reply{code: http.StatusBadRequest, body: `{"status":"error","errorType":"bad_data","error":"bad range"}`})(w, r)
		return
	}
	s.mu.Lock()
	s.asked = append(s.asked, askedRange{start: start, end: end, step: step, query: r.Form.Get("query")})
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.mu.Unlock()
	type stream struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	result := []stream{}
	for _, ser := range s.series {
		st := stream{Metric: ser.labels}
		for t := start; !t.After(end); t = t.Add(step) {
			if v, ok := ser.value(t); ok {
				st.Values = append(st.Values, [2]any{float64(t.UnixMilli()) / 1000, strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
		if len(st.Values) > 0 {
			result = append(result, st)
		}
	}
	body, _ := json.Marshal(map[string]any{"resultType": "matrix", "result": result})
	answer(success(string(body)))(w, r)
}

func parseUnix(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(int64(f * 1000)), nil
}

// newRangeServer serves h on /api/v1/query_range.
func newRangeServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	return newServerAt(t, "/api/v1/query_range", h)
}

var rangeStart = time.Unix(1700000000, 0)

// ramp is the value i at step i of 10s from rangeStart, everywhere but where skip says.
func ramp(skip func(i int) bool) func(time.Time) (float64, bool) {
	return func(t time.Time) (float64, bool) {
		i := int(t.Sub(rangeStart) / (10 * time.Second))
		return float64(i), !skip(i)
	}
}

func never(int) bool { return false }

func TestQueryRangeResults(t *testing.T) {
	tests := []struct {
		name         string
		series       []series
		end          time.Time
		want         string // the steps' indexes and values, "i=v,..."
		wantIs       error
		wantContains []string
	}{
		{
			name:   "one series gives its value at every step",
			series: []series{{labels: map[string]string{}, value: ramp(never)}},
			end:    rangeStart.Add(50 * time.Second),
			want:   "0=0,1=1,2=2,3=3,4=4,5=5",
		},
		{
			name:   "a step without a value is left out, not zero",
			series: []series{{labels: map[string]string{}, value: ramp(func(i int) bool { return i == 2 || i == 3 })}},
			end:    rangeStart.Add(50 * time.Second),
			want:   "0=0,1=1,4=4,5=5",
		},
		{
			name: "series one after the other make one value a step",
			series: []series{
				{labels: map[string]string{"instance": "a"}, value: ramp(func(i int) bool { return i >= 3 })},
				{labels: map[string]string{"instance": "b"}, value: ramp(func(i int) bool { return i < 3 })},
			},
			end:  rangeStart.Add(50 * time.Second),
			want: "0=0,1=1,2=2,3=3,4=4,5=5",
		},
		{
			name: "two series at the same step are an error naming them",
			series: []series{
				{labels: map[string]string{"instance": "a"}, value: ramp(never)},
				{labels: map[string]string{"instance": "b"}, value: ramp(func(i int) bool { return i != 4 })},
			},
			end:          rangeStart.Add(50 * time.Second),
			wantContains: []string{"several samples", `instance="a"`, `instance="b"`, "max()"},
		},
		{
			name:   "no value at any step is missing data",
			series: []series{{labels: map[string]string{}, value: ramp(func(int) bool { return true })}},
			end:    rangeStart.Add(50 * time.Second),
			wantIs: ErrNoData,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRangeServer(t, &rangeServer{series: tt.series})
			q := newQuerier(t, Config{URL: srv.URL, Timeout: 5 * time.Second})

			got, _, err := q.QueryRange(t.Context(), "up", rangeStart, tt.end, 10*time.Second)

			wantErr := tt.wantIs != nil || len(tt.wantContains) > 0
			if wantErr {
				if err == nil {
					t.Fatalf("QueryRange returned %v, want an error", got)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %q does not wrap %q", err, tt.wantIs)
				}
				for _, s := range tt.wantContains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("QueryRange failed: %v", err)
			}
			if s := steps(got); s != tt.want {
				t.Errorf("steps = %s, want %s", s, tt.want)
			}
		})
	}
}

// steps writes samples as "index=value,..." with the index of their 10s step.
func steps(samples []Sample) string {
	parts := make([]string, len(samples))
	for i, s := range samples {
		parts[i] = fmt.Sprintf("%d=%g", int(s.T.Sub(rangeStart)/(10*time.Second)), s.V)
	}
	return strings.Join(parts, ",")
}

func TestQueryRangeAsksForALongRangeInParts(t *testing.T) {
	rs := &rangeServer{series: []series{{labels: map[string]string{}, value: ramp(never)}}}
	srv := newRangeServer(t, rs)
	q := newQuerier(t, Config{URL: srv.URL, BearerToken: "tok"})
	const n = 2*MaxSteps + 5
	end := rangeStart.Add((n - 1) * 10 * time.Second)

	got, _, err := q.QueryRange(t.Context(), "max(up)", rangeStart, end, 10*time.Second)
	if err != nil {
		t.Fatalf("QueryRange failed: %v", err)
	}
	if len(got) != n {
		t.Fatalf("got %d steps, want %d", len(got), n)
	}
	for i, s := range got {
		if want := rangeStart.Add(time.Duration(i) * 10 * time.Second); !s.T.Equal(want) || s.V != float64(i) {
			t.Fatalf("step %d = %v at %s, want %d at %s", i, s.V, s.T, i, want)
		}
	}
	if len(rs.asked) != 3 {
		t.Fatalf("asked %d ranges, want 3", len(rs.asked))
	}
	for i, a := range rs.asked {
		if steps := a.end.Sub(a.start)/a.step + 1; steps > MaxSteps || a.step != 10*time.Second || a.query != "max(up)" {
			t.Errorf("range %d: %d steps of %s for %q, want at most %d of 10s for max(up)", i, steps, a.step, a.query, MaxSteps)
		}
		if rs.auth[i] != "Bearer tok" {
			t.Errorf("range %d sent Authorization %q", i, rs.auth[i])
		}
	}
}

func TestQueryRangeErrors(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.Handler
		start, end   time.Time
		step         time.Duration
		wantContains string
	}{
		{name: "Prometheus's error keeps its type and message",
			handler: answer(reply{code: http.StatusBadRequest,
				body: `{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}`}),
			start: rangeStart, end: rangeStart.Add(time.Minute), step: 10 * time.Second, wantContains: "parse error"},
		{name: "an instant vector is not a range",
			handler: answer(success(`{"resultType":"vector","result":[]}`)),
			start:   rangeStart, end: rangeStart.Add(time.Minute), step: 10 * time.Second, wantContains: "not a range vector"},
		{name: "an end before the start is refused before asking",
			handler: answer(success(`{"resultType":"matrix","result":[]}`)),
			start:   rangeStart, end: rangeStart.Add(-time.Minute), step: 10 * time.Second, wantContains: "before it starts"},
		{name: "a step that is not positive is refused before asking",
			handler: answer(success(`{"resultType":"matrix","result":[]}`)),
			start:   rangeStart, end: rangeStart.Add(time.Minute), wantContains: "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRangeServer(t, tt.handler)
			q := newQuerier(t, Config{URL: srv.URL})
			_, _, err := q.QueryRange(t.Context(), "up", tt.start, tt.end, tt.step)
			if err == nil || !strings.Contains(err.Error(), tt.wantContains) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantContains)
			}
		})
	}
}
