package shed

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/loadshed/loadshed/internal/plan"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

var t0 = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)

// fleet returns linux nodes node-00, node-01, ... then windows nodes
// win-NN, each with its kubernetes.io/hostname label, as kubelets set it.
func fleet(linux, windows int) []corev1.Node {
	out := make([]corev1.Node, 0, linux+windows)
	add := func(name, os string) {
		out = append(out, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/os": os, corev1.LabelHostname: name}}})
	}
	for i := range linux {
		add(fmt.Sprintf("node-%02d", i), "linux")
	}
	for i := range windows {
		add(fmt.Sprintf("win-%02d", linux+i), "windows")
	}
	return out
}

func requirement(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

// requiring returns an affinity whose required node affinity has one term
// of each requirement, terms being ORed.
func requiring(reqs ...corev1.NodeSelectorRequirement) *corev1.Affinity {
	sel := &corev1.NodeSelector{}
	for _, r := range reqs {
		sel.NodeSelectorTerms = append(sel.NodeSelectorTerms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{r}})
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: sel}}
}

var (
	linuxOnly = requirement("kubernetes.io/os", corev1.NodeSelectorOpIn, "linux")
	gpus      = requirement("gpu", corev1.NodeSelectorOpExists)
)

func daemonSets() map[string]*appsv1.DaemonSet {
	plain := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
	withSelector := plain.DeepCopy()
	withSelector.Annotations = map[string]string{"team": "observability"}
	withSelector.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	withAffinity := plain.DeepCopy()
	withAffinity.Spec.Template.Spec.Affinity = requiring(linuxOnly, gpus)
	withAffinity.Spec.Template.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{}
	return map[string]*appsv1.DaemonSet{"no constraints": plain, "a node selector": withSelector, "required node affinity": withAffinity}
}

// runsOn returns the nodes a DaemonSet's pod template lets its pods run
// on, judged as the scheduler and the DaemonSet controller judge them
// (nodeSelector and required node affinity).
func runsOn(t *testing.T, ds *appsv1.DaemonSet, nodes []corev1.Node) []string {
	t.Helper()
	required := nodeaffinity.GetRequiredNodeAffinity(&corev1.Pod{Spec: ds.Spec.Template.Spec})
	var out []string
	for i := range nodes {
		ok, err := required.Match(&nodes[i])
		if err != nil {
			t.Fatalf("matching %s: %v", nodes[i].Name, err)
		}
		if ok {
			out = append(out, nodes[i].Name)
		}
	}
	return out
}

func TestPauseWavesAndRestoreEndWhereTheyBegan(t *testing.T) {
	waves := []int32{10, 25, 50, 100}
	all := fleet(20, 5)
	for name, ds := range daemonSets() {
		t.Run(name, func(t *testing.T) {
			rec := plan.Pause{Since: t0, Load: 900}
			paused, err := Apply(ds, "flood", "it floods", rec, waves, all)
			if err != nil {
				t.Fatal(err)
			}
			if paused.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] != "flood" || PausedBy(paused) != "flood" {
				t.Fatalf("not paused: %+v", paused.Spec.Template.Spec.NodeSelector)
			}
			if !IsPausedAsRecorded(paused, rec, waves) {
				t.Error("a fresh pause does not count as paused as recorded")
			}
			back, err := ReadPause(paused)
			if err != nil || !back.Since.Equal(t0) || back.Load != 900 {
				t.Errorf("the record read back is %+v (%v)", back, err)
			}

			cur := paused
			var before []string
			for w := 1; w <= len(waves); w++ {
				rec.Wave, rec.WaveStarted = w, t0.Add(time.Duration(w)*time.Minute)
				cur, err = Apply(cur, "flood", "", rec, waves, all)
				if err != nil {
					t.Fatal(err)
				}
				if _, still := cur.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]; still {
					t.Fatalf("wave %d still carries the pause selector", w)
				}
				on := runsOn(t, cur, all)
				if len(on) < len(before) || !isSubset(before, on) {
					t.Errorf("wave %d runs on %v, not a superset of the wave before, %v", w, on, before)
				}
				before = on
			}
			restored, err := Restore(cur, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(restored.Spec.Template, ds.Spec.Template) {
				t.Errorf("the restored pod template differs from the original:\n%+v\n%+v", restored.Spec.Template.Spec, ds.Spec.Template.Spec)
			}
			if !equality.Semantic.DeepEqual(restored.Annotations, ds.Annotations) {
				t.Errorf("annotations after restore: %v, want %v", restored.Annotations, ds.Annotations)
			}
		})
	}
}

func isSubset(small, big []string) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

// TestEachWaveRunsOnItsShareAndTheLastOnTheOriginal: whatever the original
// scheduling, a partial wave lets the pods run on exactly the nodes
// WaveNodes chose (a superset of the wave before), with one hostname term
// in place of the original required terms (plus one term by name for each
// node the hostname label cannot single out), and every other constraint
// kept; the 100% wave is the original scheduling, with the pause record
// still on the DaemonSet; the restore is the original.
func TestEachWaveRunsOnItsShareAndTheLastOnTheOriginal(t *testing.T) {
	waves := []int32{10, 25, 50, 100}
	withoutHostname := fleet(20, 5)
	for i := range 6 {
		delete(withoutHostname[i*4].Labels, corev1.LabelHostname)
	}
	sharing := fleet(20, 5)
	sharing[3].Labels[corev1.LabelHostname] = "shared"  // linux, eligible
	sharing[21].Labels[corev1.LabelHostname] = "shared" // windows, never
	preferences := requiring(linuxOnly)
	preferences.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []corev1.PreferredSchedulingTerm{
		{Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{gpus}}}}
	preferences.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
		{TopologyKey: corev1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}}}}
	tests := []struct {
		name     string
		sched    Scheduling
		nodes    []corev1.Node
		eligible int
		// byName counts the nodes of each partial wave selected by name.
		byName []int
	}{
		{name: "no constraints: every node", nodes: fleet(20, 5), eligible: 25, byName: []int{0, 0, 0}},
		{name: "one term", sched: Scheduling{Affinity: requiring(linuxOnly)}, nodes: fleet(20, 5), eligible: 20,
			byName: []int{0, 0, 0}},
		{name: "several terms", sched: Scheduling{Affinity: requiring(linuxOnly, gpus,
			requirement("kubernetes.io/arch", corev1.NodeSelectorOpIn, "amd64", "arm64"))},
			nodes: fleet(20, 5), eligible: 20, byName: []int{0, 0, 0}},
		{name: "a nodeSelector, preferences and pod anti-affinity are kept",
			sched: Scheduling{NodeSelector: map[string]string{"kubernetes.io/os": "linux"}, Affinity: preferences},
			nodes: fleet(20, 5), eligible: 20, byName: []int{0, 0, 0}},
		{name: "nodes without the hostname label are selected by name",
			sched: Scheduling{Affinity: requiring(linuxOnly)}, nodes: withoutHostname, eligible: 20,
			byName: []int{1, 2, 3}}, // node-00, -04, -08, -12, -16 lack it
		{name: "a hostname two nodes share is selected by name, and never selects the ineligible one",
			sched: Scheduling{Affinity: requiring(linuxOnly)}, nodes: sharing, eligible: 20,
			byName: []int{0, 1, 1}}, // node-03 from the 25% wave
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
			ds.Spec.Template.Spec.NodeSelector, ds.Spec.Template.Spec.Affinity = tt.sched.NodeSelector, tt.sched.Affinity
			if got := runsOn(t, ds, tt.nodes); len(got) != tt.eligible {
				t.Fatalf("the original runs on %d nodes, want %d: %v", len(got), tt.eligible, got)
			}
			rec := plan.Pause{Since: t0}
			cur, err := Apply(ds, "flood", "", rec, waves, tt.nodes)
			if err != nil {
				t.Fatal(err)
			}
			var before []string
			for w := 1; w <= len(waves); w++ {
				rec.Wave = w
				if cur, err = Apply(cur, "flood", "", rec, waves, tt.nodes); err != nil {
					t.Fatal(err)
				}
				on := runsOn(t, cur, tt.nodes)
				want, _ := WaveNodes(tt.sched, tt.nodes, waves[w-1])
				if !slices.Equal(on, want.Nodes) || !isSubset(before, on) {
					t.Errorf("wave %d runs on %v, want %v (a superset of %v)", w, on, want, before)
				}
				before = on
				if !IsPausedAsRecorded(cur, rec, waves) {
					t.Errorf("wave %d does not count as paused as recorded", w)
				}
				checkWave(t, w, cur, ds, tt.byName, waves)
			}
			if len(before) != tt.eligible {
				t.Errorf("the last wave runs on %d nodes, want every eligible one (%d)", len(before), tt.eligible)
			}
			restored, err := Restore(cur, nil)
			if err != nil || !equality.Semantic.DeepEqual(restored.Spec.Template, ds.Spec.Template) {
				t.Errorf("the restore differs from the original (%v)", err)
			}
		})
	}
}

// checkWave checks the template of wave w: a wave selector in place of the
// original required terms, and the rest as it was; at 100% the original
// scheduling, under the pause record.
func checkWave(t *testing.T, w int, cur, orig *appsv1.DaemonSet, byName []int, waves []int32) {
	t.Helper()
	spec, want := cur.Spec.Template.Spec, orig.Spec.Template.Spec
	if waves[w-1] == 100 {
		if !equality.Semantic.DeepEqual(spec.NodeSelector, want.NodeSelector) || !equality.Semantic.DeepEqual(spec.Affinity, want.Affinity) {
			t.Errorf("the 100%% wave's scheduling is %v %+v, want the original %v %+v", spec.NodeSelector, spec.Affinity,
				want.NodeSelector, want.Affinity)
		}
		if PausedBy(cur) != "flood" || cur.Annotations[v1alpha1.AnnotationWave] != strconv.Itoa(w) {
			t.Errorf("the 100%% wave dropped the pause record: %v", cur.Annotations)
		}
		return
	}
	if !equality.Semantic.DeepEqual(spec.NodeSelector, want.NodeSelector) {
		t.Errorf("wave %d: nodeSelector %v, want the original %v", w, spec.NodeSelector, want.NodeSelector)
	}
	required := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if !isWaveSelector(required) {
		t.Fatalf("wave %d: required node affinity %+v is not a wave's", w, required)
	}
	hostnameTerms := 0
	if len(required.NodeSelectorTerms[0].MatchExpressions) == 1 {
		hostnameTerms = 1
		if v := required.NodeSelectorTerms[0].MatchExpressions[0].Values; !slices.IsSorted(v) || len(slices.Compact(slices.Clone(v))) != len(v) {
			t.Errorf("wave %d: hostnames %v are not sorted and unique", w, v)
		}
	}
	if got := len(required.NodeSelectorTerms) - hostnameTerms; got != byName[w-1] {
		t.Errorf("wave %d: %d nodes selected by name, want %d", w, got, byName[w-1])
	}
	kept, wantKept := spec.Affinity.DeepCopy(), want.Affinity.DeepCopy()
	kept.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = nil
	if wantKept == nil {
		wantKept = &corev1.Affinity{}
	}
	if wantKept.NodeAffinity == nil {
		wantKept.NodeAffinity = &corev1.NodeAffinity{}
	}
	wantKept.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = nil
	if !equality.Semantic.DeepEqual(kept, wantKept) {
		t.Errorf("wave %d changed more than the required node affinity:\n%+v\nwant\n%+v", w, kept, wantKept)
	}
}

// TestAWaveCostsTheSameWhateverTheOriginalTerms: templates that select the
// same nodes with none, one or three required terms get the same wave.
func TestAWaveCostsTheSameWhateverTheOriginalTerms(t *testing.T) {
	waves := []int32{10, 25, 50, 100}
	all := fleet(40, 0)
	everyLinux := []*corev1.Affinity{nil, requiring(linuxOnly), requiring(linuxOnly, gpus,
		requirement("kubernetes.io/arch", corev1.NodeSelectorOpIn, "amd64"))}
	for w := 1; w < len(waves); w++ {
		var first *corev1.NodeSelector
		for _, a := range everyLinux {
			ds := &appsv1.DaemonSet{}
			ds.Spec.Template.Spec.Affinity = a
			got, err := Apply(ds, "flood", "", plan.Pause{Since: t0, Wave: w}, waves, all)
			if err != nil {
				t.Fatal(err)
			}
			sel := got.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
			if first == nil {
				first = sel
			} else if !equality.Semantic.DeepEqual(sel, first) {
				t.Errorf("wave %d: %d original terms give %+v, none gives %+v", w, len(requiringTerms(a)), sel, first)
			}
			if len(sel.NodeSelectorTerms) != 1 {
				t.Errorf("wave %d: %d terms, want the one hostname term", w, len(sel.NodeSelectorTerms))
			}
		}
	}
}

func requiringTerms(a *corev1.Affinity) []corev1.NodeSelectorTerm {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

// TestAWaveWithNoEligibleNodeRunsNowhere: an original that selects no node
// (its nodes are gone) gives a wave with none; it keeps the pause selector
// rather than an empty node affinity, which the API server would refuse.
func TestAWaveWithNoEligibleNodeRunsNowhere(t *testing.T) {
	ds := &appsv1.DaemonSet{}
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "plan9"}
	waves := []int32{50, 100}
	rec := plan.Pause{Since: t0, Wave: 1}
	got, err := Apply(ds, "flood", "", rec, waves, fleet(4, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused] != "flood" || got.Spec.Template.Spec.Affinity != nil {
		t.Errorf("an empty wave's scheduling is %v %+v, want the pause selector", got.Spec.Template.Spec.NodeSelector,
			got.Spec.Template.Spec.Affinity)
	}
	if !IsPausedAsRecorded(got, rec, waves) {
		t.Error("an empty wave does not count as paused as recorded")
	}
}

func TestWaveNodesTakeAShareOfTheEligibleNodes(t *testing.T) {
	all := fleet(20, 5)
	linux := Scheduling{NodeSelector: map[string]string{"kubernetes.io/os": "linux"}}
	tests := []struct {
		percent int32
		want    int
	}{{10, 2}, {25, 5}, {50, 10}, {100, 20}, {1, 1}}
	for _, tt := range tests {
		got, err := WaveNodes(linux, all, tt.percent)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Nodes) != tt.want || got.Eligible != 20 || got.Capped {
			t.Errorf("%d%% of 20 eligible nodes = %d nodes of %d (capped: %v), want %d of 20, not capped", tt.percent,
				len(got.Nodes), got.Eligible, got.Capped, tt.want)
		}
		for _, n := range got.Nodes {
			if n[:3] == "win" {
				t.Errorf("wave runs on %s, which the DaemonSet's selector excludes", n)
			}
		}
	}
}

// manyNodes returns n nodes with names of 60 bytes, in sorted order;
// withHostname gives each its kubernetes.io/hostname label, as kubelets
// set it.
func manyNodes(n int, withHostname bool) []corev1.Node {
	out := make([]corev1.Node, n)
	for i := range out {
		name := fmt.Sprintf("node-%05d.a-long-zone-name.compute.internal.example.com", i)
		out[i].Name = name + strings.Repeat("x", 60-len(name))
		if withHostname {
			out[i].Labels = map[string]string{corev1.LabelHostname: out[i].Name}
		}
	}
	return out
}

// halfByName removes the hostname label of every other node.
func halfByName(nodes []corev1.Node) []corev1.Node {
	for i := 0; i < len(nodes); i += 2 {
		nodes[i].Labels = nil
	}
	return nodes
}

// TestAWaveListsNoMoreNodesThanFitInTheLimit: at 2,000 nodes of 60-byte
// names, a partial wave lists the first of its nodes whose selector fits in
// MaxWaveBytes, whether it selects them by hostname (63 bytes a node: about
// 650 of them) or by name (a term each, 132 bytes: about 310), and says it
// is capped; each wave is the beginning of the next, so waves still grow;
// the 100% wave is every eligible node, not capped.
func TestAWaveListsNoMoreNodesThanFitInTheLimit(t *testing.T) {
	waves := []int32{10, 25, 50, 75, 100}
	tests := []struct {
		name  string
		nodes []corev1.Node
		// capped are the partial waves the limit caps.
		capped []bool
	}{
		{"selected by hostname", manyNodes(2000, true), []bool{false, false, true, true}},
		{"selected by name", manyNodes(2000, false), []bool{false, true, true, true}},
		{"every other one selected by name", halfByName(manyNodes(2000, true)), []bool{false, true, true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
			sizes, err := WaveSizes(ds, tt.nodes, waves)
			if err != nil {
				t.Fatal(err)
			}
			rec := plan.Pause{Since: t0}
			var before []string
			for w := 1; w <= len(waves); w++ {
				wave, err := WaveNodes(Scheduling{}, tt.nodes, waves[w-1])
				if err != nil {
					t.Fatal(err)
				}
				if want := (plan.WaveSize{Nodes: len(wave.Nodes), Eligible: 2000, Capped: wave.Capped}); sizes[w-1] != want {
					t.Errorf("wave %d: WaveSizes says %+v, WaveNodes %+v", w, sizes[w-1], want)
				}
				if len(wave.Nodes) < len(before) || !slices.Equal(wave.Nodes[:len(before)], before) {
					t.Errorf("wave %d (%d nodes) does not begin with the wave before (%d nodes)", w, len(wave.Nodes), len(before))
				}
				before = wave.Nodes
				rec.Wave = w
				cur, err := Apply(ds, "flood", "", rec, waves, tt.nodes)
				if err != nil {
					t.Fatal(err)
				}
				if on := runsOn(t, cur, tt.nodes); !slices.Equal(on, wave.Nodes) {
					t.Errorf("wave %d runs on %d nodes, want the %d WaveNodes chose", w, len(on), len(wave.Nodes))
				}
				full := int(math.Ceil(2000 * float64(waves[w-1]) / 100))
				if waves[w-1] == 100 {
					if wave.Capped || len(wave.Nodes) != 2000 {
						t.Errorf("the 100%% wave runs on %d nodes (capped: %v), want all 2000", len(wave.Nodes), wave.Capped)
					}
					continue
				}
				if wave.Capped != tt.capped[w-1] || wave.Capped != (len(wave.Nodes) < full) {
					t.Errorf("wave %d runs on %d nodes of its %d, capped: %v, want %v", w, len(wave.Nodes), full, wave.Capped,
						tt.capped[w-1])
				}
				raw, err := json.Marshal(cur.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution)
				if err != nil {
					t.Fatal(err)
				}
				// The selector is its nodes' bytes and a fixed envelope; a
				// capped one has no room for the next node (132 bytes at most).
				if len(raw) > MaxWaveBytes+128 || wave.Capped && len(raw) < MaxWaveBytes-132 {
					t.Errorf("wave %d: the selector of %d nodes is %d bytes, for a limit of %d (capped: %v)", w, len(wave.Nodes),
						len(raw), MaxWaveBytes, wave.Capped)
				}
				t.Logf("wave %d (%d%%): %d nodes, capped: %v, selector %d bytes of JSON", w, waves[w-1], len(wave.Nodes),
					wave.Capped, len(raw))
			}
		})
	}
}

// TestRemovingAWaveIsDetected: someone (a GitOps tool) reverting the
// template to its original scheduling removes a partial wave, which is
// seen; at the 100% wave the template is the original, and nothing is
// removed.
func TestRemovingAWaveIsDetected(t *testing.T) {
	ds := daemonSets()["required node affinity"]
	waves := []int32{10, 25, 50, 100}
	for w := 1; w <= len(waves); w++ {
		rec := plan.Pause{Since: t0, Wave: w}
		wave, err := Apply(ds, "flood", "", rec, waves, fleet(20, 0))
		if err != nil {
			t.Fatal(err)
		}
		reverted := wave.DeepCopy()
		reverted.Spec.Template = *ds.Spec.Template.DeepCopy()
		if got, want := IsPausedAsRecorded(reverted, rec, waves), waves[w-1] == 100; got != want {
			t.Errorf("wave %d reverted to the original counts as paused as recorded: %v, want %v", w, got, want)
		}
	}
}

func TestSomeoneRemovingThePauseIsDetected(t *testing.T) {
	ds := daemonSets()["a node selector"]
	rec := plan.Pause{Since: t0}
	paused, err := Apply(ds, "flood", "", rec, []int32{100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	delete(paused.Spec.Template.Spec.NodeSelector, v1alpha1.LabelPaused)
	if IsPausedAsRecorded(paused, rec, []int32{100}) {
		t.Error("a DaemonSet whose pause selector was removed still counts as paused")
	}
}

// TestARestoreRemembersItsAttemptUntilTheNextPause: a full restore leaves
// its time and attempt; the next pause folds them into its record; a
// restore without memory (the policy is deleted) leaves nothing.
func TestARestoreRemembersItsAttemptUntilTheNextPause(t *testing.T) {
	ds := daemonSets()["a node selector"]
	paused, err := Apply(ds, "flood", "", plan.Pause{Since: t0, Attempt: 2, Overrides: 1}, []int32{100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := ReadPause(paused); err != nil || rec.Attempt != 2 || rec.Overrides != 1 {
		t.Fatalf("record read back %+v (%v), want attempt 2 and 1 override", rec, err)
	}
	restored, err := Restore(paused, &plan.Restoration{At: t0.Add(time.Hour), Attempt: 2})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ReadRestoration(restored, "flood")
	if !ok || got.Attempt != 2 || !got.At.Equal(t0.Add(time.Hour)) {
		t.Errorf("restoration read back %+v (%v)", got, ok)
	}
	if _, ok := ReadRestoration(restored, "other"); ok {
		t.Error("another policy reads the restoration as its own")
	}
	if by := RestoredBy(restored); by != "flood" {
		t.Errorf("RestoredBy = %q, want flood", by)
	}
	if by := RestoredBy(paused); by != "" {
		t.Errorf("RestoredBy = %q on a paused DaemonSet, want none", by)
	}
	if forgot, ok := Forget(restored, "flood"); !ok || !equality.Semantic.DeepEqual(forgot.Annotations, ds.Annotations) {
		t.Errorf("forgetting the restore leaves %v (%v), want %v", forgot.Annotations, ok, ds.Annotations)
	}
	again, err := Apply(restored, "flood", "", plan.Pause{Since: t0.Add(2 * time.Hour), Attempt: 3}, []int32{100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ReadRestoration(again, "flood"); ok {
		t.Error("a new pause keeps the last restore's annotations beside its own record")
	}
	clean, err := Restore(again, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(clean.Annotations, ds.Annotations) {
		t.Errorf("annotations after a restore without memory: %v, want %v", clean.Annotations, ds.Annotations)
	}
}
