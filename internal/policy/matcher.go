package policy

import (
	"fmt"
	"regexp"

	"github.com/loadshed/loadshed/api/v1alpha1"
)

// Matcher selects series by one label, as a PromQL label matcher does. A
// missing label matches as the empty string, as in PromQL.
type Matcher struct {
	Label string
	Op    v1alpha1.MatchOperator
	Value string
	re    *regexp.Regexp
}

// NewMatcher returns a matcher; regular expressions are anchored at both
// ends, as in PromQL.
func NewMatcher(label string, op v1alpha1.MatchOperator, value string) (Matcher, error) {
	m := Matcher{Label: label, Op: op, Value: value}
	switch op {
	case v1alpha1.MatchEqual, v1alpha1.MatchNotEqual:
	case v1alpha1.MatchRegexp, v1alpha1.MatchNotRegexp:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return Matcher{}, fmt.Errorf("invalid regular expression %q: %w", value, err)
		}
		m.re = re
	default:
		return Matcher{}, fmt.Errorf("unknown operator %q", op)
	}
	return m, nil
}

// Matches reports whether a label value matches.
func (m Matcher) Matches(value string) bool {
	switch m.Op {
	case v1alpha1.MatchEqual:
		return value == m.Value
	case v1alpha1.MatchNotEqual:
		return value != m.Value
	case v1alpha1.MatchRegexp:
		return m.re.MatchString(value)
	case v1alpha1.MatchNotRegexp:
		return !m.re.MatchString(value)
	}
	return false
}

// String formats the matcher as PromQL does.
func (m Matcher) String() string {
	return fmt.Sprintf("%s%s%q", m.Label, m.Op, m.Value)
}

// MatchesBytes is Matches for a label value held as bytes, without copying it.
func (m Matcher) MatchesBytes(value []byte) bool {
	switch m.Op {
	case v1alpha1.MatchEqual:
		return string(value) == m.Value
	case v1alpha1.MatchNotEqual:
		return string(value) != m.Value
	case v1alpha1.MatchRegexp:
		return m.re.Match(value)
	case v1alpha1.MatchNotRegexp:
		return !m.re.Match(value)
	}
	return false
}
