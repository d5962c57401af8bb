package attribution

import (
	"testing"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// bootstrapSchemas returns copies of the API server's mandatory and
// suggested FlowSchemas, the ones every cluster starts with.
func bootstrapSchemas() []flowcontrolv1.FlowSchema {
	all := append(append([]*flowcontrolv1.FlowSchema{}, bootstrap.MandatoryFlowSchemas...), bootstrap.SuggestedFlowSchemas...)
	out := make([]flowcontrolv1.FlowSchema, 0, len(all))
	for _, fs := range all {
		out = append(out, *fs.DeepCopy())
	}
	return out
}

// schema returns a FlowSchema on the "workload-high" level with one rule.
func schema(name string, precedence int32, rule flowcontrolv1.PolicyRulesWithSubjects) flowcontrolv1.FlowSchema {
	return flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "workload-high"},
			MatchingPrecedence:         precedence,
			Rules:                      []flowcontrolv1.PolicyRulesWithSubjects{rule},
		},
	}
}

func saSubject(namespace, name string) flowcontrolv1.Subject {
	return flowcontrolv1.Subject{
		Kind:           flowcontrolv1.SubjectKindServiceAccount,
		ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: namespace, Name: name},
	}
}

func userSubject(name string) flowcontrolv1.Subject {
	return flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: name}}
}

func groupSubject(name string) flowcontrolv1.Subject {
	return flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindGroup, Group: &flowcontrolv1.GroupSubject{Name: name}}
}

// allResources is a resource rule that matches every resource request.
var allResources = flowcontrolv1.ResourcePolicyRule{
	Verbs:        []string{flowcontrolv1.VerbAll},
	APIGroups:    []string{flowcontrolv1.APIGroupAll},
	Resources:    []string{flowcontrolv1.ResourceAll},
	ClusterScope: true,
	Namespaces:   []string{flowcontrolv1.NamespaceEvery},
}

// everything is a rule for subjects that matches all their resource requests.
func everything(subjects ...flowcontrolv1.Subject) flowcontrolv1.PolicyRulesWithSubjects {
	return flowcontrolv1.PolicyRulesWithSubjects{Subjects: subjects, ResourceRules: []flowcontrolv1.ResourcePolicyRule{allResources}}
}

// resources is a rule for subjects with the given resource rules.
func resources(rules []flowcontrolv1.ResourcePolicyRule, subjects ...flowcontrolv1.Subject) flowcontrolv1.PolicyRulesWithSubjects {
	return flowcontrolv1.PolicyRulesWithSubjects{Subjects: subjects, ResourceRules: rules}
}

func owned(fs flowcontrolv1.FlowSchema) flowcontrolv1.FlowSchema {
	fs.Labels = map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue, v1alpha1.LabelRole: v1alpha1.RoleAttribution}
	return fs
}

func TestMatchBootstrap(t *testing.T) {
	tests := []struct {
		name            string
		sa              ServiceAccount
		req             Request
		wantName        string
		wantLevel       string
		wantDistinguish flowcontrolv1.FlowDistinguisherMethodType
	}{
		{
			name:            "a ServiceAccount in an ordinary namespace listing pods falls into service-accounts",
			sa:              ServiceAccount{Namespace: "telemetry", Name: "agent"},
			req:             FloodRequest,
			wantName:        "service-accounts",
			wantLevel:       "workload-low",
			wantDistinguish: flowcontrolv1.FlowDistinguisherMethodByUserType,
		},
		{
			name:            "a kube-system ServiceAccount listing pods falls into kube-system-service-accounts",
			sa:              ServiceAccount{Namespace: "kube-system", Name: "coredns"},
			req:             FloodRequest,
			wantName:        "kube-system-service-accounts",
			wantLevel:       "workload-high",
			wantDistinguish: flowcontrolv1.FlowDistinguisherMethodByNamespaceType,
		},
		{
			name:            "a kube-system ServiceAccount updating a lease falls into system-leader-election",
			sa:              ServiceAccount{Namespace: "kube-system", Name: "coredns"},
			req:             Request{Verb: "update", APIGroup: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"},
			wantName:        "system-leader-election",
			wantLevel:       "leader-election",
			wantDistinguish: flowcontrolv1.FlowDistinguisherMethodByUserType,
		},
		{
			name:            "a kube-system ServiceAccount listing leases cluster-wide skips system-leader-election",
			sa:              ServiceAccount{Namespace: "kube-system", Name: "coredns"},
			req:             Request{Verb: "list", APIGroup: "coordination.k8s.io", Resource: "leases"},
			wantName:        "kube-system-service-accounts",
			wantLevel:       "workload-high",
			wantDistinguish: flowcontrolv1.FlowDistinguisherMethodByNamespaceType,
		},
		{
			name:      "a ServiceAccount probing a health endpoint falls into probes",
			sa:        ServiceAccount{Namespace: "telemetry", Name: "agent"},
			req:       Request{Verb: "get", NonResourceURL: "/healthz"},
			wantName:  "probes",
			wantLevel: "exempt",
		},
		{
			name:            "a ServiceAccount reading another non-resource URL falls into service-accounts",
			sa:              ServiceAccount{Namespace: "telemetry", Name: "agent"},
			req:             Request{Verb: "get", NonResourceURL: "/metrics"},
			wantName:        "service-accounts",
			wantLevel:       "workload-low",
			wantDistinguish: flowcontrolv1.FlowDistinguisherMethodByUserType,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Match(tt.sa, tt.req, bootstrapSchemas())
			if !ok {
				t.Fatalf("Match() found nothing, want %q", tt.wantName)
			}
			if got.Name != tt.wantName {
				t.Errorf("Match() = %q, want %q", got.Name, tt.wantName)
			}
			if got.Spec.PriorityLevelConfiguration.Name != tt.wantLevel {
				t.Errorf("priority level = %q, want %q", got.Spec.PriorityLevelConfiguration.Name, tt.wantLevel)
			}
			var distinguish flowcontrolv1.FlowDistinguisherMethodType
			if got.Spec.DistinguisherMethod != nil {
				distinguish = got.Spec.DistinguisherMethod.Type
			}
			if distinguish != tt.wantDistinguish {
				t.Errorf("distinguisher = %q, want %q", distinguish, tt.wantDistinguish)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	agent := ServiceAccount{Namespace: "telemetry", Name: "agent"}
	withBootstrap := func(extra ...flowcontrolv1.FlowSchema) []flowcontrolv1.FlowSchema {
		return append(bootstrapSchemas(), extra...)
	}
	onlyTelemetryPods := []flowcontrolv1.ResourcePolicyRule{{
		Verbs:      []string{"list"},
		APIGroups:  []string{""},
		Resources:  []string{"pods"},
		Namespaces: []string{"telemetry"},
	}}
	tests := []struct {
		name     string
		sa       ServiceAccount
		req      Request
		schemas  []flowcontrolv1.FlowSchema
		wantName string
		wantOK   bool
	}{
		{
			name:     "a custom schema ahead of service-accounts that names the ServiceAccount wins",
			sa:       agent,
			req:      FloodRequest,
			schemas:  withBootstrap(schema("agents", 1000, everything(saSubject("telemetry", "agent")))),
			wantName: "agents",
			wantOK:   true,
		},
		{
			name:     "a custom schema ahead of service-accounts that names another ServiceAccount does not match",
			sa:       agent,
			req:      FloodRequest,
			schemas:  withBootstrap(schema("others", 1000, everything(saSubject("telemetry", "other")))),
			wantName: "service-accounts",
			wantOK:   true,
		},
		{
			name:     "a custom schema behind service-accounts that names the ServiceAccount is never reached",
			sa:       agent,
			req:      FloodRequest,
			schemas:  withBootstrap(schema("late", 9500, everything(saSubject("telemetry", "agent")))),
			wantName: "service-accounts",
			wantOK:   true,
		},
		{
			name: "a tie in precedence is broken by name",
			sa:   agent,
			req:  FloodRequest,
			schemas: withBootstrap(
				schema("b-agents", 1000, everything(saSubject("telemetry", "agent"))),
				schema("a-agents", 1000, everything(saSubject("telemetry", "agent"))),
			),
			wantName: "a-agents",
			wantOK:   true,
		},
		{
			name:     "loadshed's own schemas are ignored",
			sa:       agent,
			req:      FloodRequest,
			schemas:  withBootstrap(owned(schema("loadshed-throttle-telemetry.agent", 8998, everything(saSubject("telemetry", "agent"))))),
			wantName: "service-accounts",
			wantOK:   true,
		},
		{
			name:     "a schema whose rules cover only one namespace does not match a cluster-wide list",
			sa:       agent,
			req:      FloodRequest,
			schemas:  withBootstrap(schema("telemetry-pods", 1000, resources(onlyTelemetryPods, saSubject("telemetry", "agent")))),
			wantName: "service-accounts",
			wantOK:   true,
		},
		{
			name:     "a schema whose rules cover one namespace matches a list in that namespace",
			sa:       agent,
			req:      Request{Verb: "list", Resource: "pods", Namespace: "telemetry"},
			schemas:  withBootstrap(schema("telemetry-pods", 1000, resources(onlyTelemetryPods, saSubject("telemetry", "agent")))),
			wantName: "telemetry-pods",
			wantOK:   true,
		},
		{
			name:     "a ServiceAccount subject with name * matches every ServiceAccount of its namespace",
			sa:       agent,
			req:      FloodRequest,
			schemas:  []flowcontrolv1.FlowSchema{schema("telemetry-all", 1000, everything(saSubject("telemetry", flowcontrolv1.NameAll)))},
			wantName: "telemetry-all",
			wantOK:   true,
		},
		{
			name:    "a ServiceAccount subject with name * does not match a namespace that only shares a prefix",
			sa:      agent,
			req:     FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("tele-all", 1000, everything(saSubject("tele", flowcontrolv1.NameAll)))},
		},
		{
			name:    "a ServiceAccount subject with namespace * is not a wildcard",
			sa:      agent,
			req:     FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("star", 1000, everything(saSubject(flowcontrolv1.NameAll, flowcontrolv1.NameAll)))},
		},
		{
			name:     "a user subject naming the ServiceAccount's user name matches",
			sa:       agent,
			req:      FloodRequest,
			schemas:  []flowcontrolv1.FlowSchema{schema("by-user", 1000, everything(userSubject("system:serviceaccount:telemetry:agent")))},
			wantName: "by-user",
			wantOK:   true,
		},
		{
			name:     "a user subject * matches",
			sa:       agent,
			req:      FloodRequest,
			schemas:  []flowcontrolv1.FlowSchema{schema("any-user", 1000, everything(userSubject(flowcontrolv1.NameAll)))},
			wantName: "any-user",
			wantOK:   true,
		},
		{
			name:     "a group subject for the ServiceAccount's namespace matches",
			sa:       agent,
			req:      FloodRequest,
			schemas:  []flowcontrolv1.FlowSchema{schema("ns-group", 1000, everything(groupSubject("system:serviceaccounts:telemetry")))},
			wantName: "ns-group",
			wantOK:   true,
		},
		{
			name:     "a group subject system:authenticated matches",
			sa:       agent,
			req:      FloodRequest,
			schemas:  []flowcontrolv1.FlowSchema{schema("authenticated", 1000, everything(groupSubject("system:authenticated")))},
			wantName: "authenticated",
			wantOK:   true,
		},
		{
			name:     "a group subject * matches",
			sa:       agent,
			req:      FloodRequest,
			schemas:  []flowcontrolv1.FlowSchema{schema("any-group", 1000, everything(groupSubject(flowcontrolv1.NameAll)))},
			wantName: "any-group",
			wantOK:   true,
		},
		{
			name:    "a group subject for another namespace does not match",
			sa:      agent,
			req:     FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("other-group", 1000, everything(groupSubject("system:serviceaccounts:other")))},
		},
		{
			name:    "a group subject system:unauthenticated does not match",
			sa:      agent,
			req:     FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("anonymous", 1000, everything(groupSubject("system:unauthenticated")))},
		},
		{
			name: "subjects of one rule do not combine with the resource rules of another",
			sa:   agent,
			req:  FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{{
				ObjectMeta: metav1.ObjectMeta{Name: "split"},
				Spec: flowcontrolv1.FlowSchemaSpec{
					MatchingPrecedence: 1000,
					Rules: []flowcontrolv1.PolicyRulesWithSubjects{
						resources([]flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}, ClusterScope: true}}, saSubject("telemetry", "agent")),
						everything(saSubject("telemetry", "other")),
					},
				},
			}},
		},
		{
			name: "a wildcard that is not the only member of its list is not a wildcard",
			sa:   agent,
			req:  FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("mixed", 1000, resources([]flowcontrolv1.ResourcePolicyRule{{
				Verbs: []string{"get", flowcontrolv1.VerbAll}, APIGroups: []string{""}, Resources: []string{"pods"}, ClusterScope: true,
			}}, saSubject("telemetry", "agent")))},
		},
		{
			name: "a subresource request matches resource/subresource, not the resource",
			sa:   agent,
			req:  Request{Verb: "get", Resource: "pods", Subresource: "log", Namespace: "telemetry"},
			schemas: []flowcontrolv1.FlowSchema{
				schema("pods", 1000, resources([]flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}, Namespaces: []string{"*"},
				}}, saSubject("telemetry", "agent"))),
				schema("pod-logs", 1001, resources([]flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods/log"}, Namespaces: []string{"*"},
				}}, saSubject("telemetry", "agent"))),
			},
			wantName: "pod-logs",
			wantOK:   true,
		},
		{
			name: "a non-resource URL rule matches the paths below it",
			sa:   agent,
			req:  Request{Verb: "get", NonResourceURL: "/apis/apps/v1"},
			schemas: []flowcontrolv1.FlowSchema{schema("discovery", 1000, flowcontrolv1.PolicyRulesWithSubjects{
				Subjects:         []flowcontrolv1.Subject{saSubject("telemetry", "agent")},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/apis"}}},
			})},
			wantName: "discovery",
			wantOK:   true,
		},
		{
			name: "a non-resource rule does not match a resource request",
			sa:   agent,
			req:  FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("non-resource-only", 1000, flowcontrolv1.PolicyRulesWithSubjects{
				Subjects:         []flowcontrolv1.Subject{saSubject("telemetry", "agent")},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			})},
		},
		{
			name:    "nothing matches when no schema names the ServiceAccount",
			sa:      agent,
			req:     FloodRequest,
			schemas: []flowcontrolv1.FlowSchema{schema("others", 1000, everything(saSubject("telemetry", "other")))},
		},
		{
			name: "nothing matches in an empty list",
			sa:   agent,
			req:  FloodRequest,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Match(tt.sa, tt.req, tt.schemas)
			if ok != tt.wantOK {
				t.Fatalf("Match() ok = %v, want %v (got %v)", ok, tt.wantOK, got)
			}
			if !ok {
				if got != nil {
					t.Errorf("Match() = %q with ok false, want nil", got.Name)
				}
				return
			}
			if got.Name != tt.wantName {
				t.Errorf("Match() = %q, want %q", got.Name, tt.wantName)
			}
		})
	}
}

func TestMatchPointsIntoSchemas(t *testing.T) {
	schemas := bootstrapSchemas()
	got, ok := Match(ServiceAccount{Namespace: "telemetry", Name: "agent"}, FloodRequest, schemas)
	if !ok {
		t.Fatal("Match() found nothing")
	}
	for i := range schemas {
		if &schemas[i] == got {
			return
		}
	}
	t.Errorf("Match() = %p, want a pointer into schemas", got)
}
