package exposition

import (
	"fmt"
	"math"
	"testing"

	"github.com/loadshed/loadshed/test/testutil"
)

// describe is everything a parser's callback can read of a sample.
func describe(s *Sample) string {
	out := fmt.Sprintf("%s %d le=%v v=%v", s.Family, s.Suffix, s.Le, s.Value)
	s.Labels(func(name, value []byte) bool {
		out += fmt.Sprintf(" %s=%q", name, value)
		return true
	})
	return out
}

// TestNewSampleRebuildsAParsedSample: every sample of a real scrape, rebuilt
// from what its callback reads, reads the same.
func TestNewSampleRebuildsAParsedSample(t *testing.T) {
	want := Want("apiserver_request_duration_seconds", "apiserver_flowcontrol_dispatched_requests_total",
		"apiserver_current_inflight_requests")
	n := 0
	err := ParseText(testutil.Recorded(t, "apiserver.txt"), want, func(s *Sample) {
		var labels []LabelPair
		s.Labels(func(name, value []byte) bool {
			labels = append(labels, LabelPair{string(name), string(value)})
			return true
		})
		rebuilt := NewSample(s.Family, s.Suffix, s.Le, s.Value, labels)
		if got, want := describe(rebuilt), describe(s); got != want {
			t.Fatalf("rebuilt %s, parsed %s", got, want)
		}
		for _, l := range labels {
			if v, ok := rebuilt.Label(l.Name); !ok || string(v) != l.Value {
				t.Fatalf("rebuilt.Label(%q) = %q, %v; want %q", l.Name, v, ok, l.Value)
			}
		}
		n++
	})
	if err != nil || n < 1000 {
		t.Fatalf("parsed %d samples (%v), want the recorded scrape's", n, err)
	}
}

func TestNewSampleIsTheCallersToKeep(t *testing.T) {
	labels := []LabelPair{{"verb", "LIST"}}
	s := NewSample("f", SuffixBucket, math.Inf(1), 3, labels)
	labels[0].Value = "GET" // the sample holds a copy
	s.Value = 4
	if v, _ := s.Label("verb"); string(v) != "LIST" || s.Value != 4 || !math.IsInf(s.Le, 1) {
		t.Errorf("sample %s, want verb LIST, value 4, le +Inf", describe(s))
	}
	if _, ok := s.Label("le"); ok {
		t.Error("a bucket's le is a label")
	}
	if c := NewSample("f", SuffixNone, 0.5, 1, nil); c.Le != 0 {
		t.Errorf("a sample that is not a bucket has le %v", c.Le)
	}
}
