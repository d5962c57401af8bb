package replay

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/promserver"
)

// PrometheusSamplePolicyPath is the sample policy with the Prometheus
// source, relative to the repository's root: the same policy as
// SamplePolicyPath's, reading its signals from Prometheus.
var PrometheusSamplePolicyPath = filepath.Join("config", "samples", "loadshed_v1alpha1_loadshedpolicy_prometheus.yaml")

// PrometheusSamplePolicy reads the Prometheus-sourced sample policy from
// the checkout at root. Its URL and CA are a cluster's; a scenario with
// Config.Prometheus points them at its own Prometheus.
func PrometheusSamplePolicy(root string) (*v1alpha1.LoadShedPolicy, error) {
	return readPolicy(root, PrometheusSamplePolicyPath)
}

// Prometheus says how a scenario runs its Prometheus.
type Prometheus struct {
	// Binary is the Prometheus server (bin/prometheus-<version>, from
	// `make prometheus`).
	Binary string
	// ScrapeInterval is how often it scrapes every kube-apiserver;
	// DefaultPrometheusScrapeInterval when zero.
	ScrapeInterval time.Duration
}

// DefaultPrometheusScrapeInterval is how often a scenario's Prometheus
// scrapes every kube-apiserver by default, its scrape timeout too. Each
// rate window of the sample policy made six times faster (10s) holds three
// scrapes or more, two when the newest is still being taken as the operator
// queries; a scrape that times out reads as slower (3s) than the sample's
// scrape-latency threshold (2s), as the operator's own scrapes (5s) do; and
// each scrape of a flooded kube-apiserver's large /metrics costs it CPU the
// flood wants, as the operator's own scrapes do.
const DefaultPrometheusScrapeInterval = 3 * time.Second

// PrometheusCASecret names the Secret, in the operator's namespace, that
// holds the CA of the scenario's Prometheus under PrometheusCAKey: what the
// policies with the Prometheus source name as source.prometheus.caSecretRef.
const (
	PrometheusCASecret = "prometheus-ca"
	PrometheusCAKey    = "ca.crt"
)

// startPrometheus starts the scenario's Prometheus, scraping every
// kube-apiserver of its cluster, and waits until it has scraped each. It
// outlives Run (Result.Prometheus), unless Run fails.
func (r *runner) startPrometheus(ctx context.Context) error {
	p := r.cfg.Prometheus
	interval := p.ScrapeInterval
	if interval <= 0 {
		interval = DefaultPrometheusScrapeInterval
	}
	s, err := promserver.StartForCluster(ctx, r.cluster, promserver.Options{Binary: p.Binary, Dir: r.cfg.Dir,
		ScrapeInterval: interval})
	if err != nil {
		return fmt.Errorf("starting Prometheus: %w", err)
	}
	r.res.Prometheus = s
	r.say("Prometheus is up at %s, scraping %d kube-apiservers every %v", s.URL, r.cluster.APIServers(), interval)
	return nil
}

// forThisCluster returns a copy of p to create: with the Prometheus source,
// its URL and CA are the scenario's Prometheus's (the CA in
// PrometheusCASecret, created in the operator's namespace when missing);
// the rest is p's.
func (r *runner) forThisCluster(ctx context.Context, p *v1alpha1.LoadShedPolicy) (*v1alpha1.LoadShedPolicy, error) {
	out := p.DeepCopy()
	if out.Spec.Source.Type != v1alpha1.SourcePrometheus {
		return out, nil
	}
	prom := r.res.Prometheus
	if prom == nil {
		return nil, fmt.Errorf("policy %s reads Prometheus, but the scenario runs none (Config.Prometheus)", p.Name)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: OperatorNamespace, Name: PrometheusCASecret},
		Data: map[string][]byte{PrometheusCAKey: prom.CA}}
	if err := r.admin.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating the secret of Prometheus's CA: %w", err)
	}
	src := &v1alpha1.PrometheusSource{}
	if out.Spec.Source.Prometheus != nil {
		src = out.Spec.Source.Prometheus
	}
	src.URL = prom.URL
	src.CASecretRef = &v1alpha1.SecretKeyReference{Name: PrometheusCASecret, Key: PrometheusCAKey}
	out.Spec.Source.Prometheus = src
	return out, nil
}

// readsItsSignals says whether a policy reads its signals: it is Ready and
// its metrics are available; or, with the Prometheus source, every signal
// has a value or Prometheus answered that its expression matched no series
// yet (a counter Kubernetes exposes only once it counts, such as APF's
// rejections before the first one: until then that trigger is Unknown).
func readsItsSignals(p *v1alpha1.LoadShedPolicy) bool {
	if !meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionReady) {
		return false
	}
	if meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.ConditionMetricsAvailable) {
		return true
	}
	if p.Spec.Source.Type != v1alpha1.SourcePrometheus || len(p.Status.Signals) == 0 {
		return false
	}
	for _, s := range p.Status.Signals {
		if s.Value == "" && !strings.HasPrefix(s.Message, "no data") {
			return false
		}
	}
	return true
}

// createPolicies creates the policy and the shadow, if any, for this
// cluster, and waits until each reads its signals.
func (r *runner) createPolicies(ctx context.Context) error {
	policies := []*v1alpha1.LoadShedPolicy{r.cfg.Policy}
	if r.cfg.Shadow != nil {
		policies = append(policies, r.cfg.Shadow)
	}
	for _, p := range policies {
		obj, err := r.forThisCluster(ctx, p)
		if err != nil {
			return err
		}
		if err := r.admin.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating policy %s: %w", p.Name, err)
		}
	}
	for _, p := range policies {
		err := r.waitFor(ctx, fmt.Sprintf("policy %s to read its signals", p.Name), 2*time.Minute, func(ctx context.Context) (bool, error) {
			got := &v1alpha1.LoadShedPolicy{}
			if err := r.admin.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
				return false, nil
			}
			return readsItsSignals(got), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
