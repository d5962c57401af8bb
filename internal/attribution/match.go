package attribution

import (
	"slices"
	"strings"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
)

// Request is the shape of a request that is matched against FlowSchemas,
// the part of APF's request digest that the rules read. A Request with a
// NonResourceURL is a non-resource request; otherwise it is a resource
// request, cluster-scoped when Namespace is empty.
type Request struct {
	// Verb is the request's verb: "list", "watch", "get", ... for resource
	// requests, the lower-cased HTTP method for non-resource requests.
	Verb string
	// APIGroup is the resource's API group, "" for the core group.
	APIGroup string
	// Resource is the resource, e.g. "pods".
	Resource string
	// Subresource is the subresource, e.g. "status", or "".
	Subresource string
	// Namespace is the request's namespace, "" for a cluster-scoped request
	// (including a LIST across all namespaces).
	Namespace string
	// NonResourceURL is the path of a non-resource request, e.g. "/healthz".
	NonResourceURL string
}

// FloodRequest is the request loadshed attributes by default: a LIST of
// pods across all namespaces, the shape of the floods it fights.
var FloodRequest = Request{Verb: "list", APIGroup: "", Resource: "pods", Namespace: ""}

// isResourceRequest reports whether req is a resource request.
func (req Request) isResourceRequest() bool {
	return req.NonResourceURL == ""
}

// Match returns the FlowSchema that APF would pick today for sa's request
// req among schemas, ignoring loadshed's own (see IsOwned). Like APF it
// tries schemas by matchingPrecedence ascending, ties broken by name
// ascending, and picks the first one with a rule that matches both the user
// and the request. It returns false when none matches; APF then falls back to
// the catch-all schema. The returned pointer points into schemas.
//
// Unlike the API server, Match does not skip schemas whose priority level is
// missing, nor supply the mandatory schemas when they are absent from
// schemas.
func Match(sa ServiceAccount, req Request, schemas []flowcontrolv1.FlowSchema) (*flowcontrolv1.FlowSchema, bool) {
	candidates := make([]*flowcontrolv1.FlowSchema, 0, len(schemas))
	for i := range schemas {
		if !IsOwned(&schemas[i]) {
			candidates = append(candidates, &schemas[i])
		}
	}
	slices.SortStableFunc(candidates, compareFlowSchemas)
	u := userInfo{name: sa.UserName(), groups: sa.Groups()}
	for _, fs := range candidates {
		if matchesFlowSchema(u, req, fs) {
			return fs, true
		}
	}
	return nil, false
}

// compareFlowSchemas orders FlowSchemas as APF tries them
// (k8s.io/apiserver/pkg/util/apihelpers, FlowSchemaSequence.Less).
func compareFlowSchemas(a, b *flowcontrolv1.FlowSchema) int {
	if a.Spec.MatchingPrecedence != b.Spec.MatchingPrecedence {
		if a.Spec.MatchingPrecedence < b.Spec.MatchingPrecedence {
			return -1
		}
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// userInfo is the authenticated user a request is matched as.
type userInfo struct {
	name   string
	groups []string
}

// The functions below mirror k8s.io/apiserver/pkg/util/flowcontrol/rule.go
// one for one, over Request instead of request.RequestInfo.

// matchesFlowSchema reports whether one of fs's rules matches: its subjects
// and its resource or non-resource rules are matched together, rule by rule.
func matchesFlowSchema(u userInfo, req Request, fs *flowcontrolv1.FlowSchema) bool {
	for i := range fs.Spec.Rules {
		if matchesPolicyRule(u, req, &fs.Spec.Rules[i]) {
			return true
		}
	}
	return false
}

func matchesPolicyRule(u userInfo, req Request, rule *flowcontrolv1.PolicyRulesWithSubjects) bool {
	if !matchesASubject(u, rule.Subjects) {
		return false
	}
	if req.isResourceRequest() {
		return matchesAResourceRule(req, rule.ResourceRules)
	}
	return matchesANonResourceRule(req, rule.NonResourceRules)
}

func matchesASubject(u userInfo, subjects []flowcontrolv1.Subject) bool {
	for _, subject := range subjects {
		if matchesSubject(u, subject) {
			return true
		}
	}
	return false
}

func matchesSubject(u userInfo, subject flowcontrolv1.Subject) bool {
	switch subject.Kind {
	case flowcontrolv1.SubjectKindUser:
		return subject.User != nil && (subject.User.Name == flowcontrolv1.NameAll || subject.User.Name == u.name)
	case flowcontrolv1.SubjectKindGroup:
		if subject.Group == nil {
			return false
		}
		return subject.Group.Name == flowcontrolv1.NameAll || slices.Contains(u.groups, subject.Group.Name)
	case flowcontrolv1.SubjectKindServiceAccount:
		if subject.ServiceAccount == nil {
			return false
		}
		if subject.ServiceAccount.Name == flowcontrolv1.NameAll {
			return serviceAccountMatchesNamespace(subject.ServiceAccount.Namespace, u.name)
		}
		return serviceaccount.MatchesUsername(subject.ServiceAccount.Namespace, subject.ServiceAccount.Name, u.name)
	default:
		return false
	}
}

// serviceAccountMatchesNamespace reports whether userName is a
// ServiceAccount's in namespace. The namespace is compared literally: "*" is
// not a wildcard here, as in APF.
func serviceAccountMatchesNamespace(namespace, userName string) bool {
	return strings.HasPrefix(userName, serviceaccount.ServiceAccountUsernamePrefix+namespace+serviceaccount.ServiceAccountUsernameSeparator)
}

func matchesAResourceRule(req Request, rules []flowcontrolv1.ResourcePolicyRule) bool {
	for _, rule := range rules {
		if matchesResourcePolicyRule(req, rule) {
			return true
		}
	}
	return false
}

// matchesResourcePolicyRule matches verb, resource (joined with its
// subresource as "resource/subresource"), API group, then scope: a
// cluster-scoped request (no namespace) matches only rules with
// clusterScope, a namespaced one only rules listing its namespace or "*".
func matchesResourcePolicyRule(req Request, rule flowcontrolv1.ResourcePolicyRule) bool {
	if !containsString(req.Verb, rule.Verbs) {
		return false
	}
	if !containsString(joinResource(req.Resource, req.Subresource), rule.Resources) {
		return false
	}
	if !containsString(req.APIGroup, rule.APIGroups) {
		return false
	}
	if req.Namespace == "" {
		return rule.ClusterScope
	}
	return containsString(req.Namespace, rule.Namespaces)
}

func joinResource(resource, subresource string) string {
	if subresource == "" {
		return resource
	}
	return resource + "/" + subresource
}

func matchesANonResourceRule(req Request, rules []flowcontrolv1.NonResourcePolicyRule) bool {
	for _, rule := range rules {
		if matchesNonResourcePolicyRule(req, rule) {
			return true
		}
	}
	return false
}

func matchesNonResourcePolicyRule(req Request, rule flowcontrolv1.NonResourcePolicyRule) bool {
	if !containsString(req.Verb, rule.Verbs) {
		return false
	}
	return matchesNonResourceURL(rule.NonResourceURLs, req.NonResourceURL)
}

// matchesNonResourceURL matches a path against a rule's URLs: "*" matches
// every path, a URL matches itself, and a URL (with a trailing "*" dropped)
// matches every path below it: "/healthz" and "/healthz/*" both match
// "/healthz/etcd".
func matchesNonResourceURL(ruleURLs []string, path string) bool {
	for _, ruleURL := range ruleURLs {
		if ruleURL == flowcontrolv1.NonResourceAll || ruleURL == path {
			return true
		}
		prefix := strings.TrimSuffix(ruleURL, "*")
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// wildcard is the wildcard of every list a rule holds: flowcontrolv1.VerbAll,
// APIGroupAll, ResourceAll and NamespaceEvery are all "*".
const wildcard = "*"

// containsString reports whether x is in list, or list is exactly the
// wildcard. As in APF, the wildcard counts only as the sole member of the
// list (which the API server's validation enforces).
func containsString(x string, list []string) bool {
	if len(list) == 1 && list[0] == wildcard {
		return true
	}
	return slices.Contains(list, x)
}
