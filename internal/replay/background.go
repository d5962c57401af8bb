package replay

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SeedConfigMaps creates count ConfigMaps of about size bytes each in
// namespace (which it creates), so that cluster-wide LISTs cost the API
// server what they cost in a real cluster. Existing ones are kept.
func SeedConfigMaps(ctx context.Context, cs kubernetes.Interface, namespace string, count, size int) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	payload := strings.Repeat("x", size)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(seedWorkers)
	for i := range count {
		g.Go(func() error {
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("background-%05d", i), Labels: map[string]string{"loadshed.io/replay": "background"}},
				Data:       map[string]string{"payload": payload},
			}
			if _, err := cs.CoreV1().ConfigMaps(namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating ConfigMap %s: %w", cm.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// seedWorkers is how many ConfigMaps SeedConfigMaps creates at once.
const seedWorkers = 16
