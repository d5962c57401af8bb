package plan

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/detection"
)

func TestOffenderOf(t *testing.T) {
	sa := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	agent := types.NamespacedName{Namespace: "telemetry", Name: "agent"}
	canary := types.NamespacedName{Namespace: "telemetry", Name: "canary"}
	tests := []struct {
		name      string
		o         detection.Offender
		protected map[types.NamespacedName]string
		cannot    string
		want      Offender
	}{{
		name: "held requests give the share",
		o: detection.Offender{User: "system:serviceaccount:telemetry:agent", ServiceAccount: sa,
			DaemonSets: []types.NamespacedName{agent}, InFlightShare: 0.6, SeatShare: 0.8},
		want: Offender{User: "system:serviceaccount:telemetry:agent", ServiceAccount: sa, Share: 0.6, SeatShare: 0.8,
			DaemonSets: []DaemonSet{{Key: agent}}},
	}, {
		name: "while throttled, what APF saw of it counts when larger",
		o: detection.Offender{User: "u", ServiceAccount: sa, InFlightShare: 0.1, RequestShare: 0.7,
			RequestsPerSecond: 12, RejectedPerSecond: 30},
		cannot: "it is the operator",
		want: Offender{User: "u", ServiceAccount: sa, Share: 0.7, RequestsPerSecond: 12,
			CannotThrottle: "it is the operator"},
	}, {
		name:      "each DaemonSet carries why it is protected",
		o:         detection.Offender{User: "u", DaemonSets: []types.NamespacedName{agent, canary}},
		protected: map[types.NamespacedName]string{canary: "labelled loadshed.io/protected"},
		want: Offender{User: "u", DaemonSets: []DaemonSet{{Key: agent},
			{Key: canary, Protected: "labelled loadshed.io/protected"}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OffenderOf(tt.o, tt.protected, tt.cannot); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("OffenderOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}
