package backtest

import (
	"slices"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/signals"
)

func TestTheRoundsTheOperatorWouldHaveTaken(t *testing.T) {
	tests := []struct {
		name           string
		step, interval time.Duration
		want           []int // the seconds of the rounds kept, of 0 to 30
	}{
		{name: "every round when the recording scraped at the interval", step: 5 * time.Second, interval: 5 * time.Second,
			want: []int{0, 5, 10, 15, 20, 25, 30}},
		{name: "every other round of a step half the interval", step: 5 * time.Second, interval: 10 * time.Second,
			want: []int{0, 10, 20, 30}},
		{name: "every third for 15s on 5s", step: 5 * time.Second, interval: 15 * time.Second, want: []int{0, 15, 30}},
		{name: "every round when the recording scraped less often than the interval", step: 5 * time.Second,
			interval: 2 * time.Second, want: []int{0, 5, 10, 15, 20, 25, 30}},
		{name: "an unknown step is taken to be the interval", interval: 10 * time.Second, want: []int{0, 10, 20, 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rounds []*signals.Round
			for s := 0; s <= 30; s += 5 {
				rounds = append(rounds, &signals.Round{T: t0.Add(time.Duration(s) * time.Second)})
			}
			var got []int
			for r := range taken(slices.Values(rounds), tt.step, tt.interval) {
				got = append(got, int(r.T.Sub(t0)/time.Second))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("kept %v, want %v", got, tt.want)
			}
		})
	}
}
