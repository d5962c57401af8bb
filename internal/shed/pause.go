// Package shed turns a plan into the objects loadshed writes: the paused,
// partly restored or restored pod template of a DaemonSet, with the record
// of what was changed kept on the DaemonSet itself, and the FlowSchemas and
// PriorityLevelConfiguration that throttle ServiceAccounts. Its functions
// build objects from objects; the controller sends them.
package shed

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/loadshed/loadshed/internal/plan"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Scheduling is the part of a pod template that pausing changes.
type Scheduling struct {
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	Affinity     *corev1.Affinity  `json:"affinity,omitempty"`
}

func schedulingOf(ds *appsv1.DaemonSet) Scheduling {
	spec := &ds.Spec.Template.Spec
	s := Scheduling{Affinity: spec.Affinity.DeepCopy()}
	if spec.NodeSelector != nil {
		s.NodeSelector = map[string]string{}
		for k, v := range spec.NodeSelector {
			s.NodeSelector[k] = v
		}
	}
	return s
}

// PausedBy returns the policy that paused a DaemonSet, or "".
func PausedBy(ds *appsv1.DaemonSet) string {
	return ds.Annotations[v1alpha1.AnnotationPausedBy]
}

// ReadPause reads the pause record from a DaemonSet's annotations.
func ReadPause(ds *appsv1.DaemonSet) (plan.Pause, error) {
	a := ds.Annotations
	var rec plan.Pause
	var err error
	if rec.Since, err = parseTime(a[v1alpha1.AnnotationPausedAt]); err != nil {
		return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationPausedAt, err)
	}
	if rec.WaveStarted, err = parseTime(a[v1alpha1.AnnotationWaveStarted]); err != nil {
		return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationWaveStarted, err)
	}
	if rec.NextRestore, err = parseTime(a[v1alpha1.AnnotationNextRestore]); err != nil {
		return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationNextRestore, err)
	}
	if rec.Attempt, err = parseInt(a[v1alpha1.AnnotationAttempt]); err != nil {
		return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationAttempt, err)
	}
	if rec.Wave, err = parseInt(a[v1alpha1.AnnotationWave]); err != nil {
		return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationWave, err)
	}
	if rec.Overrides, err = parseInt(a[v1alpha1.AnnotationOverrides]); err != nil {
		return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationOverrides, err)
	}
	if v := a[v1alpha1.AnnotationLoad]; v != "" {
		if rec.Load, err = strconv.ParseFloat(v, 64); err != nil {
			return rec, fmt.Errorf("%s: %w", v1alpha1.AnnotationLoad, err)
		}
	}
	return rec, nil
}

// Original returns the scheduling constraints recorded before the pause.
func Original(ds *appsv1.DaemonSet) (Scheduling, error) {
	var s Scheduling
	raw, ok := ds.Annotations[v1alpha1.AnnotationOriginal]
	if !ok {
		return s, fmt.Errorf("DaemonSet %s/%s has no %s annotation", ds.Namespace, ds.Name, v1alpha1.AnnotationOriginal)
	}
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return s, fmt.Errorf("reading %s: %w", v1alpha1.AnnotationOriginal, err)
	}
	return s, nil
}

// Apply returns ds changed to match a pause record: fully paused (wave 0),
// or running on the first share of its eligible nodes (wave > 0). The first
// pause records the original scheduling; later calls keep that record.
func Apply(ds *appsv1.DaemonSet, policyName, reason string, rec plan.Pause, waves []int32, nodes []corev1.Node) (*appsv1.DaemonSet, error) {
	out := ds.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	orig := schedulingOf(ds)
	if _, recorded := ds.Annotations[v1alpha1.AnnotationOriginal]; recorded {
		var err error
		if orig, err = Original(ds); err != nil {
			return nil, err
		}
	} else {
		raw, err := json.Marshal(orig)
		if err != nil {
			return nil, fmt.Errorf("recording the original scheduling: %w", err)
		}
		out.Annotations[v1alpha1.AnnotationOriginal] = string(raw)
	}
	out.Annotations[v1alpha1.AnnotationPausedBy] = policyName
	if reason != "" {
		out.Annotations[v1alpha1.AnnotationReason] = reason
	}
	out.Annotations[v1alpha1.AnnotationPausedAt] = formatTime(rec.Since)
	out.Annotations[v1alpha1.AnnotationAttempt] = strconv.Itoa(rec.Attempt)
	out.Annotations[v1alpha1.AnnotationWave] = strconv.Itoa(rec.Wave)
	out.Annotations[v1alpha1.AnnotationLoad] = strconv.FormatFloat(rec.Load, 'f', -1, 64)
	setOrDelete(out.Annotations, v1alpha1.AnnotationWaveStarted, formatTime(rec.WaveStarted))
	setOrDelete(out.Annotations, v1alpha1.AnnotationNextRestore, formatTime(rec.NextRestore))
	setOrDelete(out.Annotations, v1alpha1.AnnotationOverrides, formatCount(rec.Overrides))
	// The pause record carries on what the last restore left.
	delete(out.Annotations, v1alpha1.AnnotationLastRestore)

	spec := &out.Spec.Template.Spec
	spec.NodeSelector = copyMap(orig.NodeSelector)
	spec.Affinity = orig.Affinity.DeepCopy()
	if rec.Wave == 0 {
		if spec.NodeSelector == nil {
			spec.NodeSelector = map[string]string{}
		}
		spec.NodeSelector[v1alpha1.LabelPaused] = policyName
		return out, nil
	}
	if rec.Wave > len(waves) {
		return nil, fmt.Errorf("wave %d of %d", rec.Wave, len(waves))
	}
	names, err := WaveNodes(orig, nodes, waves[rec.Wave-1])
	if err != nil {
		return nil, err
	}
	spec.Affinity = restrictTo(orig.Affinity, names)
	return out, nil
}

// pauseAnnotations are the annotations of a pause record.
var pauseAnnotations = []string{v1alpha1.AnnotationPausedBy, v1alpha1.AnnotationPausedAt, v1alpha1.AnnotationReason,
	v1alpha1.AnnotationAttempt, v1alpha1.AnnotationWave, v1alpha1.AnnotationWaveStarted, v1alpha1.AnnotationNextRestore,
	v1alpha1.AnnotationLoad, v1alpha1.AnnotationOriginal, v1alpha1.AnnotationOverriddenAt, v1alpha1.AnnotationOverrides}

// lastRestore is the JSON of AnnotationLastRestore.
type lastRestore struct {
	Policy  string    `json:"policy"`
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
}

// Restore returns ds with its pod template's scheduling exactly as before
// the pause and the pause record removed. With remember, it leaves what a
// relapse must know of the restore (plan.Restoration), for the policy that
// paused it; without, nothing of loadshed's (the policy is being deleted).
func Restore(ds *appsv1.DaemonSet, remember *plan.Restoration) (*appsv1.DaemonSet, error) {
	orig, err := Original(ds)
	if err != nil {
		return nil, err
	}
	out := ds.DeepCopy()
	out.Spec.Template.Spec.NodeSelector = copyMap(orig.NodeSelector)
	out.Spec.Template.Spec.Affinity = orig.Affinity.DeepCopy()
	for _, k := range pauseAnnotations {
		delete(out.Annotations, k)
	}
	delete(out.Annotations, v1alpha1.AnnotationLastRestore)
	if remember != nil {
		raw, err := json.Marshal(lastRestore{Policy: PausedBy(ds), At: remember.At.UTC(), Attempt: remember.Attempt})
		if err != nil {
			return nil, fmt.Errorf("recording the restore: %w", err)
		}
		out.Annotations[v1alpha1.AnnotationLastRestore] = string(raw)
	}
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out, nil
}

// ReadRestoration reads what policyName's last restore left on a
// DaemonSet; false if nothing (or nothing readable, or another policy's) is
// there.
func ReadRestoration(ds *appsv1.DaemonSet, policyName string) (plan.Restoration, bool) {
	raw, ok := ds.Annotations[v1alpha1.AnnotationLastRestore]
	if !ok {
		return plan.Restoration{}, false
	}
	var r lastRestore
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.Policy != policyName || r.At.IsZero() {
		return plan.Restoration{}, false
	}
	return plan.Restoration{At: r.At, Attempt: r.Attempt}, true
}

// Forget returns ds without what policyName's last restore left on it, and
// whether there was anything to remove.
func Forget(ds *appsv1.DaemonSet, policyName string) (*appsv1.DaemonSet, bool) {
	if _, ok := ReadRestoration(ds, policyName); !ok {
		return ds, false
	}
	out := ds.DeepCopy()
	delete(out.Annotations, v1alpha1.AnnotationLastRestore)
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out, true
}

// OverriddenAt reads when loadshed last put back a pause someone removed.
func OverriddenAt(ds *appsv1.DaemonSet) time.Time {
	t, err := parseTime(ds.Annotations[v1alpha1.AnnotationOverriddenAt])
	if err != nil {
		return time.Time{}
	}
	return t
}

// IsPausedAsRecorded reports whether a paused DaemonSet's template still
// carries the pause: someone else (a GitOps tool) may have removed it.
func IsPausedAsRecorded(ds *appsv1.DaemonSet, rec plan.Pause) bool {
	spec := ds.Spec.Template.Spec
	if rec.Wave == 0 {
		return spec.NodeSelector[v1alpha1.LabelPaused] != ""
	}
	return spec.Affinity != nil && spec.Affinity.NodeAffinity != nil &&
		spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil
}

// WaveNodes returns the names of the nodes a wave runs on: the first
// percent of the eligible nodes (those the original constraints select),
// by name, at least one. Waves grow: each is a superset of the one before.
func WaveNodes(orig Scheduling, nodes []corev1.Node, percent int32) ([]string, error) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeSelector: orig.NodeSelector, Affinity: orig.Affinity}}
	required := nodeaffinity.GetRequiredNodeAffinity(pod)
	var eligible []string
	for i := range nodes {
		ok, err := required.Match(&nodes[i])
		if err != nil {
			return nil, fmt.Errorf("matching node %s: %w", nodes[i].Name, err)
		}
		if ok {
			eligible = append(eligible, nodes[i].Name)
		}
	}
	sort.Strings(eligible)
	n := int(math.Ceil(float64(len(eligible)) * float64(percent) / 100))
	n = max(min(n, len(eligible)), min(1, len(eligible)))
	return eligible[:n], nil
}

// restrictTo ANDs "metadata.name is one of names" into the original
// required node affinity. A node field selector takes exactly one value, so
// each original term is repeated once per node (terms are ORed): the
// template grows with the wave's node count, which is why the last wave
// restores the original constraints rather than listing every node.
func restrictTo(orig *corev1.Affinity, names []string) *corev1.Affinity {
	out := orig.DeepCopy()
	if out == nil {
		out = &corev1.Affinity{}
	}
	if out.NodeAffinity == nil {
		out.NodeAffinity = &corev1.NodeAffinity{}
	}
	base := []corev1.NodeSelectorTerm{{}}
	if req := out.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution; req != nil && len(req.NodeSelectorTerms) > 0 {
		base = req.NodeSelectorTerms
	}
	terms := make([]corev1.NodeSelectorTerm, 0, len(base)*len(names))
	for _, term := range base {
		for _, name := range names {
			t := *term.DeepCopy()
			t.MatchFields = append(t.MatchFields, corev1.NodeSelectorRequirement{
				Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{name}})
			terms = append(terms, t)
		}
	}
	out.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: terms}
	return out
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func setOrDelete(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, s)
}

// formatCount writes a count, empty for zero (no annotation).
func formatCount(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func parseInt(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.Atoi(s)
}
