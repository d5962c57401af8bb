package v1alpha1

// Condition types of a LoadShedPolicy.
const (
	// ConditionReady is True when the policy is valid and was evaluated in
	// the last loop. It is the kstatus summary condition.
	ConditionReady = "Ready"
	// ConditionMetricsAvailable is True when the signals could be read in the
	// last loop, False with a reason when a scrape or query failed.
	ConditionMetricsAvailable = "MetricsAvailable"
	// ConditionTriggered is True while at least one trigger fires.
	ConditionTriggered = "Triggered"
	// ConditionShedding is True while the policy keeps throttles or pauses in place.
	ConditionShedding = "Shedding"
)

// Condition reasons of a LoadShedPolicy.
const (
	// ReasonReconciled: the policy is valid and was evaluated.
	ReasonReconciled = "Reconciled"
	// ReasonInvalidSpec: the spec has an error that the schema cannot catch,
	// such as a label selector or a regular expression that does not parse.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonSecretNotFound: a Secret the spec refers to does not exist or
	// lacks the key.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSuspended: spec.suspend is set; nothing is evaluated or changed.
	ReasonSuspended = "Suspended"
	// ReasonProgressing: the policy has not been evaluated yet.
	ReasonProgressing = "Progressing"
	// ReasonDeleting: the policy is being deleted and what it did is undone.
	ReasonDeleting = "Deleting"

	// ReasonScrapeFailed: no API server instance could be scraped.
	ReasonScrapeFailed = "ScrapeFailed"
	// ReasonQueryFailed: a Prometheus query failed.
	ReasonQueryFailed = "QueryFailed"
	// ReasonMetricsRead: the signals were read.
	ReasonMetricsRead = "MetricsRead"
	// ReasonNoSamples: no sample has been taken yet.
	ReasonNoSamples = "NoSamples"

	// ReasonTriggerFiring: at least one trigger fires.
	ReasonTriggerFiring = "TriggerFiring"
	// ReasonAllClear: no trigger fires.
	ReasonAllClear = "AllClear"

	// ReasonActionsInPlace: throttles or pauses are in place.
	ReasonActionsInPlace = "ActionsInPlace"
	// ReasonNothingShed: nothing is throttled or paused.
	ReasonNothingShed = "NothingShed"
	// ReasonPauseOverridden: someone else removed a pause that should hold.
	ReasonPauseOverridden = "PauseOverridden"
)

// Labels and annotations that loadshed reads and writes.
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
)

// Finalizer is set on every policy so that deleting it undoes what it did.
const Finalizer = "loadshed.io/finalizer"
