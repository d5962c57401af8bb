package shed

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/types"
	flowcontrolv1ac "k8s.io/client-go/applyconfigurations/flowcontrol/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/policy"
)

// MinThrottlePrecedence is the lowest matchingPrecedence a throttle
// FlowSchema takes. Every built-in schema that must win over a throttle has
// a lower one: exempt (1), probes (2), the leader-election schemas (100,
// 200), the endpoint controller (150), the nodes (400, 500), the control
// plane's own components (800) and kube-system's ServiceAccounts (900); so
// does loadshed's own (SelfProtectionPrecedence).
const MinThrottlePrecedence = 1000

// SelfProtectionPrecedence is the matchingPrecedence of the FlowSchema that
// routes loadshed's own requests: ahead of everything but exempt and probes.
const SelfProtectionPrecedence = 50

// SelfProtectionName names the FlowSchema for the operator's own requests.
const SelfProtectionName = "loadshed-operator"

// ThrottleLevelName names a policy's throttling PriorityLevelConfiguration.
func ThrottleLevelName(policyName string) string {
	return boundedName("loadshed-throttle-", policyName)
}

// ThrottleName names the throttle FlowSchema of a ServiceAccount.
func ThrottleName(sa attribution.ServiceAccount) string {
	return boundedName("loadshed-throttle-", sa.Namespace+"."+sa.Name)
}

func boundedName(prefix, rest string) string {
	name := prefix + rest
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(rest))
	return name[:253-11] + "-" + hex.EncodeToString(sum[:])[:10]
}

func labels(role, policyName string) map[string]string {
	l := map[string]string{
		v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		v1alpha1.LabelRole:      role,
	}
	if policyName != "" {
		l[v1alpha1.LabelPolicy] = policyName
	}
	return l
}

// ThrottleLevel returns the throttling priority level of a policy: Limited,
// a few nominal seats, nothing lent or borrowed, so that throttled
// ServiceAccounts share a small, fixed part of the API servers' concurrency.
func ThrottleLevel(policyName string, t policy.Throttle) *flowcontrolv1ac.PriorityLevelConfigurationApplyConfiguration {
	resp := flowcontrolv1ac.LimitResponse()
	if t.LimitResponse == v1alpha1.LimitResponseReject {
		resp.WithType(flowcontrolv1.LimitResponseTypeReject)
	} else {
		hand := min(int32(4), t.Queues)
		resp.WithType(flowcontrolv1.LimitResponseTypeQueue).WithQueuing(flowcontrolv1ac.QueuingConfiguration().
			WithQueues(t.Queues).WithQueueLengthLimit(t.QueueLengthLimit).WithHandSize(hand))
	}
	return flowcontrolv1ac.PriorityLevelConfiguration(ThrottleLevelName(policyName)).
		WithLabels(labels(v1alpha1.RoleThrottle, policyName)).
		WithSpec(flowcontrolv1ac.PriorityLevelConfigurationSpec().
			WithType(flowcontrolv1.PriorityLevelEnablementLimited).
			WithLimited(flowcontrolv1ac.LimitedPriorityLevelConfiguration().
				WithNominalConcurrencyShares(t.NominalConcurrencyShares).
				WithLendablePercent(0).
				WithBorrowingLimitPercent(0).
				WithLimitResponse(resp)))
}

// ThrottlePrecedence is the matchingPrecedence of a throttle, given the
// FlowSchema that matches it: two ahead (one ahead was where the attribution
// schema of earlier versions went: two never ties with one an older
// operator left). It errors when that would go ahead of
// MinThrottlePrecedence.
func ThrottlePrecedence(matched *flowcontrolv1.FlowSchema) (int32, error) {
	precedence := matched.Spec.MatchingPrecedence - 2
	if precedence < MinThrottlePrecedence {
		return 0, fmt.Errorf("it is matched by FlowSchema %s at precedence %d, and a throttle would have to go ahead of %d, "+
			"among the system's own schemas", matched.Name, matched.Spec.MatchingPrecedence, MinThrottlePrecedence)
	}
	return precedence, nil
}

// ThrottleFlowSchema returns the FlowSchema that routes all of sa's requests
// to the policy's throttling level, two ahead of the schema that matches it
// today (ThrottlePrecedence). It errors when that would go ahead of
// MinThrottlePrecedence.
func ThrottleFlowSchema(policyName string, sa attribution.ServiceAccount, matched *flowcontrolv1.FlowSchema,
	since time.Time) (*flowcontrolv1ac.FlowSchemaApplyConfiguration, error) {
	precedence, err := ThrottlePrecedence(matched)
	if err != nil {
		return nil, err
	}
	return allRequestsOf(ThrottleName(sa), sa, precedence, ThrottleLevelName(policyName)).
		WithLabels(labels(v1alpha1.RoleThrottle, policyName)).
		WithAnnotations(map[string]string{
			v1alpha1.AnnotationServiceAccount: sa.String(),
			v1alpha1.AnnotationThrottledSince: since.UTC().Format(time.RFC3339),
		}), nil
}

// SelfProtection returns the FlowSchema that routes the operator's own
// requests to the exempt level. loadshed makes few requests (it reads from
// its cache, and writes only when something changes), and it must be able
// to act exactly when every other level is saturated; exempt is the only
// level that never queues nor rejects, and no throttle ever touches it.
func SelfProtection(sa attribution.ServiceAccount) *flowcontrolv1ac.FlowSchemaApplyConfiguration {
	return allRequestsOf(SelfProtectionName, sa, SelfProtectionPrecedence, flowcontrolv1.PriorityLevelConfigurationNameExempt).
		WithLabels(labels(v1alpha1.RoleSelfProtection, "")).
		WithAnnotations(map[string]string{v1alpha1.AnnotationServiceAccount: sa.String()})
}

func allRequestsOf(name string, sa attribution.ServiceAccount, precedence int32, level string) *flowcontrolv1ac.FlowSchemaApplyConfiguration {
	return flowcontrolv1ac.FlowSchema(name).WithSpec(flowcontrolv1ac.FlowSchemaSpec().
		WithMatchingPrecedence(precedence).
		WithPriorityLevelConfiguration(flowcontrolv1ac.PriorityLevelConfigurationReference().WithName(level)).
		WithDistinguisherMethod(flowcontrolv1ac.FlowDistinguisherMethod().WithType(flowcontrolv1.FlowDistinguisherMethodByUserType)).
		WithRules(flowcontrolv1ac.PolicyRulesWithSubjects().
			WithSubjects(flowcontrolv1ac.Subject().WithKind(flowcontrolv1.SubjectKindServiceAccount).
				WithServiceAccount(flowcontrolv1ac.ServiceAccountSubject().WithNamespace(sa.Namespace).WithName(sa.Name))).
			WithResourceRules(flowcontrolv1ac.ResourcePolicyRule().
				WithVerbs(flowcontrolv1.VerbAll).WithAPIGroups(flowcontrolv1.APIGroupAll).WithResources(flowcontrolv1.ResourceAll).
				WithClusterScope(true).WithNamespaces(flowcontrolv1.NamespaceEvery)).
			WithNonResourceRules(flowcontrolv1ac.NonResourcePolicyRule().
				WithVerbs(flowcontrolv1.VerbAll).WithNonResourceURLs(flowcontrolv1.NonResourceAll))))
}

// ThrottledServiceAccount returns the ServiceAccount a throttle FlowSchema
// routes, from its rule's subject; false when it has none.
func ThrottledServiceAccount(fs *flowcontrolv1.FlowSchema) (types.NamespacedName, bool) {
	for _, rule := range fs.Spec.Rules {
		for _, s := range rule.Subjects {
			if s.Kind == flowcontrolv1.SubjectKindServiceAccount && s.ServiceAccount != nil {
				return types.NamespacedName{Namespace: s.ServiceAccount.Namespace, Name: s.ServiceAccount.Name}, true
			}
		}
	}
	return types.NamespacedName{}, false
}

// ThrottledSince reads when a throttle FlowSchema was made.
func ThrottledSince(fs *flowcontrolv1.FlowSchema) (time.Time, error) {
	return parseTime(fs.Annotations[v1alpha1.AnnotationThrottledSince])
}

// LastRestored reads, from a policy's throttling level, when the policy
// last finished a restore; zero when never, or with no level (nil).
func LastRestored(level *flowcontrolv1.PriorityLevelConfiguration) time.Time {
	if level == nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, level.Annotations[v1alpha1.AnnotationLastRestored])
	if err != nil {
		return time.Time{}
	}
	return t
}
