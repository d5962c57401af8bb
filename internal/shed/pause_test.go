package shed

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/loadshed/loadshed/internal/plan"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

var t0 = time.Date(2024, 12, 11, 15, 17, 0, 0, time.UTC)

func nodes(n int, linux bool) []corev1.Node {
	out := make([]corev1.Node, n)
	for i := range out {
		out[i].Name = fmt.Sprintf("node-%02d", i)
		out[i].Labels = map[string]string{"kubernetes.io/os": "windows"}
		if linux {
			out[i].Labels["kubernetes.io/os"] = "linux"
		}
	}
	return out
}

func daemonSets() map[string]*appsv1.DaemonSet {
	plain := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
	withSelector := plain.DeepCopy()
	withSelector.Annotations = map[string]string{"team": "observability"}
	withSelector.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	withAffinity := plain.DeepCopy()
	withAffinity.Spec.Template.Spec.Affinity = &corev1.Affinity{
		NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/os", Operator: corev1.NodeSelectorOpIn, Values: []string{"linux"}}}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "gpu", Operator: corev1.NodeSelectorOpExists}}},
			},
		}},
		PodAntiAffinity: &corev1.PodAntiAffinity{},
	}
	return map[string]*appsv1.DaemonSet{"no constraints": plain, "a node selector": withSelector, "required node affinity": withAffinity}
}

func TestPauseWavesAndRestoreEndWhereTheyBegan(t *testing.T) {
	waves := []int32{10, 25, 50, 100}
	all := append(nodes(20, true), nodes(5, false)...)
	for i := 20; i < 25; i++ {
		all[i].Name = fmt.Sprintf("win-%02d", i)
	}
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
			if !IsPausedAsRecorded(paused, rec) {
				t.Error("a fresh pause does not count as paused as recorded")
			}
			back, err := ReadPause(paused)
			if err != nil || !back.Since.Equal(t0) || back.Load != 900 {
				t.Errorf("the record read back is %+v (%v)", back, err)
			}

			cur := paused
			prevCount := 0
			for w := 1; w <= len(waves); w++ {
				rec.Wave, rec.WaveStarted = w, t0.Add(time.Duration(w)*time.Minute)
				cur, err = Apply(cur, "flood", "", rec, waves, all)
				if err != nil {
					t.Fatal(err)
				}
				if _, still := cur.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]; still {
					t.Fatalf("wave %d still carries the pause selector", w)
				}
				terms := cur.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
				nodeNames := map[string]bool{}
				for _, term := range terms {
					f := term.MatchFields[len(term.MatchFields)-1]
					if f.Key != "metadata.name" || f.Operator != corev1.NodeSelectorOpIn || len(f.Values) != 1 {
						t.Fatalf("wave %d term %+v: a node field selector takes one value", w, term)
					}
					nodeNames[f.Values[0]] = true
				}
				count := len(nodeNames)
				if count < prevCount {
					t.Errorf("wave %d runs on %d nodes, fewer than the wave before (%d)", w, count, prevCount)
				}
				prevCount = count
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

func TestWaveNodesTakeAShareOfTheEligibleNodes(t *testing.T) {
	all := append(nodes(20, true), nodes(5, false)...)
	for i := 20; i < 25; i++ {
		all[i].Name = fmt.Sprintf("win-%02d", i)
	}
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
		if len(got) != tt.want {
			t.Errorf("%d%% of 20 eligible nodes = %d nodes, want %d", tt.percent, len(got), tt.want)
		}
		for _, n := range got {
			if n[:3] == "win" {
				t.Errorf("wave runs on %s, which the DaemonSet's selector excludes", n)
			}
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
	if IsPausedAsRecorded(paused, rec) {
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
