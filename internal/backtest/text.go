package backtest

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/plan"
)

// ANSI colours, for the states they mark.
const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	// plain is the default colour: a cell in it is as wide in bytes as a
	// coloured one, so that the columns stay aligned.
	plain = "\x1b[39m"
	reset = "\x1b[0m"
)

// WriteText writes the result as kubectl would: a heading, the timeline's
// aligned columns, then the summary. With color, the entries that mark a
// state are coloured: firing red, cleared green, unknown yellow.
func (r *Result) WriteText(w io.Writer, color bool) error {
	var head, table strings.Builder
	fmt.Fprintf(&head, "Back-test of LoadShedPolicy %s on %s\nfrom %s to %s (%v), evaluated every %v\n\n", r.Policy, r.Source,
		r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.To.Sub(r.From).Round(time.Second), r.Interval.Duration)
	if len(r.Timeline) == 0 {
		head.WriteString("Nothing happened: no trigger fired, nothing would have been throttled or paused.\n")
	} else {
		fmt.Fprintf(&table, "TIME\tAFTER\t%s\tSUBJECT\tVALUE\tTHRESHOLD\tREASON\n", paint("KIND", color))
		for _, e := range r.Timeline {
			fmt.Fprintf(&table, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format(time.RFC3339), after(e.Time.Sub(r.From)),
				paint(e.Kind, color), e.Subject, dash(e.Value), dash(e.Threshold), e.Reason)
		}
	}
	if _, err := io.WriteString(w, head.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if _, err := io.WriteString(tw, table.String()); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n"+r.Summary.text(r.Source))
	return err
}

// text writes the summary: one line of what the policy would have done,
// then what it could not see and what the back-test assumed.
func (s Summary) text(source string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Summary: %s in %d evaluations; firing %v, shedding %v; %s; %s.\n", times(s.TimesFired), s.Evaluations,
		s.Firing.Round(time.Second), s.Shedding.Round(time.Second), listed("paused", "DaemonSet", s.Paused), listed("throttled", "ServiceAccount", s.Throttled))
	if s.Unseen.NoAttribution != "" {
		fmt.Fprintf(&b, "No offenders from %s: %s.\n", source, s.Unseen.NoAttribution)
	}
	for _, blocked := range s.Blocked {
		fmt.Fprintf(&b, "Blocked: %s.\n", blocked)
	}
	if u := s.Unseen; u.BlindRounds+u.PartialRounds+u.UnattributedRounds > 0 {
		fmt.Fprintf(&b, "Could not see: %d rounds in which no API server could be scraped, %d in which some could not, "+
			"%d in which who loads an API server could not be read.\n", u.BlindRounds, u.PartialRounds, u.UnattributedRounds)
	}
	for _, m := range s.Unseen.Missing {
		fmt.Fprintf(&b, "Missing: trigger %s had no value at %d evaluations (last: %s).\n", m.Trigger, m.Evaluations, m.Reason)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "Note: %s.\n", n)
	}
	return b.String()
}

// paint colours an entry's kind by the state it marks.
func paint(kind string, color bool) string {
	if !color {
		return kind
	}
	switch kind {
	case v1alpha1.EventTriggerFired, string(plan.Paused), string(plan.Repaused), string(plan.Throttled):
		return red + kind + reset
	case v1alpha1.EventTriggerCleared, string(plan.Restored), string(plan.Unthrottled):
		return green + kind + reset
	case KindTriggerUnknown, v1alpha1.EventBlocked:
		return yellow + kind + reset
	}
	return plain + kind + reset
}

// after writes a time since the start: "+2m10s".
func after(d time.Duration) string { return "+" + d.Round(time.Second).String() }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func times(n int) string {
	switch n {
	case 0:
		return "never fired"
	case 1:
		return "fired once"
	}
	return fmt.Sprintf("fired %d times", n)
}

// listed says what would have been done to whom: "paused 2 DaemonSets
// (a/x, b/y)".
func listed(verb, noun string, names []string) string {
	switch len(names) {
	case 0:
		return fmt.Sprintf("%s no %s", verb, noun)
	case 1:
		return fmt.Sprintf("%s 1 %s (%s)", verb, noun, names[0])
	}
	return fmt.Sprintf("%s %d %ss (%s)", verb, len(names), noun, strings.Join(names, ", "))
}
