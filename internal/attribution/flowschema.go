package attribution

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	flowcontrolv1ac "k8s.io/client-go/applyconfigurations/flowcontrol/v1"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

const (
	// NamePrefix starts the name of every attribution FlowSchema.
	NamePrefix = "loadshed-attr-"
	// MinAttributablePrecedence is the lowest matchingPrecedence of a schema
	// that an attribution schema can go ahead of: the API server allows
	// matchingPrecedence 1 only for the mandatory "exempt" schema.
	MinAttributablePrecedence = 3
)

// nameHashLength is how many hex digits of the hash end a truncated name.
const nameHashLength = 10

// ErrNoRoomAhead is returned (wrapped) by FlowSchemaFor when the matched
// schema's matchingPrecedence leaves no valid precedence ahead of it.
var ErrNoRoomAhead = errors.New("no matchingPrecedence left ahead of the matched flowschema")

// Name returns the name of sa's attribution FlowSchema:
// "loadshed-attr-<namespace>.<name>". The dot separates namespace and name
// because a namespace never contains one, where a dash would make
// "a-b"/"c" and "a"/"b-c" share a name. For a valid ServiceAccount the
// result is a valid DNS subdomain; when it would be longer than 253
// characters it is cut and ends with "-" and a hash of the full pair, so two
// ServiceAccounts do not share a name.
func Name(sa ServiceAccount) string {
	full := NamePrefix + sa.Namespace + "." + sa.Name
	if len(full) <= validation.DNS1123SubdomainMaxLength {
		return full
	}
	sum := sha256.Sum256([]byte(sa.Namespace + "/" + sa.Name))
	head := strings.TrimRight(full[:validation.DNS1123SubdomainMaxLength-1-nameHashLength], "-.")
	return head + "-" + hex.EncodeToString(sum[:])[:nameHashLength]
}

// FlowSchemaFor returns the server-side-apply configuration of sa's
// attribution FlowSchema, given the FlowSchema that matches sa today (see
// Match). The schema matches every request of exactly that ServiceAccount
// and routes it as matched does: same priority level, same distinguisher
// method, at matched's matchingPrecedence minus one. It carries loadshed's
// labels, and annotations naming the ServiceAccount and matched.
//
// It returns an error when sa is incomplete, matched is nil or one of
// loadshed's own, or matched's matchingPrecedence is below
// MinAttributablePrecedence, or routes to the exempt priority level (both
// wrapping ErrNoRoomAhead). Only the operator's self-protection schema
// routes to exempt: the admission policy in config/admission denies any
// other schema of loadshed's that would, so that loadshed's credentials
// cannot exempt anyone from APF. Requests on exempt are never limited;
// there is nothing to attribute them for.
func FlowSchemaFor(sa ServiceAccount, matched *flowcontrolv1.FlowSchema) (*flowcontrolv1ac.FlowSchemaApplyConfiguration, error) {
	if sa.Namespace == "" || sa.Name == "" {
		return nil, fmt.Errorf("serviceaccount %q needs a namespace and a name", sa.String())
	}
	if matched == nil {
		return nil, fmt.Errorf("attributing %s: no matched flowschema given", sa)
	}
	if IsOwned(matched) {
		return nil, fmt.Errorf("attributing %s: flowschema %q is loadshed's own; pass the schema that matches without loadshed's", sa, matched.Name)
	}
	precedence := matched.Spec.MatchingPrecedence
	if precedence < MinAttributablePrecedence {
		return nil, fmt.Errorf("attributing %s: flowschema %q has matchingPrecedence %d, and only the mandatory %q schema may have matchingPrecedence 1, so nothing can go ahead of it: %w",
			sa, matched.Name, precedence, flowcontrolv1.FlowSchemaNameExempt, ErrNoRoomAhead)
	}

	if matched.Spec.PriorityLevelConfiguration.Name == flowcontrolv1.PriorityLevelConfigurationNameExempt {
		return nil, fmt.Errorf("attributing %s: flowschema %q routes it to the %q priority level, which only loadshed's "+
			"self-protection schema may route to: %w", sa, matched.Name, flowcontrolv1.PriorityLevelConfigurationNameExempt, ErrNoRoomAhead)
	}

	spec := flowcontrolv1ac.FlowSchemaSpec().
		WithPriorityLevelConfiguration(flowcontrolv1ac.PriorityLevelConfigurationReference().
			WithName(matched.Spec.PriorityLevelConfiguration.Name)).
		WithMatchingPrecedence(precedence - 1).
		WithRules(flowcontrolv1ac.PolicyRulesWithSubjects().
			WithSubjects(flowcontrolv1ac.Subject().
				WithKind(flowcontrolv1.SubjectKindServiceAccount).
				WithServiceAccount(flowcontrolv1ac.ServiceAccountSubject().
					WithNamespace(sa.Namespace).
					WithName(sa.Name))).
			WithResourceRules(flowcontrolv1ac.ResourcePolicyRule().
				WithVerbs(flowcontrolv1.VerbAll).
				WithAPIGroups(flowcontrolv1.APIGroupAll).
				WithResources(flowcontrolv1.ResourceAll).
				WithClusterScope(true).
				WithNamespaces(flowcontrolv1.NamespaceEvery)).
			WithNonResourceRules(flowcontrolv1ac.NonResourcePolicyRule().
				WithVerbs(flowcontrolv1.VerbAll).
				WithNonResourceURLs(flowcontrolv1.NonResourceAll)))
	if dm := matched.Spec.DistinguisherMethod; dm != nil {
		spec.WithDistinguisherMethod(flowcontrolv1ac.FlowDistinguisherMethod().WithType(dm.Type))
	}

	return flowcontrolv1ac.FlowSchema(Name(sa)).
		WithLabels(map[string]string{
			v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
			v1alpha1.LabelRole:      v1alpha1.RoleAttribution,
		}).
		WithAnnotations(map[string]string{
			v1alpha1.AnnotationServiceAccount: sa.String(),
			v1alpha1.AnnotationAttributedFrom: matched.Name,
		}).
		WithSpec(spec), nil
}

// IsOwned reports whether an object was made by loadshed: its LabelManagedBy
// label is ManagedByValue. It is false for nil.
func IsOwned(obj metav1.Object) bool {
	if obj == nil {
		return false
	}
	return obj.GetLabels()[v1alpha1.LabelManagedBy] == v1alpha1.ManagedByValue
}

// IsAttribution reports whether an object is one of loadshed's attribution
// FlowSchemas: owned by loadshed, with role v1alpha1.RoleAttribution.
func IsAttribution(obj metav1.Object) bool {
	return IsOwned(obj) && obj.GetLabels()[v1alpha1.LabelRole] == v1alpha1.RoleAttribution
}
