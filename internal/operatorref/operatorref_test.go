package operatorref

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/loadshed/loadshed/internal/manifests"
)

func TestLeading(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	lease := func(holder string, renewedAgo time.Duration, seconds int32) *coordinationv1.Lease {
		l := &coordinationv1.Lease{}
		if holder != "" {
			l.Spec.HolderIdentity = ptr.To(holder)
		}
		if renewedAgo >= 0 {
			l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now.Add(-renewedAgo)))
		}
		if seconds > 0 {
			l.Spec.LeaseDurationSeconds = ptr.To(seconds)
		}
		return l
	}
	tests := []struct {
		name  string
		lease *coordinationv1.Lease
		want  bool
	}{
		{"no Lease", nil, false},
		{"a holder that renewed 5s ago, for 30s", lease("pod-a", 5*time.Second, 30), true},
		{"a holder whose Lease expired", lease("pod-a", 31*time.Second, 30), false},
		{"a Lease released by a leader that stopped", lease("", 5*time.Second, 1), false},
		{"a holder that never renewed", lease("pod-a", -1, 30), false},
		{"a holder without a lease duration", lease("pod-a", time.Second, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader, leading := Leading(tt.lease, now)
			if leading != tt.want {
				t.Errorf("leading = %v (%+v), want %v", leading, leader, tt.want)
			}
		})
	}
}

// TestTheNamesAreTheShippedOnes reads config/manager: the namespace and the
// ServiceAccount the Deployment runs as are the ones named here.
func TestTheNamesAreTheShippedOnes(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	objs, err := manifests.Read(filepath.Join(filepath.Dir(here), "..", "..", "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		found = true
		sa := o.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["serviceAccountName"]
		if o.GetNamespace() != Namespace || sa != ServiceAccount {
			t.Errorf("config/manager runs the operator in %s as %v, want %s as %s", o.GetNamespace(), sa, Namespace, ServiceAccount)
		}
	}
	if !found {
		t.Error("config/manager has no Deployment")
	}
}
