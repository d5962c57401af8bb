package backtest

import (
	"strings"
	"testing"
)

func TestReadPolicy(t *testing.T) {
	floodPolicy := string(floodPolicy(t))
	tests := []struct {
		name, file string
		wantErr    string // a piece of the error; "" for none
	}{
		{name: "a policy reads", file: floodPolicy},
		{name: "a policy after a separator and a comment reads", file: "# the flood policy\n---\n" + floodPolicy},
		{name: "JSON reads", file: `{"apiVersion":"loadshed.io/v1alpha1","kind":"LoadShedPolicy","metadata":{"name":"j"},` +
			`"spec":{"triggers":[{"name":"q","signal":"inqueueRequests","threshold":"5","clearThreshold":"1"}]}}`},
		{name: "an empty file is refused", file: "# nothing\n", wantErr: "no document"},
		{name: "several documents are refused", file: floodPolicy + "---\n" + floodPolicy, wantErr: "2 documents"},
		{name: "another kind is refused", file: "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\n",
			wantErr: "a DaemonSet (apps/v1), not a LoadShedPolicy (loadshed.io/v1alpha1)"},
		{name: "no kind is refused", file: "metadata:\n  name: x\n", wantErr: "document without a kind"},
		{name: "a misspelt field is refused", file: strings.Replace(floodPolicy, "clearThreshold", "clearTreshold", 1),
			wantErr: `unknown field "clearTreshold"`},
		{name: "YAML that is not YAML is refused", file: "kind: [", wantErr: "reading"},
		{name: "a spec the operator refuses is refused", file: strings.Replace(floodPolicy, "[50, 100]", "[100, 50]", 1),
			wantErr: "spec.restore.wavePercents"},
		{name: "a policy without a name is refused", file: strings.Replace(floodPolicy, "name: flood", "labels: {}", 1),
			wantErr: "no metadata.name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, cfg, err := ReadPolicy([]byte(tt.file))
			if tt.wantErr == "" {
				if err != nil || obj == nil || cfg == nil || len(cfg.Triggers) != 1 {
					t.Fatalf("ReadPolicy = %v, %v, %v; want a policy with one trigger", obj, cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}
