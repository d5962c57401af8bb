package replay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/shed"
)

// apiMetrics are the figures the replay reads from kube-apiserver's
// /metrics.
type apiMetrics struct {
	// Inflight is the requests being served (read-only and mutating).
	Inflight float64
	// OperatorRequests is how many requests APF dispatched for the
	// operator's own FlowSchema: every request the operator made.
	OperatorRequests float64
}

// counter totals a cumulative metric across its resets: a restarted API
// server counts from zero again.
type counter struct{ base, last float64 }

// observe takes a new reading and returns the total so far.
func (c *counter) observe(v float64) float64 {
	if v < c.last {
		c.base += c.last
	}
	c.last = v
	return c.base + v
}

// total is the total so far.
func (c *counter) total() float64 { return c.base + c.last }

// metricsReader scrapes kube-apiserver's /metrics as the cluster admin
// (exempt from APF, so it sees the server even when it is saturated).
type metricsReader struct {
	http *http.Client
	url  string
}

func newMetricsReader(cfg *rest.Config) (*metricsReader, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &metricsReader{http: hc, url: strings.TrimSuffix(cfg.Host, "/") + "/metrics"}, nil
}

var scrapedFamilies = exposition.Want("apiserver_current_inflight_requests", "apiserver_flowcontrol_dispatched_requests_total")

func (m *metricsReader) read(ctx context.Context) (apiMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return apiMetrics{}, err
	}
	req.Header.Set("Accept", exposition.AcceptHeader)
	resp, err := m.http.Do(req)
	if err != nil {
		return apiMetrics{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return apiMetrics{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiMetrics{}, err
	}
	var out apiMetrics
	err = exposition.Parse(resp.Header.Get("Content-Type"), body, scrapedFamilies, func(s *exposition.Sample) {
		switch s.Family {
		case "apiserver_current_inflight_requests":
			out.Inflight += s.Value
		case "apiserver_flowcontrol_dispatched_requests_total":
			if fs, _ := s.Label("flow_schema"); string(fs) == shed.SelfProtectionName {
				out.OperatorRequests += s.Value
			}
		}
	})
	return out, err
}

// PauseRecord is one pause of the telemetry DaemonSet as its annotations
// told it: the attempt and how long until its next restore. A first pause
// has no backoff (its restore waits for the stable window only); each
// relapse sets one.
type PauseRecord struct {
	// At is when the replay saw it.
	At      time.Duration
	Attempt int
	// Backoff is from then to the next restore time it carries.
	Backoff time.Duration
}

// clusterState is what loadshed has in place, read from the cluster.
type clusterState struct {
	// Paused says whether the telemetry DaemonSet is paused (the paused
	// node selector key is on its template).
	Paused bool
	// Wave is the restore wave in progress, 0 when paused or restored.
	Wave int
	// Throttled counts loadshed's throttle FlowSchemas.
	Throttled int
	// attempt and nextRestore are the pause's annotations.
	attempt     int
	nextRestore time.Time
}

func readState(ctx context.Context, c client.Client) (clusterState, error) {
	var st clusterState
	ds := &appsv1.DaemonSet{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: TelemetryNamespace, Name: TelemetryName}, ds); err != nil {
		return st, err
	}
	_, st.Paused = ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]
	ann := ds.Annotations
	st.Wave, _ = strconv.Atoi(ann[v1alpha1.AnnotationWave])
	st.attempt, _ = strconv.Atoi(ann[v1alpha1.AnnotationAttempt])
	st.nextRestore, _ = time.Parse(time.RFC3339, ann[v1alpha1.AnnotationNextRestore])
	fss := &flowcontrolv1.FlowSchemaList{}
	if err := c.List(ctx, fss, client.MatchingLabels{v1alpha1.LabelRole: v1alpha1.RoleThrottle}); err != nil {
		return st, err
	}
	for i := range fss.Items {
		if attribution.IsOwned(&fss.Items[i]) {
			st.Throttled++
		}
	}
	return st, nil
}

// eventWatcher collects the Events the operator records about a policy,
// each occurrence once (a repeated Event counts again when its series
// grows).
type eventWatcher struct {
	policy string
	start  time.Time
	seen   map[string]int32
}

func newEventWatcher(policy string, start time.Time) *eventWatcher {
	return &eventWatcher{policy: policy, start: start, seen: map[string]int32{}}
}

// poll returns the occurrences not returned before, oldest first.
func (w *eventWatcher) poll(ctx context.Context, c client.Client) ([]Event, error) {
	list := &eventsv1.EventList{}
	// Events about cluster-scoped objects are recorded in "default".
	if err := c.List(ctx, list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
		return nil, err
	}
	var out []Event
	for i := range list.Items {
		e := &list.Items[i]
		if e.Regarding.Kind != "LoadShedPolicy" || e.Regarding.Name != w.policy {
			continue
		}
		count, last := int32(1), e.EventTime.Time
		if e.Series != nil {
			count, last = e.Series.Count, e.Series.LastObservedTime.Time
		}
		prev := w.seen[string(e.UID)]
		if count <= prev {
			continue
		}
		w.seen[string(e.UID)] = count
		if prev == 0 {
			out = append(out, Event{At: e.EventTime.Sub(w.start), Reason: e.Reason, Note: e.Note})
		}
		if count > 1 {
			out = append(out, Event{At: last.Sub(w.start), Reason: e.Reason, Note: e.Note, Repeat: true})
		}
	}
	slices.SortStableFunc(out, func(a, b Event) int { return int(a.At - b.At) })
	return out, nil
}

// leftovers lists what loadshed still has in the cluster besides its own
// self-protection FlowSchema: FlowSchemas and PriorityLevelConfigurations
// it owns, and any trace of a pause on the telemetry DaemonSet.
func leftovers(ctx context.Context, c client.Client) ([]string, error) {
	var out []string
	fss := &flowcontrolv1.FlowSchemaList{}
	if err := c.List(ctx, fss, client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}); err != nil {
		return nil, err
	}
	for _, fs := range fss.Items {
		if fs.Labels[v1alpha1.LabelRole] != v1alpha1.RoleSelfProtection {
			out = append(out, "FlowSchema/"+fs.Name)
		}
	}
	plcs := &flowcontrolv1.PriorityLevelConfigurationList{}
	if err := c.List(ctx, plcs, client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}); err != nil {
		return nil, err
	}
	for _, plc := range plcs.Items {
		out = append(out, "PriorityLevelConfiguration/"+plc.Name)
	}
	ds := &appsv1.DaemonSet{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: TelemetryNamespace, Name: TelemetryName}, ds); err != nil {
		if apierrors.IsNotFound(err) {
			return out, nil
		}
		return nil, err
	}
	for k := range ds.Annotations {
		if strings.HasPrefix(k, v1alpha1.GroupVersion.Group+"/") {
			out = append(out, "DaemonSet annotation "+k)
		}
	}
	if _, ok := ds.Spec.Template.Spec.NodeSelector[v1alpha1.LabelPaused]; ok {
		out = append(out, "DaemonSet node selector "+v1alpha1.LabelPaused)
	}
	return out, nil
}

// triggerWatcher reads when a policy's triggers start and stop firing from
// its status, which each evaluation writes, rather than from its Events:
// client-go's events.k8s.io recorder folds an Event into the series of the
// first like it (same reason, same policy) for six minutes and sends only
// its first repeat, so that a third TriggerFired or TriggerCleared of a
// policy within six minutes never reaches the API server.
type triggerWatcher struct {
	start time.Time
	// firing is, by trigger, whether it counted as firing at the last read.
	firing map[string]bool
}

func newTriggerWatcher(start time.Time) *triggerWatcher {
	return &triggerWatcher{start: start, firing: map[string]bool{}}
}

// note returns the triggers that started or stopped firing since the last
// read of p, as TriggerFired and TriggerCleared Events at the evaluation
// that saw it (status.lastEvaluationTime, to the second), each with the
// value and threshold it crossed, as the operator's notes say them.
func (w *triggerWatcher) note(p *v1alpha1.LoadShedPolicy) []Event {
	if p.Status.LastEvaluationTime == nil {
		return nil
	}
	at := p.Status.LastEvaluationTime.Sub(w.start)
	var out []Event
	for _, s := range p.Status.Signals {
		now := s.State == v1alpha1.TriggerFiring || s.State == v1alpha1.TriggerClearing
		if now == w.firing[s.Name] {
			continue
		}
		w.firing[s.Name] = now
		if now {
			out = append(out, Event{At: at, Reason: v1alpha1.EventTriggerFired,
				Note: fmt.Sprintf("Trigger %s fired: %s is %s, above %s", s.Name, s.Signal, s.Value, s.Threshold)})
		} else {
			out = append(out, Event{At: at, Reason: v1alpha1.EventTriggerCleared,
				Note: fmt.Sprintf("Trigger %s cleared: %s is %s, at or below %s", s.Name, s.Signal, s.Value, s.ClearThreshold)})
		}
	}
	return out
}
