package controllers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// fakePrometheus answers instant queries in the Prometheus HTTP API's
// format: 512 for the in-flight signal's expression, no data for anything
// else. It records the expressions it was asked.
func fakePrometheus(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.URL.Path != "/api/v1/query" {
			http.Error(w, `{"status":"error","errorType":"bad_data","error":"bad request"}`, http.StatusBadRequest)
			return
		}
		q := r.Form.Get("query")
		mu.Lock()
		asked = append(asked, q)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(q, "apiserver_current_inflight_requests") {
			_, _ = fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[%d,"512"]}]}}`, time.Now().Unix())
			return
		}
		_, _ = fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), asked...)
	}
}

// TestAPrometheusSourceReadsItsSignalsFromPrometheus: a catalogue signal is
// read with its documented PromQL, and an expression matching no series is
// missing data, never zero.
func TestAPrometheusSourceReadsItsSignalsFromPrometheus(t *testing.T) {
	srv, asked := fakePrometheus(t)
	p := newPolicy("from-prometheus")
	p.Spec.Interval = &metav1.Duration{Duration: time.Second}
	p.Spec.Source = v1alpha1.MetricsSource{Type: v1alpha1.SourcePrometheus, Prometheus: &v1alpha1.PrometheusSource{URL: srv.URL}}
	p.Spec.Targets.NamespaceSelector = &v1alpha1.LabelSelector{MatchLabels: map[string]v1alpha1.LabelValue{"none": "none"}}
	p.Spec.Triggers = []v1alpha1.Trigger{
		{Name: "inflight", Signal: v1alpha1.SignalInflightRequests, Threshold: resource.MustParse("400"),
			For: &metav1.Duration{Duration: 0}},
		{Name: "nothing", PromQL: `sum(up{job="nope"})`, Threshold: resource.MustParse("1")},
	}
	create(t, p)

	eventually(t, func() error {
		got := get(t, "from-prometheus")
		var inflight, nothing v1alpha1.SignalStatus
		for _, s := range got.Status.Signals {
			switch s.Name {
			case "inflight":
				inflight = s
			case "nothing":
				nothing = s
			}
		}
		if inflight.Value != "512" || inflight.State != v1alpha1.TriggerFiring {
			return fmt.Errorf("inflight = %+v, want 512 and firing", inflight)
		}
		if nothing.Value != "" || nothing.State != v1alpha1.TriggerUnknown || !strings.Contains(nothing.Message, "no data") {
			return fmt.Errorf("nothing = %+v, want no value, Unknown, and why", nothing)
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionMetricsAvailable)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonQueryFailed {
			return fmt.Errorf("MetricsAvailable = %+v, want False/QueryFailed", c)
		}
		return nil
	})
	want := "max(sum by (instance) (apiserver_current_inflight_requests))"
	found := false
	for _, q := range asked() {
		found = found || q == want
	}
	if !found {
		t.Errorf("Prometheus was never asked %q; it was asked %v", want, asked()[:min(3, len(asked()))])
	}
}
