package scale

import (
	"fmt"
	"io"
	"time"
)

// mib formats bytes in MiB.
func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

// Write writes the report as Markdown: the figures, then the requests.
func (r *Report) Write(w io.Writer) error {
	o := r.Options
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
	p("Cluster: %d Nodes, %d DaemonSets in %d namespaces, %d policies at interval %v; measured for %v after a %v warm-up.\n\n",
		o.Nodes, o.DaemonSets, o.Namespaces, o.Policies, o.Interval, o.Measure, o.Warmup)
	p("| figure | value |\n| --- | --- |\n")
	p("| operator peak RSS (VmHWM) | %s |\n", mib(float64(r.PeakRSS)))
	p("| operator RSS at the end | %s |\n", mib(float64(r.RSS)))
	p("| Go heap in use at the end | %s |\n", mib(r.HeapInuse))
	p("| CPU | %.3f cores (%.1f CPU s/min) |\n", r.CPUCores, r.CPUCores*60)
	p("| allocated | %.1f MB/s |\n", r.AllocatedPerSecond/1e6)
	p("| garbage collections | %.1f a minute |\n", r.GCsPerMinute)
	p("| policy evaluations | %.1f a minute (%.1f reconciles, with the wake-ups before a policy is due) |\n",
		r.EvaluationsPerMinute, r.ReconcilesPerMinute)
	p("| evaluation duration | mean %v, p99 ≤ %v |\n", r.EvaluationMean.Round(time.Microsecond), r.EvaluationP99)
	p("| loadshed FlowSchemas | %d |\n", r.LoadshedFlowSchemas)
	p("| operator ready (every policy Ready with metrics) | %v after start |\n", r.Ready.Round(time.Second))
	p("\nThe operator's requests (kube-apiserver's audit log):\n\n| verb | resource | per minute |\n| --- | --- | ---: |\n")
	for _, q := range r.Requests {
		p("| %s | %s | %.1f |\n", q.Verb, q.Resource, q.PerMinute)
	}
	return nil
}

// PerMinute returns how many requests of verb on resource the operator
// sent a minute.
func (r *Report) PerMinute(verb, resource string) float64 {
	for _, q := range r.Requests {
		if q.Verb == verb && q.Resource == resource {
			return q.PerMinute
		}
	}
	return 0
}
