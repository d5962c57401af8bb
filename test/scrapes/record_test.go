package scrapes

import (
	"context"
	"errors"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/recording"
	"github.com/loadshed/loadshed/internal/scrape"
	"github.com/loadshed/loadshed/internal/signals"
	"github.com/loadshed/loadshed/internal/talkers"
	"github.com/loadshed/loadshed/test/testutil"
)

// podLists is the flood's signal: pod LISTs per second over 5s, summed
// over the API servers.
func podLists(t *testing.T) signals.Query {
	t.Helper()
	m, err := policy.NewMatcher("resource", v1alpha1.MatchEqual, "pods")
	if err != nil {
		t.Fatal(err)
	}
	q, err := signals.ForTrigger(&policy.Trigger{Name: "pod-lists", Signal: v1alpha1.SignalListRequestsPerSecond,
		Matchers: []policy.Matcher{m}, Window: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// allAccums are what the flood's signal, some histograms' signals and
// attribution fold.
func allAccums(t *testing.T) []signals.Accumulator {
	t.Helper()
	accums := []signals.Accumulator{signals.DispatchedByFlowSchema, signals.RejectedByFlowSchema,
		signals.SeatsByFlowSchema}
	for _, sig := range []v1alpha1.Signal{v1alpha1.SignalInflightRequests, v1alpha1.SignalMutatingLatencyP99,
		v1alpha1.SignalReadLatencyP99, v1alpha1.SignalEtcdLatencyP99, v1alpha1.SignalSingleObjectDurationP99,
		v1alpha1.SignalListDurationP99, v1alpha1.SignalQueueWaitP99, v1alpha1.SignalSeatUtilization} {
		q, err := signals.ForTrigger(&policy.Trigger{Name: "t", Signal: sig, Window: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		accums = append(accums, q.Accumulators()...)
	}
	return accums
}

// scrapeLive folds a round every second with the operator's scrape code,
// in this process, until the returned function is called; that returns the
// rounds.
func scrapeLive(t *testing.T, accums []signals.Accumulator) (stop func() []*signals.Round) {
	t.Helper()
	sc, err := scrape.New(adminThroughProxy(t), env.Client)
	if err != nil {
		t.Fatal(err)
	}
	var rounds []*signals.Round
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for ctx.Err() == nil {
			r, _ := sc.Fold(ctx, time.Now(), accums, time.Second)
			rounds = append(rounds, r)
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	})
	return func() []*signals.Round {
		cancel()
		wg.Wait()
		return rounds
	}
}

// TestARecordingFoldsAsTheLiveScrapes records both kube-apiservers for 15s
// at 1s while this process scrapes them live with the operator's code: the
// recording holds a round a second of both, the cluster's snapshot, and
// folds to the same values as the live scrapes: the API servers' constant
// series exactly, their histograms' buckets, the flood's rate within 20%.
func TestARecordingFoldsAsTheLiveScrapes(t *testing.T) {
	bin := setUp(t)
	kc := kubeconfig(t, recordSA)
	q := podLists(t)
	nominal := signals.Accumulator{Family: signals.FamilyNominalSeats, Kind: signals.Grouped, GroupBy: "priority_level"}
	accums := append(append(q.Accumulators(), nominal), allAccums(t)...)
	stopLive := scrapeLive(t, accums)
	file := filepath.Join(t.TempDir(), "flood.lsrec")
	began := time.Now()
	_, stderr := plugin(t, bin, kc, "record", "--duration", "15s", "--interval", "1s", "-o", file)
	live := stopLive()
	t.Logf("record took %v and said:\n%s", time.Since(began).Round(100*time.Millisecond), stderr)

	rec, err := recording.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, rec)
	rounds, err := rec.Rounds(accums)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(file)
	t.Logf("%d rounds of 2 API servers in %d bytes: %d bytes per round per API server",
		len(rounds), st.Size(), st.Size()/int64(2*max(1, len(rounds))))
	// A round that overran its second (a busy machine) skips the next.
	if len(rounds) < 12 || len(rounds) > 15 {
		t.Errorf("recorded %d rounds in 15s at 1s, want 15 (12 on a busy machine)", len(rounds))
	}
	readBoth := 0
	for _, r := range rounds {
		if sameStrings(slices.Sorted(maps.Keys(r.Instances)), both()) == nil && len(r.Clients) == 2 {
			readBoth++
		} else {
			t.Logf("round at %s read %d API servers (failed %v) and %d dumps", r.T.Format(time.TimeOnly),
				len(r.Instances), r.Failed, len(r.Clients))
		}
	}
	if readBoth < len(rounds)-1 {
		t.Errorf("%d of %d rounds read both API servers and their dumps, want every one (but one)", readBoth, len(rounds))
	}
	match := nearest(live, lastOfBoth(rounds).T)
	if match == nil {
		t.Fatalf("none of the %d live rounds read both API servers", len(live))
	}
	sameFold(t, lastOfBoth(rounds), match, nominal)
	recorded, _ := q.Points(rounds)
	scraped, _ := q.Points(live)
	r := recorded[len(recorded)-1]
	l := scraped[slices.Index(live, nearest(live, r.T))]
	t.Logf("pod LISTs per second over 5s at %s: %.1f recorded, %.1f scraped live at %s", r.T.Format(time.TimeOnly),
		r.V, l.V, l.T.Format(time.TimeOnly))
	if !r.OK || !l.OK || l.V < 20 || math.Abs(r.V-l.V) > 0.2*l.V {
		t.Errorf("pod LISTs per second: %+v recorded, %+v scraped live; want the flood's, within 20%%", r, l)
	}
}

// lastOfBoth is the last round that read both API servers.
func lastOfBoth(rounds []*signals.Round) *signals.Round {
	for i := len(rounds) - 1; i > 0; i-- {
		if len(rounds[i].Instances) == 2 {
			return rounds[i]
		}
	}
	return rounds[0]
}

// nearest is the round that read both API servers nearest in time to t.
func nearest(rounds []*signals.Round, t time.Time) *signals.Round {
	var best *signals.Round
	for _, r := range rounds {
		if len(r.Instances) == 2 && (best == nil || r.T.Sub(t).Abs() < best.T.Sub(t).Abs()) {
			best = r
		}
	}
	return best
}

// sameFold checks that a recorded round and a live one, a second apart at
// most, folded the same: every priority level's nominal seats, and every
// histogram's bucket bounds, on each API server.
func sameFold(t *testing.T, rec, live *signals.Round, nominal signals.Accumulator) {
	t.Helper()
	for _, inst := range both() {
		got, want := rec.Instances[inst], live.Instances[inst]
		if g, w := got[nominal.Key()].Groups, want[nominal.Key()].Groups; len(w) == 0 || !reflect.DeepEqual(g, w) {
			t.Errorf("%s: nominal seats recorded %v, scraped live %v", inst, g, w)
		}
		histograms := 0
		for key, w := range want {
			if len(w.Buckets) == 0 {
				continue
			}
			histograms++
			if g := got[key].Buckets; !reflect.DeepEqual(slices.Sorted(maps.Keys(g)), slices.Sorted(maps.Keys(w.Buckets))) {
				t.Errorf("%s: %s has buckets %v recorded, %v scraped live", inst, key, slices.Sorted(maps.Keys(g)),
					slices.Sorted(maps.Keys(w.Buckets)))
			}
		}
		if histograms < 3 {
			t.Errorf("%s: the live scrape folded %d histograms, want the catalogue's", inst, histograms)
		}
	}
}

func checkSnapshot(t *testing.T, rec *recording.Recording) {
	t.Helper()
	h := rec.Header()
	if h.Version != recording.Version || h.Interval.Duration != time.Second ||
		!reflect.DeepEqual(h.Families, signals.CatalogueFamilies()) || h.Server != env.Config.Host {
		t.Errorf("header %+v", h)
	}
	dss := rec.DaemonSets()
	i := slices.IndexFunc(dss, func(ds appsv1.DaemonSet) bool { return ds.Namespace == "telemetry" && ds.Name == "agent" })
	if i < 0 || dss[i].Spec.Template.Spec.ServiceAccountName != "agent" || len(dss[i].Spec.Template.Spec.Containers) != 0 {
		t.Errorf("the snapshot's DaemonSets are %+v, want telemetry/agent trimmed", rec.DaemonSets())
	}
	if rec.Namespaces()["telemetry"]["team"] != "observability" {
		t.Errorf("the snapshot's namespaces are %v", rec.Namespaces())
	}
	isServiceAccounts := func(fs flowcontrolv1.FlowSchema) bool { return fs.Name == "service-accounts" }
	if !slices.ContainsFunc(rec.FlowSchemas(), isServiceAccounts) {
		t.Errorf("the snapshot has %d FlowSchemas, none service-accounts", len(rec.FlowSchemas()))
	}
}

// TestRecordStoppedByASignalLeavesAWholeFile: a recording read while record
// runs holds its rounds so far (cut short); SIGINT ends record, which
// finishes the file: it reads whole.
func TestRecordStoppedByASignalLeavesAWholeFile(t *testing.T) {
	bin := setUp(t)
	kc := kubeconfig(t, recordSA)
	file := filepath.Join(t.TempDir(), "stopped.lsrec")
	var stderr strings.Builder
	cmd := exec.Command(bin, "--kubeconfig", kc, "record", "--duration", "5m", "--interval", "1s", "-o", file)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	accums := talkers.Accumulators()
	testutil.Eventually(t, 30*time.Second, func() error {
		rec, err := recording.Open(file)
		if err != nil {
			return err
		}
		rounds, err := rec.Rounds(accums)
		if !errors.Is(err, recording.ErrCutShort) || len(rounds) < 3 {
			return errors.New("fewer than 3 rounds yet")
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("record ended with %v after SIGINT:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("record still runs 20s after SIGINT:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped by a signal") {
		t.Errorf("record said:\n%s", stderr.String())
	}
	rec, err := recording.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	if rounds, err := rec.Rounds(accums); err != nil || len(rounds) < 3 {
		t.Errorf("after SIGINT the recording reads %d rounds, %v; want 3 or more, whole", len(rounds), err)
	}
}
