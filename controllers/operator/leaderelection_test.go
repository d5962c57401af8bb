package operator

import (
	"testing"
	"time"
)

func TestLeaderElectionTimings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		want    leaseTimings
		wantErr bool
	}{
		{name: "zeros take the defaults", opts: Options{},
			want: leaseTimings{DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod}},
		{name: "the flags' values are kept", opts: Options{LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second,
			RetryPeriod: time.Second}, want: leaseTimings{6 * time.Second, 4 * time.Second, time.Second}},
		{name: "a lease shorter than the default renew deadline is refused", opts: Options{LeaseDuration: 10 * time.Second},
			wantErr: true},
		{name: "a lease no longer than the renew deadline is refused",
			opts: Options{LeaseDuration: 4 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second}, wantErr: true},
		{name: "a renew deadline within a jittered retry period is refused",
			opts: Options{LeaseDuration: 6 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second}, wantErr: true},
		{name: "a negative timing is refused",
			opts: Options{LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: -time.Second}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := leaderElectionTimings(tc.opts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("timings %+v, want %+v", got, tc.want)
			}
		})
	}
}
