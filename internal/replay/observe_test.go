package replay

import "testing"

func TestACounterTotalsAcrossResets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		readings []float64
		want     float64
	}{
		{"no reading", nil, 0},
		{"a counter that only grows", []float64{1, 5, 9}, 9},
		{"a restart counts from zero again", []float64{4, 10, 2, 7}, 17},
		{"two restarts", []float64{10, 3, 5, 1}, 16},
		{"a reading that stays", []float64{3, 3, 3}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c counter
			got := 0.0
			for _, v := range tc.readings {
				got = c.observe(v)
			}
			if got != tc.want || c.total() != tc.want {
				t.Errorf("observe returned %v, total %v; want %v", got, c.total(), tc.want)
			}
		})
	}
}
