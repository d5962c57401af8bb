package attribution

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
	flowcontrolv1ac "k8s.io/client-go/applyconfigurations/flowcontrol/v1"
	"k8s.io/utils/ptr"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

func TestFlowSchemaFor(t *testing.T) {
	agent := ServiceAccount{Namespace: "telemetry", Name: "agent"}
	tests := []struct {
		name             string
		sa               ServiceAccount
		matched          *flowcontrolv1.FlowSchema
		wantLevel        string
		wantPrecedence   int32
		wantDistinguish  *flowcontrolv1.FlowDistinguisherMethodType
		wantErr          bool
		wantErrNoRoom    bool
		wantErrSubstring string
	}{
		{
			name:            "a ServiceAccount matched by service-accounts goes to workload-low by user, one step ahead",
			sa:              agent,
			matched:         bootstrap.SuggestedFlowSchemaServiceAccounts,
			wantLevel:       "workload-low",
			wantPrecedence:  8999,
			wantDistinguish: ptr.To(flowcontrolv1.FlowDistinguisherMethodByUserType),
		},
		{
			name:            "a ServiceAccount matched by kube-system-service-accounts goes to workload-high by namespace",
			sa:              ServiceAccount{Namespace: "kube-system", Name: "coredns"},
			matched:         bootstrap.SuggestedFlowSchemaKubeSystemServiceAccounts,
			wantLevel:       "workload-high",
			wantPrecedence:  899,
			wantDistinguish: ptr.To(flowcontrolv1.FlowDistinguisherMethodByNamespaceType),
		},
		{
			name: "a schema on the exempt level is not attributed: only self-protection routes to exempt",
			sa:   agent,
			matched: &flowcontrolv1.FlowSchema{
				ObjectMeta: metav1.ObjectMeta{Name: "trusted"},
				Spec: flowcontrolv1.FlowSchemaSpec{
					PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "exempt"},
					MatchingPrecedence:         50,
				},
			},
			wantErr:          true,
			wantErrNoRoom:    true,
			wantErrSubstring: `routes it to the "exempt" priority level`,
		},
		{
			name:             "a schema at precedence 1 leaves no room ahead",
			sa:               agent,
			matched:          bootstrap.MandatoryFlowSchemaExempt,
			wantErr:          true,
			wantErrNoRoom:    true,
			wantErrSubstring: "nothing can go ahead",
		},
		{
			name:             "a schema at precedence 2 leaves no room ahead, since only exempt may use 1",
			sa:               agent,
			matched:          bootstrap.SuggestedFlowSchemaProbes,
			wantErr:          true,
			wantErrNoRoom:    true,
			wantErrSubstring: `only the mandatory "exempt" schema may have matchingPrecedence 1`,
		},
		{
			name:             "no matched schema is an error",
			sa:               agent,
			wantErr:          true,
			wantErrSubstring: "no matched flowschema",
		},
		{
			name: "a matched schema of loadshed's own is an error",
			sa:   agent,
			matched: &flowcontrolv1.FlowSchema{
				ObjectMeta: metav1.ObjectMeta{Name: Name(agent), Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}},
				Spec:       flowcontrolv1.FlowSchemaSpec{MatchingPrecedence: 8999},
			},
			wantErr:          true,
			wantErrSubstring: "loadshed's own",
		},
		{
			name:             "a ServiceAccount without a namespace is an error",
			sa:               ServiceAccount{Name: "agent"},
			matched:          bootstrap.SuggestedFlowSchemaServiceAccounts,
			wantErr:          true,
			wantErrSubstring: "needs a namespace and a name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FlowSchemaFor(tt.sa, tt.matched)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("FlowSchemaFor() = %v, want an error", got)
				}
				if errors.Is(err, ErrNoRoomAhead) != tt.wantErrNoRoom {
					t.Errorf("errors.Is(err, ErrNoRoomAhead) = %v, want %v (err %v)", !tt.wantErrNoRoom, tt.wantErrNoRoom, err)
				}
				if !strings.Contains(err.Error(), tt.wantErrSubstring) {
					t.Errorf("error %q does not say %q", err, tt.wantErrSubstring)
				}
				return
			}
			if err != nil {
				t.Fatalf("FlowSchemaFor() error = %v", err)
			}
			fs := toFlowSchema(t, got)
			assertAttribution(t, fs, tt.sa, tt.matched.Name)
			spec := fs.Spec
			if spec.PriorityLevelConfiguration.Name != tt.wantLevel {
				t.Errorf("priority level = %q, want %q", spec.PriorityLevelConfiguration.Name, tt.wantLevel)
			}
			if spec.MatchingPrecedence != tt.wantPrecedence {
				t.Errorf("matchingPrecedence = %d, want %d", spec.MatchingPrecedence, tt.wantPrecedence)
			}
			switch {
			case tt.wantDistinguish == nil && spec.DistinguisherMethod != nil:
				t.Errorf("distinguisherMethod = %v, want none", spec.DistinguisherMethod.Type)
			case tt.wantDistinguish != nil && (spec.DistinguisherMethod == nil || spec.DistinguisherMethod.Type != *tt.wantDistinguish):
				t.Errorf("distinguisherMethod = %v, want %v", spec.DistinguisherMethod, *tt.wantDistinguish)
			}
		})
	}
}

// assertAttribution checks what every attribution schema has: its name,
// labels, annotations, and one rule for exactly sa over all requests.
func assertAttribution(t *testing.T, fs flowcontrolv1.FlowSchema, sa ServiceAccount, matchedName string) {
	t.Helper()
	if fs.Name != Name(sa) {
		t.Errorf("name = %q, want %q", fs.Name, Name(sa))
	}
	if fs.Kind != "FlowSchema" || fs.APIVersion != "flowcontrol.apiserver.k8s.io/v1" {
		t.Errorf("kind, apiVersion = %q, %q", fs.Kind, fs.APIVersion)
	}
	wantLabels := map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: v1alpha1.RoleAttribution}
	wantAnnotations := map[string]string{v1alpha1.AnnotationServiceAccount: sa.String(), v1alpha1.AnnotationAttributedFrom: matchedName}
	assertMap(t, "labels", fs.Labels, wantLabels)
	assertMap(t, "annotations", fs.Annotations, wantAnnotations)
	if !IsOwned(&metav1.ObjectMeta{Labels: fs.Labels}) || !IsAttribution(&metav1.ObjectMeta{Labels: fs.Labels}) {
		t.Error("labels do not make the schema owned and an attribution schema")
	}

	if len(fs.Spec.Rules) != 1 {
		t.Fatalf("rules = %d, want 1", len(fs.Spec.Rules))
	}
	rule := fs.Spec.Rules[0]
	if len(rule.Subjects) != 1 {
		t.Fatalf("subjects = %d, want 1", len(rule.Subjects))
	}
	s := rule.Subjects[0]
	if s.Kind != flowcontrolv1.SubjectKindServiceAccount || s.User != nil || s.Group != nil || s.ServiceAccount == nil ||
		s.ServiceAccount.Namespace != sa.Namespace || s.ServiceAccount.Name != sa.Name {
		t.Errorf("subject = %+v, want exactly ServiceAccount %s", s, sa)
	}
	if len(rule.ResourceRules) != 1 || len(rule.NonResourceRules) != 1 {
		t.Fatalf("resourceRules, nonResourceRules = %d, %d, want 1, 1", len(rule.ResourceRules), len(rule.NonResourceRules))
	}
	rr, nr := rule.ResourceRules[0], rule.NonResourceRules[0]
	if !equal(rr.Verbs, "*") || !equal(rr.APIGroups, "*") || !equal(rr.Resources, "*") || !equal(rr.Namespaces, "*") || !rr.ClusterScope {
		t.Errorf("resource rule = %+v, want everything", rr)
	}
	if !equal(nr.Verbs, "*") || !equal(nr.NonResourceURLs, "*") {
		t.Errorf("non-resource rule = %+v, want everything", nr)
	}
}

// toFlowSchema returns the object an apply configuration describes, as the
// API server would read it.
func toFlowSchema(t *testing.T, ac *flowcontrolv1ac.FlowSchemaApplyConfiguration) flowcontrolv1.FlowSchema {
	t.Helper()
	data, err := json.Marshal(ac)
	if err != nil {
		t.Fatalf("marshalling the apply configuration: %v", err)
	}
	var fs flowcontrolv1.FlowSchema
	if err := json.Unmarshal(data, &fs); err != nil {
		t.Fatalf("unmarshalling the apply configuration: %v", err)
	}
	return fs
}

func equal(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

func assertMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s[%q] = %q, want %q", what, k, got[k], v)
		}
	}
}

func TestFlowSchemaForGoesAheadOfMatch(t *testing.T) {
	// Applying the attribution schema and matching again, without ignoring
	// loadshed's schemas, must pick the attribution schema: it is the first
	// one the ServiceAccount meets, for every kind of request.
	tests := []struct {
		name string
		sa   ServiceAccount
		req  Request
	}{
		{name: "an ordinary ServiceAccount's flood lands in its attribution schema", sa: ServiceAccount{Namespace: "telemetry", Name: "agent"}, req: FloodRequest},
		{name: "a kube-system ServiceAccount's flood lands in its attribution schema", sa: ServiceAccount{Namespace: "kube-system", Name: "coredns"}, req: FloodRequest},
		{name: "a non-resource request lands in the attribution schema", sa: ServiceAccount{Namespace: "telemetry", Name: "agent"}, req: Request{Verb: "get", NonResourceURL: "/version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			schemas := bootstrapSchemas()
			matched, ok := Match(tt.sa, tt.req, schemas)
			if !ok {
				t.Fatal("Match() found nothing")
			}
			ac, err := FlowSchemaFor(tt.sa, matched)
			if err != nil {
				t.Fatalf("FlowSchemaFor() error = %v", err)
			}
			attr := toFlowSchema(t, ac)
			attr.Labels = nil // seen as anyone's schema, so Match does not skip it
			got, ok := Match(tt.sa, tt.req, append(schemas, attr))
			if !ok || got.Name != Name(tt.sa) {
				t.Errorf("Match() with the attribution schema = %v, want %q", got, Name(tt.sa))
			}
			other := ServiceAccount{Namespace: tt.sa.Namespace, Name: "other"}
			if got, _ := Match(other, tt.req, append(schemas, attr)); got == nil || got.Name != matched.Name {
				t.Errorf("Match() for another ServiceAccount = %v, want %q", got, matched.Name)
			}
		})
	}
}

func TestName(t *testing.T) {
	long := strings.Repeat("a", 250)
	tests := []struct {
		name string
		a, b ServiceAccount
		want string
	}{
		{
			name: "a short pair keeps namespace and name readable",
			a:    ServiceAccount{Namespace: "telemetry", Name: "agent"},
			want: "loadshed-attr-telemetry.agent",
		},
		{
			name: "a dotted ServiceAccount name stays a valid subdomain",
			a:    ServiceAccount{Namespace: "kube-system", Name: "system.node-agent"},
			want: "loadshed-attr-kube-system.system.node-agent",
		},
		{
			name: "dashes split differently between namespace and name do not collide",
			a:    ServiceAccount{Namespace: "a-b", Name: "c"},
			b:    ServiceAccount{Namespace: "a", Name: "b-c"},
		},
		{
			name: "long names that share their first characters do not collide",
			a:    ServiceAccount{Namespace: "telemetry", Name: long + "x"},
			b:    ServiceAccount{Namespace: "telemetry", Name: long + "y"},
		},
		{
			name: "a long name cut right after a dot or a dash stays valid",
			a:    ServiceAccount{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("b", 163) + "." + strings.Repeat("c", 60)},
			b:    ServiceAccount{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("b", 162) + "-." + strings.Repeat("d", 60)},
		},
		{
			name: "the longest namespace and name fit",
			a:    ServiceAccount{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("s", 253)},
			b:    ServiceAccount{Namespace: strings.Repeat("n", 62), Name: strings.Repeat("s", 253)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, sa := range []ServiceAccount{tt.a, tt.b} {
				if sa == (ServiceAccount{}) {
					continue
				}
				got := Name(sa)
				if again := Name(sa); again != got {
					t.Errorf("Name(%s) = %q, then %q", sa, got, again)
				}
				if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
					t.Errorf("Name(%s) = %q is not a DNS subdomain: %v", sa, got, errs)
				}
				if len(got) > validation.DNS1123SubdomainMaxLength {
					t.Errorf("len(Name(%s)) = %d", sa, len(got))
				}
				if !strings.HasPrefix(got, NamePrefix) {
					t.Errorf("Name(%s) = %q lacks prefix %q", sa, got, NamePrefix)
				}
			}
			if tt.want != "" && Name(tt.a) != tt.want {
				t.Errorf("Name(%s) = %q, want %q", tt.a, Name(tt.a), tt.want)
			}
			if tt.b != (ServiceAccount{}) && Name(tt.a) == Name(tt.b) {
				t.Errorf("Name(%s) = Name(%s) = %q", tt.a, tt.b, Name(tt.a))
			}
		})
	}
}

func TestIsOwnedAndIsAttribution(t *testing.T) {
	tests := []struct {
		name            string
		labels          map[string]string
		wantOwned       bool
		wantAttribution bool
	}{
		{name: "a schema without labels is neither", labels: nil},
		{name: "a schema managed by someone else is neither", labels: map[string]string{v1alpha1.LabelManagedBy: "helm", v1alpha1.LabelRole: v1alpha1.RoleAttribution}},
		{name: "a schema managed by loadshed without a role is owned only", labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}, wantOwned: true},
		{name: "a schema managed by loadshed with another role is owned only", labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: "shed"}, wantOwned: true},
		{name: "an attribution schema is both", labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: v1alpha1.RoleAttribution}, wantOwned: true, wantAttribution: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: tt.labels}}
			if got := IsOwned(fs); got != tt.wantOwned {
				t.Errorf("IsOwned() = %v, want %v", got, tt.wantOwned)
			}
			if got := IsAttribution(fs); got != tt.wantAttribution {
				t.Errorf("IsAttribution() = %v, want %v", got, tt.wantAttribution)
			}
		})
	}
	if IsOwned(nil) || IsAttribution(nil) {
		t.Error("nil is owned")
	}
}

func TestServiceAccountOf(t *testing.T) {
	tests := []struct {
		name string
		spec corev1.PodSpec
		want ServiceAccount
	}{
		{"a DaemonSet naming a ServiceAccount runs as it", corev1.PodSpec{ServiceAccountName: "agent"}, ServiceAccount{"telemetry", "agent"}},
		{"the deprecated field counts when the new one is empty", corev1.PodSpec{DeprecatedServiceAccount: "old"}, ServiceAccount{"telemetry", "old"}},
		{"a DaemonSet naming none runs as default", corev1.PodSpec{}, ServiceAccount{"telemetry", "default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "agent"}}
			ds.Spec.Template.Spec = tt.spec
			if got := ServiceAccountOf(ds); got != tt.want {
				t.Errorf("ServiceAccountOf = %v, want %v", got, tt.want)
			}
		})
	}
}
