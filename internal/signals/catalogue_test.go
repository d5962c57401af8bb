package signals

import (
	"slices"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/policy"
)

// TestCatalogueFamiliesHoldWhatEverySignalReads: a recording of the
// catalogue's families has what any catalogue signal and attribution fold.
func TestCatalogueFamiliesHoldWhatEverySignalReads(t *testing.T) {
	fams := CatalogueFamilies()
	if !slices.IsSorted(fams) || len(slices.Compact(slices.Clone(fams))) != len(fams) {
		t.Errorf("CatalogueFamilies() = %v, want sorted and unique", fams)
	}
	accums := []Accumulator{DispatchedByFlowSchema, RejectedByFlowSchema, SeatsByFlowSchema}
	for sig := range catalogue {
		q, err := ForTrigger(&policy.Trigger{Name: "t", Signal: sig, Window: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		accums = append(accums, q.Accumulators()...)
	}
	for _, a := range accums {
		if !slices.Contains(fams, a.Family) {
			t.Errorf("%s reads %s, which CatalogueFamilies leaves out", a.Key(), a.Family)
		}
	}
	if len(fams) != 12 {
		t.Errorf("CatalogueFamilies() has %d families (%v), want the 12 of the catalogue's constants", len(fams), fams)
	}
}
