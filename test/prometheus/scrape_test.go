package prometheus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/promserver"
	"github.com/loadshed/loadshed/test/testutil"
)

// TestEveryKubeAPIServerIsScrapedAlsoAfterARestart: Prometheus scrapes both
// kube-apiservers, each under the instance label of the address it
// publishes; one stopped is down, and scraped again once it is back on its
// address (its process_start_time_seconds moves on).
func TestEveryKubeAPIServerIsScrapedAlsoAfterARestart(t *testing.T) {
	ctx := context.Background()
	prom := env.StartPrometheus(t, time.Second)
	q, err := prom.Querier()
	if err != nil {
		t.Fatal(err)
	}
	second := hostOf(t, env.AdvertisedURL(1))
	up := func(instance string) (float64, error) {
		v, _, err := q.Query(ctx, fmt.Sprintf("up{job=%q, instance=%q}", promserver.JobAPIServer, instance), time.Time{})
		return v, err
	}
	for i := range env.APIServers() {
		if err := want(up(hostOf(t, env.AdvertisedURL(i))))(1, fmt.Sprintf("up of kube-apiserver %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	started := func() (float64, error) {
		expr := fmt.Sprintf("process_start_time_seconds{job=%q, instance=%q}", promserver.JobAPIServer, second)
		v, _, err := q.Query(ctx, expr, time.Time{})
		return v, err
	}
	before, err := started()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.StopAPIServer(1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		return want(up(second))(0, "up of the stopped kube-apiserver")
	})
	if err := env.StartAPIServer(1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if err := want(up(second))(1, "up of the restarted kube-apiserver"); err != nil {
			return err
		}
		after, err := started()
		switch {
		case err != nil:
			return err
		case after <= before:
			return fmt.Errorf("its process_start_time_seconds is %v, want after %v", after, before)
		}
		return nil
	})
}

// want checks a query's value: want(q())(1, "what") is an error unless the
// query answered 1.
func want(v float64, err error) func(float64, string) error {
	return func(expected float64, what string) error {
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", what, err)
		case v != expected:
			return fmt.Errorf("%s is %v, want %v", what, v, expected)
		}
		return nil
	}
}
