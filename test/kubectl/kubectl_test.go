package kubectl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/inspect"
	"github.com/loadshed/loadshed/internal/release"
	"github.com/loadshed/loadshed/internal/shed"
	"github.com/loadshed/loadshed/test/harness"
)

// policyName is the test's policy: harness.Policy (pod LISTs above 30/s
// for 2s fire it; telemetry/agent is throttled, then paused 3s later),
// which restores only 10 minutes after the flood: the operator never gives
// the DaemonSet back during the test, so that what status, why and release
// say of it holds still.
const policyName = "kubectl"

// TestStatusWhyAndRelease floods the API server as telemetry/agent until
// the shipped operator pauses it, then runs the plugin: status and why
// while the trigger fires and after it cleared; release refused while the
// operator leads and the policy is not suspended, a dry run that changes
// nothing, release --force, and, after a second flood, release of the
// suspended policy: each time the DaemonSet as it was before the pause and
// no throttle left.
func TestStatusWhyAndRelease(t *testing.T) {
	original := env.Cluster(t)
	daemonSet(t, "telemetry", "canary", map[string]string{v1alpha1.LabelProtected: "true"})
	daemonSet(t, "other", "agent", nil)
	startOperator(t)
	p := harness.Policy(policyName)
	p.Spec.Restore.StableFor = &metav1.Duration{Duration: 10 * time.Minute}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeletePolicy(t, p) })

	flood := env.StartLoad(t, "telemetry", 16, 0)
	t.Cleanup(flood.Stop)
	pausedBy(t, policyName)

	checkStatusWhileFiring(t)
	checkWhy(t)
	checkReleaseRefusedThenDryRun(t)

	flood.Stop()
	checkStatusOnceClear(t)
	checkReleaseForced(t, original)

	flood = env.StartLoad(t, "telemetry", 16, 0)
	t.Cleanup(flood.Stop)
	pausedBy(t, policyName)
	flood.Stop()
	checkReleaseOfASuspendedPolicy(t, original)
}

func checkStatusWhileFiring(t *testing.T) {
	t.Helper()
	r := plugin(t, viewer, "status", policyName)
	mustSay(t, r, "Policy kubectl: Shedding", "pod-lists", "Firing", "system:serviceaccount:telemetry:agent",
		"Throttle", "telemetry/agent", "restore wave 1 of 2 (50% of its nodes)",
		"every trigger OK for restore.stableFor (10m0s)", "TriggerFired", "Paused")
	st := statusJSON(t)
	if len(st.Triggers) != 1 || st.Triggers[0].State != v1alpha1.TriggerFiring {
		t.Errorf("triggers %+v, want pod-lists firing", st.Triggers)
	}
	if len(st.Offenders) == 0 || st.Offenders[0].ServiceAccount != "telemetry/agent" {
		t.Errorf("offenders %+v, want telemetry/agent first", st.Offenders)
	}
	if len(st.Paused) != 1 || st.Paused[0].DaemonSet != "telemetry/agent" || st.Paused[0].Wave != 0 ||
		st.Paused[0].Waves != 2 || st.Paused[0].Next.Due {
		t.Errorf("paused %+v, want telemetry/agent, wave 0 of 2, not due", st.Paused)
	}
	r = plugin(t, viewer, "status", "no-such-policy")
	if r.err == nil || !strings.Contains(r.stderr, `no LoadShedPolicy named "no-such-policy"`) {
		t.Errorf("status of a policy that does not exist:\n%s", r)
	}
}

// statusJSON runs status -o json and parses it.
func statusJSON(t *testing.T) inspect.PolicyStatus {
	t.Helper()
	r := quietly(t, viewer, "status", policyName, "-o", "json")
	if r.err != nil {
		t.Fatalf("status -o json:\n%s", r)
	}
	var list inspect.StatusList
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Policies) != 1 {
		t.Fatalf("status -o json does not parse into one policy (%v):\n%s", err, r.stdout)
	}
	return list.Policies[0]
}

func checkWhy(t *testing.T) {
	t.Helper()
	mustSay(t, plugin(t, viewer, "why", "telemetry/agent"), "telemetry/agent is paused by policy kubectl since",
		"attempt:", "0 (restores that relapsed)", "wave:", "0 of 2 (fully paused)",
		"original scheduling:", "nodeSelector kubernetes.io/os=linux, no affinity",
		"Triggers: pod-lists is Firing", "Every trigger must be OK", "restore.stableFor (10m0s)",
		"kubectl loadshed release telemetry/agent", "Paused")
	mustSay(t, plugin(t, viewer, "why", "-n", "telemetry", "canary"),
		"telemetry/canary is not paused: it is protected (labelled loadshed.io/protected).")
	mustSay(t, plugin(t, viewer, "why", "other/agent"), "other/agent is not paused: no policy selects it.",
		"does not select it: its namespace other is not one spec.targets.namespaceSelector selects.")
	r := plugin(t, viewer, "why", "telemetry/agent", "-o", "json")
	var e inspect.Explanation
	err := json.Unmarshal([]byte(r.stdout), &e)
	if err != nil || !e.Paused || e.Pause == nil || e.Pause.Policy != policyName {
		t.Errorf("why -o json (%v):\n%s", err, r)
	}
}

func checkReleaseRefusedThenDryRun(t *testing.T) {
	t.Helper()
	before := env.GetDS(t)
	r := plugin(t, releaser, "release", "telemetry/agent")
	if r.err == nil || !strings.Contains(r.stderr, "refusing to release: an operator leads") ||
		!strings.Contains(r.stderr, `kubectl patch loadshedpolicy kubectl --type=merge -p '{"spec":{"suspend":true}}'`) {
		t.Errorf("release while the operator leads and the policy is not suspended:\n%s", r)
	}
	mustSay(t, plugin(t, releaser, "release", "--policy", policyName, "--force", "--dry-run"),
		"Would restore DaemonSet telemetry/agent (server dry run)",
		"Would delete FlowSchema loadshed-throttle-telemetry.agent (server dry run).")
	after := env.GetDS(t)
	if after.ResourceVersion != before.ResourceVersion || shed.PausedBy(after) != policyName {
		t.Error("the refused release or the dry run changed the DaemonSet")
	}
	if throttles(t) == 0 {
		t.Error("the dry run deleted the throttle")
	}
}

func checkStatusOnceClear(t *testing.T) {
	t.Helper()
	var st inspect.PolicyStatus
	env.Eventually(t, "the trigger is OK and the next restore has a time", func() error {
		st = statusJSON(t)
		if len(st.Triggers) != 1 || st.Triggers[0].State != v1alpha1.TriggerOK || len(st.Paused) != 1 ||
			st.Paused[0].Next.At == nil {
			return fmt.Errorf("triggers %+v, paused %+v", st.Triggers, st.Paused)
		}
		return nil
	})
	want := st.Triggers[0].Since.Add(10 * time.Minute)
	if at := st.Paused[0].Next.At.Time; !at.Equal(want) {
		t.Errorf("next restore at %v, want the trigger's OK since plus stableFor: %v", at, want)
	}
	mustSay(t, plugin(t, viewer, "status"), "Policy kubectl:", "OK", "restore wave 1 of 2", "OK since")
}

func checkReleaseForced(t *testing.T, original *appsv1.DaemonSet) {
	t.Helper()
	r := plugin(t, releaser, "release", "telemetry/agent", "--force", "-o", "json")
	var res release.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.DryRun || !res.Leading {
		t.Fatalf("release --force -o json (%v):\n%s", err, r)
	}
	want := map[string]string{"DaemonSet telemetry/agent": release.ActionRestored,
		"FlowSchema loadshed-throttle-telemetry.agent":         release.ActionDeleted,
		"PriorityLevelConfiguration loadshed-throttle-kubectl": release.ActionDeleted}
	for _, c := range res.Changes {
		if want[c.Kind+" "+c.Name] == c.Action {
			delete(want, c.Kind+" "+c.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("changes %+v lack %v", res.Changes, want)
	}
	checkGivenBack(t, original)
}

func checkReleaseOfASuspendedPolicy(t *testing.T, original *appsv1.DaemonSet) {
	t.Helper()
	ctx := context.Background()
	p := env.GetPolicy(t, policyName)
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Suspend = true
	if err := env.Client.Patch(ctx, p, patch); err != nil {
		t.Fatal(err)
	}
	env.Eventually(t, "the operator sees the policy suspended", func() error {
		if phase := env.GetPolicy(t, policyName).Status.Phase; phase != v1alpha1.PhaseSuspended {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})
	mustSay(t, plugin(t, releaser, "release", "--policy", policyName),
		"An operator leads (Lease loadshed-system/loadshed.io held by", "are suspended or gone",
		"Restored DaemonSet telemetry/agent: paused by policy kubectl, wave 0, attempt 0; scheduling as before the pause "+
			"(nodeSelector kubernetes.io/os=linux, no affinity), loadshed's record removed.",
		"Deleted FlowSchema loadshed-throttle-telemetry.agent.",
		"Deleted PriorityLevelConfiguration loadshed-throttle-kubectl.")
	checkGivenBack(t, original)
	mustSay(t, plugin(t, releaser, "release", "--policy", policyName), "Nothing to release: policy kubectl has no pause")
}

// checkGivenBack checks that telemetry/agent's pod template is the one from
// before the pause, that it has no loadshed.io annotation, that no
// throttle is left and that the operator's self-protection FlowSchema is.
func checkGivenBack(t *testing.T, original *appsv1.DaemonSet) {
	t.Helper()
	got := env.GetDS(t)
	if !equality.Semantic.DeepEqual(got.Spec.Template, original.Spec.Template) {
		t.Errorf("the pod template after release:\n%+v\nwant the one before the pause:\n%+v", got.Spec.Template,
			original.Spec.Template)
	}
	for k := range got.Annotations {
		if strings.HasPrefix(k, "loadshed.io/") {
			t.Errorf("release left annotation %s=%s", k, got.Annotations[k])
		}
	}
	if n := throttles(t); n > 0 {
		t.Errorf("%d throttle objects left", n)
	}
	selfProtection := &flowcontrolv1.FlowSchema{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Name: shed.SelfProtectionName}, selfProtection)
	if apierrors.IsNotFound(err) {
		t.Error("release deleted the operator's self-protection FlowSchema")
	}
	env.Eventually(t, "the DaemonSet controller runs the agent on every node again", env.PodsAre(harness.NodeCount))
}

// throttles counts loadshed's throttle FlowSchemas and priority levels.
func throttles(t *testing.T) int {
	t.Helper()
	return len(env.Owned(t))
}
