package operator

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/controllers"
	"github.com/loadshed/loadshed/internal/attribution"
	"github.com/loadshed/loadshed/internal/shed"
)

// CRDName is the LoadShedPolicy CustomResourceDefinition's name.
const CRDName = "loadshedpolicies.loadshed.io"

// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get,resourceNames=loadshedpolicies.loadshed.io

// selfProtection applies, when the operator starts, the FlowSchema that
// routes the operator's own requests to a level no throttle touches, so
// that it can act while the API servers are saturated (see
// shed.SelfProtection). Every replica applies it: the apply is idempotent.
//
// The FlowSchema is owned by the LoadShedPolicy CRD, so that the garbage
// collector deletes it with the CRD: an exempt schema left behind would
// exempt whoever later owns the operator's ServiceAccount name.
// `loadshed-operator uninstall` deletes it too, and a replica that restarts
// after that and before the CRD goes applies it again, owned.
type selfProtection struct {
	client client.Client
	// reader reads the CRD from the API server, not through a cache.
	reader client.Reader
	sa     attribution.ServiceAccount
}

// NeedLeaderElection is false: a standby replica needs its requests through too.
func (s *selfProtection) NeedLeaderElection() bool { return false }

// Start applies the FlowSchema, retrying with backoff until it succeeds or
// the operator stops.
func (s *selfProtection) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("self-protection")
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: time.Minute}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		fs := shed.SelfProtection(s.sa)
		if owner := s.owner(ctx); owner != nil {
			fs.WithOwnerReferences(owner)
		}
		err := s.client.Apply(ctx, fs, client.FieldOwner(controllers.FieldOwner), client.ForceOwnership)
		if err != nil {
			log.Error(err, "Failed to apply the self-protection FlowSchema, will retry")
			return false, nil
		}
		log.Info("Applied the self-protection FlowSchema", "flowSchema", shed.SelfProtectionName, "serviceAccount", s.sa.String())
		return true, nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// owner is the CRD as the FlowSchema's owner; nil, and logged, when it cannot
// be read (e.g. the CRD was installed under another name): the FlowSchema
// is then applied without one, and only uninstall deletes it.
func (s *selfProtection) owner(ctx context.Context) *metav1ac.OwnerReferenceApplyConfiguration {
	gvk := schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}
	crd := &metav1.PartialObjectMetadata{}
	crd.SetGroupVersionKind(gvk)
	if err := s.reader.Get(ctx, client.ObjectKey{Name: CRDName}, crd); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to read the LoadShedPolicy CRD: the self-protection FlowSchema gets no owner",
			"crd", CRDName)
		return nil
	}
	apiVersion, kind := gvk.ToAPIVersionAndKind()
	return metav1ac.OwnerReference().WithAPIVersion(apiVersion).WithKind(kind).WithName(crd.Name).WithUID(crd.UID)
}
