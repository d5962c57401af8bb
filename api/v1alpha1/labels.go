package v1alpha1

// Labels loadshed reads and writes. Every loadshed.io label is declared here.
const (
	// LabelProtected, set to "true" on a DaemonSet, keeps every policy from acting on it.
	LabelProtected = "loadshed.io/protected"
	// LabelManagedBy marks the objects loadshed created (FlowSchemas,
	// PriorityLevelConfigurations), with the value ManagedByValue.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on loadshed's objects.
	ManagedByValue = "loadshed"
	// LabelPolicy names the policy an object belongs to.
	LabelPolicy = "loadshed.io/policy"
	// LabelRole says what one of loadshed's APF objects is for: one of the
	// Role values below.
	LabelRole = "loadshed.io/role"
	// LabelPaused is the node-selector key that pauses a DaemonSet: no node
	// carries it, so the DaemonSet controller deletes every pod. Its value
	// names the policy.
	LabelPaused = "loadshed.io/paused"
)

// Values of LabelRole.
const (
	// RoleAttribution marks an attribution FlowSchema of earlier versions:
	// it routed one ServiceAccount's requests as the schema it went ahead of
	// would, so that APF's metrics counted them apart. This version makes
	// none, and deletes those it finds.
	RoleAttribution = "attribution"
	// RoleThrottle marks a throttle FlowSchema and the throttling priority level.
	RoleThrottle = "throttle"
	// RoleSelfProtection marks the FlowSchema of the operator's own requests.
	RoleSelfProtection = "self-protection"
)
