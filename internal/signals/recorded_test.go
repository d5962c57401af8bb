package signals

import (
	"testing"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/policy"

	"github.com/loadshed/loadshed/test/testutil"
)

// TestHarmSignalsMatchARealAPIServer folds a real kube-apiserver's scrape
// and checks that the signals of harm find their series there: a matcher
// on a label the API server does not have, or a value it never takes,
// would leave the signal at 0 for ever.
func TestHarmSignalsMatchARealAPIServer(t *testing.T) {
	data := testutil.Recorded(t, "apiserver.txt")
	for _, sig := range []v1alpha1.Signal{v1alpha1.SignalSingleObjectDurationP99, v1alpha1.SignalListDurationP99, v1alpha1.SignalQueueWaitP99} {
		t.Run(string(sig), func(t *testing.T) {
			q, err := ForTrigger(&policy.Trigger{Name: "t", Signal: sig, Window: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			f := NewFolder(q.Accumulators())
			if err := exposition.Parse("text/plain; version=0.0.4", data, f.Families(), f.Add); err != nil {
				t.Fatal(err)
			}
			res := f.Results()[q.Accum.Key()]
			buckets := len(res.Buckets)
			for _, g := range res.GroupBuckets {
				buckets = max(buckets, len(g))
			}
			if res.Series == 0 || buckets < 5 {
				t.Errorf("%s matched %d series, %d bucket bounds; want the API server's histogram", sig, res.Series, buckets)
			}
		})
	}
}

// TestSingleObjectCallsLeaveOutListsAndNonResourceRequests checks on the
// real scrape that the SLO signal counts GETs of objects and mutations,
// but not LISTs, WATCHes or /metrics-like requests.
func TestSingleObjectCallsLeaveOutListsAndNonResourceRequests(t *testing.T) {
	data := testutil.Recorded(t, "apiserver.txt")
	q, err := ForTrigger(&policy.Trigger{Name: "t", Signal: v1alpha1.SignalSingleObjectDurationP99, Window: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = exposition.Parse("text/plain; version=0.0.4", data, exposition.Want(FamilyRequestDur), func(s *exposition.Sample) {
		if s.Suffix != exposition.SuffixCount || !matches(q.Accum.Matchers, s) {
			return
		}
		verb, _ := s.Label("verb")
		scope, _ := s.Label("scope")
		seen[string(verb)+" "+string(scope)] = true
	})
	if err != nil {
		t.Fatal(err)
	}
	for key := range seen {
		switch key {
		case "GET resource", "POST resource", "POST namespace", "POST cluster", "PUT resource", "PATCH resource", "DELETE resource", "APPLY resource":
		default:
			t.Errorf("the SLO signal counts %q requests", key)
		}
	}
	if !seen["GET resource"] || !seen["PUT resource"] {
		t.Errorf("the SLO signal saw %v; want single-object GETs and PUTs at least", seen)
	}
}
