package v1alpha1

// Reasons of the events loadshed records, on a policy and, for changes to a
// DaemonSet, on the DaemonSet too. Every event reason is declared here; the
// tests and the replay match events through these constants.
const (
	// EventTriggerFired: a trigger started firing.
	EventTriggerFired = "TriggerFired"
	// EventTriggerCleared: a trigger stopped firing.
	EventTriggerCleared = "TriggerCleared"

	// EventThrottled: a ServiceAccount was routed to the throttling priority level.
	EventThrottled = "Throttled"
	// EventUnthrottled: a throttle was removed.
	EventUnthrottled = "Unthrottled"
	// EventPaused: a DaemonSet was paused.
	EventPaused = "Paused"
	// EventRestoreStarted: the first restore wave of a paused DaemonSet began.
	EventRestoreStarted = "RestoreStarted"
	// EventWaveAdvanced: a restore moved on to its next wave.
	EventWaveAdvanced = "WaveAdvanced"
	// EventRestored: a DaemonSet's restore completed.
	EventRestored = "Restored"
	// EventRepaused: a trigger fired during a restore, and the DaemonSet was
	// paused again with a longer backoff.
	EventRepaused = "Repaused"
	// EventPauseOverridden: someone else removed a pause that should hold.
	EventPauseOverridden = "PauseOverridden"
	// EventBlocked: the policy would throttle or pause a target but may not
	// (status.blocked says why); recorded once, when it becomes blocked.
	EventBlocked = "Blocked"
)

// dryRunPrefix starts the reason of an event that records what a policy in
// dryRun would have done.
const dryRunPrefix = "Would"

// DryRunReason is the reason of the event that records, in dryRun, what an
// event of the given reason would have recorded: "Throttled" becomes
// "WouldThrottled".
func DryRunReason(reason string) string { return dryRunPrefix + reason }
