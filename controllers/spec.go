package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/metrics/promsource"
	"github.com/loadshed/loadshed/internal/policy"
	"github.com/loadshed/loadshed/internal/sampler"
	"github.com/loadshed/loadshed/internal/signals"
)

// resolvedSpec is a policy's spec as one loop uses it: resolved into plain
// values, with the Secrets it refers to read (each once), and what it asks
// of the sampler.
type resolvedSpec struct {
	config *policy.Config
	// interest is what the sampler reads for the policy.
	interest sampler.Interest
	// queries are the triggers' queries on scraped rounds, by trigger name
	// (none when the source is Prometheus).
	queries map[string]signals.Query
}

// readSpec resolves the spec. Its errors are specErrors, except a failure
// to read a Secret that exists. The config is returned with a Secret's
// error, so that status can say what the policy is.
func (r *LoadShedPolicyReconciler) readSpec(ctx context.Context, obj *v1alpha1.LoadShedPolicy) (*resolvedSpec, error) {
	cfg, err := policy.Resolve(&obj.Spec)
	if err != nil {
		return nil, &specError{reason: v1alpha1.ReasonInvalidSpec, err: err}
	}
	spec := &resolvedSpec{config: cfg}
	var prom *promsource.Config
	if cfg.Source.Prometheus != nil {
		// Checked whatever the source's type: a reference is kept valid
		// before the source is switched to it.
		if prom, err = r.prometheusConfig(ctx, cfg.Source.Prometheus); err != nil {
			return spec, err
		}
	}
	if cfg.Source.Type != v1alpha1.SourcePrometheus {
		prom = nil
	}
	spec.interest, spec.queries, err = samplerInterest(cfg, prom)
	return spec, err
}

// samplerInterest is what a policy asks of the sampler (see
// sampler.InterestOf); a trigger whose query cannot be built is an error in
// the spec.
func samplerInterest(cfg *policy.Config, prom *promsource.Config) (sampler.Interest, map[string]signals.Query, error) {
	in, queries, err := sampler.InterestOf(cfg, prom)
	if err != nil {
		return in, nil, &specError{reason: v1alpha1.ReasonInvalidSpec, err: err}
	}
	return in, queries, nil
}

// prometheusConfig reads the Prometheus source's Secrets from the cache.
func (r *LoadShedPolicyReconciler) prometheusConfig(ctx context.Context, p *policy.Prometheus) (*promsource.Config, error) {
	pc := &promsource.Config{URL: p.URL, Timeout: p.Timeout}
	if p.CASecret != nil {
		v, err := r.secretValue(ctx, p.CASecret)
		if err != nil {
			return nil, err
		}
		pc.CAPEM = v
	}
	if p.BearerTokenSecret != nil {
		v, err := r.secretValue(ctx, p.BearerTokenSecret)
		if err != nil {
			return nil, err
		}
		pc.BearerToken = string(v)
	}
	return pc, nil
}

// secretValue reads one key of a Secret in the operator's namespace. A
// missing Secret or key is a specError that is retried: it may appear.
func (r *LoadShedPolicyReconciler) secretValue(ctx context.Context, ref *policy.SecretKey) ([]byte, error) {
	secret := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: ref.Name}, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, &specError{reason: v1alpha1.ReasonSecretNotFound, retry: true,
			err: fmt.Errorf("secret %s/%s not found", r.Namespace, ref.Name)}
	case err != nil:
		return nil, fmt.Errorf("reading secret %s/%s: %w", r.Namespace, ref.Name, err)
	}
	v, ok := secret.Data[ref.Key]
	if !ok {
		return nil, &specError{reason: v1alpha1.ReasonSecretNotFound, retry: true,
			err: fmt.Errorf("secret %s/%s has no key %q", r.Namespace, ref.Name, ref.Key)}
	}
	return v, nil
}
