package kubectl

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/inspect"
	"github.com/loadshed/loadshed/internal/operatorref"
)

// What status, why and release share: how they find the operator, how
// they name a DaemonSet, and how they print tables, times and states.

// operatorFlags say where the operator runs: why reads its ServiceAccount
// (a DaemonSet running as it is protected, as is its namespace); release
// reads its leader election Lease. The defaults are config/'s.
type operatorFlags struct {
	namespace, serviceAccount, lease string
}

func (f *operatorFlags) add(cmd *cobra.Command, lease bool) {
	cmd.Flags().StringVar(&f.namespace, "operator-namespace", operatorref.Namespace,
		"The operator's namespace (its --namespace).")
	if lease {
		cmd.Flags().StringVar(&f.lease, "leader-election-id", operatorref.LeaderElectionID,
			"The name of the operator's leader election Lease, in --operator-namespace (its --leader-election-id).")
		return
	}
	cmd.Flags().StringVar(&f.serviceAccount, "operator-service-account", operatorref.ServiceAccount,
		"The operator's ServiceAccount, in --operator-namespace (its --service-account).")
}

// daemonSetArg reads a DaemonSet named NAMESPACE/NAME, or NAME in the
// namespace of -n (else the kubeconfig context's).
func daemonSetArg(o *Options, arg string) (types.NamespacedName, error) {
	ns, name, qualified := strings.Cut(arg, "/")
	if !qualified {
		name = arg
		var err error
		if ns, _, err = o.Config.ToRawKubeConfigLoader().Namespace(); err != nil {
			return types.NamespacedName{}, fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
		}
	}
	for _, part := range []string{ns, name} {
		if errs := validation.IsDNS1123Subdomain(part); len(errs) > 0 {
			return types.NamespacedName{}, fmt.Errorf("%q is not a DaemonSet as NAMESPACE/NAME or NAME: %s",
				arg, strings.Join(errs, "; "))
		}
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// scribe writes text, keeping the first error, so that a screen is
// written line by line and its error checked once, at the end.
type scribe struct {
	w   io.Writer
	err error
	// tw, when set, is a table being written to w; flush writes it out.
	tw *tabwriter.Writer
}

// newScribe writes to w.
func newScribe(w io.Writer) *scribe { return &scribe{w: w} }

func (s *scribe) printf(format string, args ...any) {
	if s.err != nil {
		return
	}
	out := s.w
	if s.tw != nil {
		out = s.tw
	}
	_, s.err = fmt.Fprintf(out, format, args...)
}

// table starts a table of aligned columns, as kubectl prints them: lines
// with tab-separated cells, until flush.
func (s *scribe) table() {
	s.tw = tabwriter.NewWriter(s.w, 0, 8, 2, ' ', 0)
}

// flush ends a table.
func (s *scribe) flush() {
	if s.tw == nil {
		return
	}
	if err := s.tw.Flush(); s.err == nil {
		s.err = err
	}
	s.tw = nil
}

// ANSI colours marking states. Each is as long as the others, so that a
// column of painted states stays aligned in a table: its cells all carry
// the same invisible bytes.
const (
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	plain  = "\x1b[39m"
	reset  = "\x1b[0m"
)

// paint colours a state when the output is coloured: firing (and Warning
// events) red, OK green, anything in between yellow; any other value keeps
// the terminal's colour. Paint every cell of a column or none.
func paint(o *Options, state string) string {
	if !o.Color() {
		return state
	}
	switch state {
	case string(v1alpha1.TriggerFiring), string(v1alpha1.PhaseShedding), string(v1alpha1.PhaseTriggered), "Warning":
		return red + state + reset
	case string(v1alpha1.TriggerOK), string(v1alpha1.PhaseHealthy):
		return green + state + reset
	case string(v1alpha1.TriggerPending), string(v1alpha1.TriggerClearing), string(v1alpha1.TriggerUnknown),
		string(v1alpha1.PhaseRestoring), string(v1alpha1.PhaseSuspended):
		return yellow + state + reset
	}
	return plain + state + reset
}

// ago writes a time relative to now ("3m10s ago"), "-" for none.
func ago(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return inspect.Relative(t.Time, now)
}

// orDash writes "-" for an empty value.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
