package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/detection"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
)

func TestMetricsAreUnavailableWhileAnAPIServerCannotBeRead(t *testing.T) {
	now := time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)
	a, b := "https://192.0.2.1:6443", "https://192.0.2.2:6443"
	const gone = "no longer listed in default/kubernetes (last listed 3s before this round): an API server down is not read"
	tests := []struct {
		name        string
		failed      map[string]string
		readings    []detection.Reading
		want        bool
		wantReason  string
		wantMessage string
	}{
		{
			name:        "every instance read",
			readings:    []detection.Reading{{Name: "lists", OK: true}},
			want:        true,
			wantReason:  v1alpha1.ReasonMetricsRead,
			wantMessage: "Read every signal; scraped 2 of 2 API server instances (" + a + ", " + b + ")",
		},
		{
			name:        "one instance down, the signal calm on the other",
			failed:      map[string]string{b: gone},
			readings:    []detection.Reading{{Name: "lists", Message: "only a lower bound, 3, from the API servers scraped"}},
			wantReason:  v1alpha1.ReasonPartialScrape,
			wantMessage: "Partially blind: scraped 1 of 2 API server instances (" + a + "); " + b + ": " + gone,
		},
		{
			name:        "one instance down, the signal past its threshold on the other",
			failed:      map[string]string{b: "connection refused"},
			readings:    []detection.Reading{{Name: "lists", OK: true, Value: 80}},
			wantReason:  v1alpha1.ReasonPartialScrape,
			wantMessage: "Partially blind: scraped 1 of 2 API server instances (" + a + "); " + b + ": connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := sampler.Status{LastRound: now, Targets: []string{a, b}, Failed: tt.failed}
			round := &signals.Round{T: now, Instances: map[string]map[string]signals.Result{a: {}}, Failed: tt.failed}
			if tt.failed == nil {
				round.Instances[b] = map[string]signals.Result{}
			}
			got := metricsAvailability(st, []*signals.Round{round}, tt.readings, false, now, time.Minute)
			if got.available != tt.want || got.reason != tt.wantReason || !strings.HasPrefix(got.message, tt.wantMessage) {
				t.Errorf("metrics available %v, %s: %q\nwant %v, %s: %q", got.available, got.reason, got.message,
					tt.want, tt.wantReason, tt.wantMessage)
			}
		})
	}
}
