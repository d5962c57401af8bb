package backtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// shared are the functions through which the operator and the back-test
// decide: each must be called by both, so that neither decides with a
// copy. TestTheEngineAddsNoDecision checks that the back-test adds nothing
// of its own around them.
var shared = []string{
	// Resolving the policy into what the sampler reads and the triggers' queries.
	"sampler.InterestOf",
	// Evaluating the triggers, and the events of their transitions.
	"detection.Evaluate", "detection.Transitions", "detection.FiredNote", "detection.ClearedNote",
	// Measuring the offenders.
	"detection.Offenders", "detection.AttributionWindow", "detection.MaxOffenders", "detection.DaemonSetsByServiceAccount",
	// Gathering the planner's input.
	"plan.InputFrom", "plan.OffendersOf", ".Protected", "shed.CannotThrottle", "shed.ThrottledSince", "shed.LastRestored",
	"shed.Restorations", "shed.ReadPause", "shed.PausedBy", "plan.ThrottleBlockedSince",
	// Deciding, and what a plan leaves in place and in status.
	"plan.Decide", "shed.Apply", "shed.Restore", "shed.ThrottleFlowSchema", "shed.ThrottleLevel",
	"plan.BlockedStatuses", "plan.NewlyBlocked",
}

func TestTheOperatorAndTheBackTestDecideWithTheSameCode(t *testing.T) {
	operator := selectors(t, "../../controllers/*.go")
	backtest := selectors(t, "*.go")
	for _, name := range shared {
		if !operator[name] {
			t.Errorf("the operator (controllers/) does not use %s", name)
		}
		if !backtest[name] {
			t.Errorf("the back-test does not use %s", name)
		}
	}
}

// selectors returns the package-qualified names ("plan.Decide") and the
// methods (".Protected") that the non-test Go files matching pattern use.
func selectors(t *testing.T, pattern string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s: %v", pattern, err)
	}
	out := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(parsed, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok {
					out[id.Name+"."+sel.Sel.Name] = true
				}
				out["."+sel.Sel.Name] = true
			}
			return true
		})
	}
	return out
}
