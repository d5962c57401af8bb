package v1alpha1

// Annotations loadshed reads and writes. Every loadshed.io annotation is
// declared here. None carries a live figure (a rate, a share): those belong
// in a policy's status, and an annotation that changed every loop would make
// loadshed rewrite the object every loop.
const (
	// AnnotationServiceAccount records, as "namespace/name", the
	// ServiceAccount an attribution or throttle FlowSchema matches.
	AnnotationServiceAccount = "loadshed.io/service-account"
	// AnnotationAttributedFrom recorded, on an attribution FlowSchema of
	// earlier versions, the FlowSchema that matched its ServiceAccount.
	AnnotationAttributedFrom = "loadshed.io/attributed-from"
	// AnnotationThrottledSince records when a throttle FlowSchema was made.
	AnnotationThrottledSince = "loadshed.io/throttled-since"
	// AnnotationLastRestored, on the throttling priority level, records when
	// the policy last finished a restore: throttles go only stableFor after it.
	AnnotationLastRestored = "loadshed.io/last-restored"
)

// Annotations on a paused DaemonSet. Everything loadshed must know to
// continue after a restart, and to undo the pause exactly, is here.
const (
	// AnnotationPausedBy names the policy that paused the DaemonSet.
	AnnotationPausedBy = "loadshed.io/paused-by"
	// AnnotationPausedAt is when it was first paused (RFC 3339).
	AnnotationPausedAt = "loadshed.io/paused-at"
	// AnnotationReason says why it was paused.
	AnnotationReason = "loadshed.io/reason"
	// AnnotationAttempt counts the restores that relapsed.
	AnnotationAttempt = "loadshed.io/attempt"
	// AnnotationWave is the restore wave in progress; 0 while fully paused.
	AnnotationWave = "loadshed.io/wave"
	// AnnotationWaveStarted is when the current wave began (RFC 3339).
	AnnotationWaveStarted = "loadshed.io/wave-started"
	// AnnotationNextRestore is the earliest time a restore may start (RFC 3339).
	AnnotationNextRestore = "loadshed.io/next-restore"
	// AnnotationLoad is the attributed requests per second when it was
	// paused, to restore the least loaded first.
	AnnotationLoad = "loadshed.io/paused-load"
	// AnnotationOverrides counts the times loadshed put back a pause someone
	// removed; each put-back waits one backoff step longer.
	AnnotationOverrides = "loadshed.io/overrides"
	// AnnotationOverriddenAt records when loadshed last put back a pause
	// that someone else removed: it does so at most once per backoff step.
	AnnotationOverriddenAt = "loadshed.io/overridden-at"
	// AnnotationOriginal holds the pod template's scheduling constraints
	// (nodeSelector and affinity) as they were before the pause, as JSON.
	AnnotationOriginal = "loadshed.io/original-scheduling"
)

// AnnotationLastRestore is what a full restore leaves on a DaemonSet, as
// JSON: the policy, when, and the attempt count, so that a relapse soon
// after it continues the backoff (see plan.Restoration). A pause replaces
// it; deleting the policy removes it.
const AnnotationLastRestore = "loadshed.io/last-restore"
