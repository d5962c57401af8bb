package v1alpha1

// Condition types of a LoadShedPolicy.
const (
	// ConditionReady is True when the policy is valid and was evaluated in
	// the last loop. It is the kstatus summary condition.
	ConditionReady = "Ready"
	// ConditionMetricsAvailable is True when the signals could be read in the
	// last loop, from every API server instance, False with a reason when a
	// scrape or query failed.
	ConditionMetricsAvailable = "MetricsAvailable"
	// ConditionTriggered is True while at least one trigger fires.
	ConditionTriggered = "Triggered"
	// ConditionShedding is True while the policy keeps throttles or pauses in place.
	ConditionShedding = "Shedding"

	// ConditionReconciling is the kstatus "abnormal-true" condition that
	// tools such as Flux, Argo CD and kubectl wait read: present and True
	// while the operator is still acting on the policy's spec (the last
	// loop failed and is retried, or the policy is being deleted); absent
	// otherwise.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is the kstatus condition for a spec that cannot be
	// acted on until someone changes it or what it refers to (reasons
	// InvalidSpec, SecretNotFound); absent otherwise.
	ConditionStalled = "Stalled"
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
	// ReasonReconcileFailed: the last loop failed (for example, the API
	// server did not answer) and is retried; Ready is False and Reconciling
	// True with this reason, and the message has the error.
	ReasonReconcileFailed = "ReconcileFailed"
	// ReasonDeleting: the policy is being deleted and the finalizer undoes
	// what it did (Ready False, Reconciling True); the message says what is
	// left, or why the undo failed.
	ReasonDeleting = "Deleting"

	// ReasonScrapeFailed: no API server instance could be scraped.
	ReasonScrapeFailed = "ScrapeFailed"
	// ReasonPartialScrape: some API server instances could not be scraped,
	// or stopped being listed in default/kubernetes (the message names them):
	// the policy is partially blind. A signal read from the others counts
	// only past its threshold (a flood on them still fires); otherwise it
	// has no value, so no trigger clears and nothing is restored.
	ReasonPartialScrape = "PartialScrape"
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
	// ReasonPauseOverridden: someone else removed a pause that should hold
	// (the Shedding condition's reason; the event has EventPauseOverridden).
	ReasonPauseOverridden = "PauseOverridden"
)
