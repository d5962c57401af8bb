package controllers

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/loadshed/loadshed/internal/plan"
)

func TestRefusal(t *testing.T) {
	ds := schema.GroupResource{Group: "apps", Resource: "daemonsets"}
	key := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	tests := []struct {
		name    string
		err     error
		refused bool
	}{
		{"no error", nil, false},
		{"denied by an admission policy", apierrors.NewForbidden(ds, "agent", errors.New("denied request")), true},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, "agent",
			field.ErrorList{field.Invalid(field.NewPath("spec"), "x", "bad")}), true},
		{"too large", apierrors.NewRequestEntityTooLargeError("etcdserver: request is too large"), true},
		{"a conflict is retried", apierrors.NewConflict(ds, "agent", errors.New("changed")), false},
		{"a timeout is retried", apierrors.NewTimeoutError("slow", 1), false},
		{"a connection error is retried", errors.New("connection refused"), false},
		{"a wrapped denial", errors.Join(errors.New("updating"), apierrors.NewForbidden(ds, "agent", errors.New("no"))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, refused := refusal(tt.err, plan.Paused, key)
			if refused != tt.refused {
				t.Fatalf("refused = %v, want %v", refused, tt.refused)
			}
			if refused && (b.Target != key || b.Kind != plan.Paused || !strings.HasPrefix(b.Reason, "the API server refused it: ")) {
				t.Errorf("block %+v", b)
			}
		})
	}
}
