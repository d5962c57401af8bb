package sampler

import "time"

// Trim returns the part of a history, oldest first, that the sampler keeps
// once its newest entry is in: what is at most keep older than the newest,
// and at most maxRounds entries. It returns history itself when it drops
// nothing, else a copy. kubectl loadshed's back-test keeps its history as
// the sampler does with it.
func Trim[T any](history []T, at func(T) time.Time, keep time.Duration) []T {
	if len(history) == 0 {
		return history
	}
	newest := at(history[len(history)-1])
	cut := 0
	for cut < len(history)-1 && newest.Sub(at(history[cut])) > keep {
		cut++
	}
	if len(history)-cut > maxRounds {
		cut = len(history) - maxRounds
	}
	if cut == 0 {
		return history
	}
	return append([]T(nil), history[cut:]...)
}
