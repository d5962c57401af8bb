package scale

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// operatorMetrics is what the scale run reads of the operator's /metrics.
type operatorMetrics struct {
	allocated, gcs, heapInuse float64
	// reconciles counts every reconcile of the policy controller, also the
	// wake-ups that find the policy not yet due; evaluations are the
	// evaluations of all policies, and their durations.
	reconciles  float64
	evaluations histogram
}

// histogram is a cumulative histogram's buckets, count and sum.
type histogram struct {
	bounds     []float64
	cumulative []float64
	count, sum float64
}

// sub returns the histogram of the observations made since before.
func (h histogram) sub(before histogram) histogram {
	out := histogram{bounds: h.bounds, cumulative: make([]float64, len(h.cumulative)),
		count: h.count - before.count, sum: h.sum - before.sum}
	for i := range h.cumulative {
		out.cumulative[i] = h.cumulative[i]
		if i < len(before.cumulative) {
			out.cumulative[i] -= before.cumulative[i]
		}
	}
	return out
}

// quantile returns the upper bound of the bucket holding quantile q; +Inf
// past the last bound.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * h.count
	i := sort.Search(len(h.cumulative), func(i int) bool { return h.cumulative[i] >= rank })
	if i == len(h.bounds) {
		return math.Inf(1)
	}
	return h.bounds[i]
}

// scrapeOperator reads the operator's metrics.
func scrapeOperator(ctx context.Context, url string) (operatorMetrics, error) {
	var out operatorMetrics
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return out, fmt.Errorf("reading the operator's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("reading the operator's metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return out, fmt.Errorf("parsing the operator's metrics: %w", err)
	}
	value := func(name string) float64 {
		f := families[name]
		if f == nil || len(f.Metric) == 0 {
			return math.NaN()
		}
		m := f.Metric[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount())
		}
		return math.NaN()
	}
	out.allocated = value("go_memstats_alloc_bytes_total")
	out.gcs = value("go_gc_duration_seconds")
	out.heapInuse = value("go_memstats_heap_inuse_bytes")
	if f := families["controller_runtime_reconcile_total"]; f != nil {
		for _, m := range f.Metric {
			if labelValue(m, "controller") == "loadshedpolicy" {
				out.reconciles += m.GetCounter().GetValue()
			}
		}
	}
	if f := families["loadshed_policy_evaluation_duration_seconds"]; f != nil {
		for _, m := range f.Metric {
			if m.Histogram != nil {
				out.evaluations = out.evaluations.add(histogramOf(m.Histogram))
			}
		}
	}
	return out, nil
}

// add returns the sum of two histograms with the same buckets (h may be
// empty).
func (h histogram) add(o histogram) histogram {
	if len(h.bounds) == 0 {
		return o
	}
	out := histogram{bounds: h.bounds, cumulative: append([]float64(nil), h.cumulative...), count: h.count + o.count, sum: h.sum + o.sum}
	for i := range out.cumulative {
		if i < len(o.cumulative) {
			out.cumulative[i] += o.cumulative[i]
		}
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func histogramOf(h *dto.Histogram) histogram {
	out := histogram{count: float64(h.GetSampleCount()), sum: h.GetSampleSum()}
	for _, b := range h.Bucket {
		out.bounds = append(out.bounds, b.GetUpperBound())
		out.cumulative = append(out.cumulative, float64(b.GetCumulativeCount()))
	}
	return out
}
