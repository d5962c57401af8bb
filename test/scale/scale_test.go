// Package scale_test runs a smaller version of `make scale` in `make test`:
// the operator's binary, as its own process, on a quiet cluster of 500
// Nodes and 100 DaemonSets with 10 policies. It checks what the operator
// sends, counted in kube-apiserver's audit log, not how fast anything is:
// status written only when something changes (at most once a minute a
// policy when quiet), each policy evaluated at its own interval, one scrape
// of the API server per interval for all policies, and no object of
// loadshed's made while nothing fires.
package scale_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/scale"
	"github.com/loadshed/loadshed/test/testenv"
)

func TestAQuietClusterCostsTheOperatorLittle(t *testing.T) {
	assets := os.Getenv("LOADSHED_ASSETS")
	if assets == "" {
		t.Fatal("LOADSHED_ASSETS is not set: run `make test`")
	}
	opts := scale.Options{
		Assets: assets, Root: testenv.RepoRoot(), Dir: t.TempDir(),
		Nodes: 500, Namespaces: 10, DaemonSets: 100, Policies: 10,
		Interval: 10 * time.Second, Warmup: 30 * time.Second, Measure: 2 * time.Minute,
		Say: t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := scale.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_ = rep.Write(&out)
	t.Log("\n" + out.String())

	policies := float64(opts.Policies)
	perInterval := time.Minute.Seconds() / opts.Interval.Seconds()
	if got := rep.PerMinute("patch", "loadshedpolicies/status"); got > policies {
		t.Errorf("%.1f status patches a minute for %d quiet policies, want at most one a policy", got, opts.Policies)
	}
	// Every policy is evaluated once an interval; a round of scrapes and
	// the policy's own requeue must not both evaluate it.
	if got := rep.EvaluationsPerMinute; got > 1.25*policies*perInterval {
		t.Errorf("%.1f evaluations a minute, want about %.0f (each policy once an interval)", got, policies*perInterval)
	}
	if got := rep.PerMinute("get", "/metrics"); got > 1.25*perInterval {
		t.Errorf("%.1f scrapes a minute of the one API server, want about %.0f (one an interval for all policies)",
			got, perInterval)
	}
	if rep.LoadshedFlowSchemas > 1 {
		t.Errorf("%d FlowSchemas of loadshed's on a quiet cluster, want only self-protection's", rep.LoadshedFlowSchemas)
	}
	for _, q := range rep.Requests {
		switch {
		case q.Verb == "get" || q.Verb == "list" || q.Verb == "watch":
		case q.Resource == "loadshedpolicies/status" || q.Resource == "leases" || q.Resource == "events":
		default:
			t.Errorf("the operator wrote %s on a quiet cluster (%s, %.1f a minute)", q.Resource, q.Verb, q.PerMinute)
		}
	}
}
