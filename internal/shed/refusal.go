package shed

import (
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/policy"
)

// CannotThrottle says why a policy with targets t may not or cannot
// throttle a ServiceAccount, or "" when it can: the operator's own; in a
// protected namespace (kube-system, the operator's) the policy does not
// allow; in a namespace its namespaceSelector leaves out (nsLabels holds
// every namespace's labels when it has one); or matched by none of schemas,
// or by one too early for a throttle to go ahead of. It also returns the
// FlowSchema that matches the ServiceAccount, which its throttle goes ahead
// of (nil when none was looked for or found). The operator and kubectl
// loadshed's back-test both ask it.
func CannotThrottle(t policy.Targets, sa, operator types.NamespacedName, nsLabels map[string]k8slabels.Set,
	schemas []flowcontrolv1.FlowSchema) (*flowcontrolv1.FlowSchema, string) {
	if why := t.ThrottleRefusal(sa, operator, nsLabels); why != "" {
		return nil, why
	}
	matched, ok := attribution.Match(attribution.ServiceAccount(sa), attribution.FloodRequest, schemas)
	if !ok {
		return nil, "no FlowSchema matches it for a throttle to go ahead of"
	}
	if _, err := ThrottlePrecedence(matched); err != nil {
		return matched, err.Error()
	}
	return matched, ""
}
