package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/localcluster"
)

// A Burst is heavy but legitimate load, played instead of the flood: a
// policy that acts on it makes a mistake (a false throttle or pause).
type Burst interface {
	// Name names the burst and its scenario.
	Name() string
	// Prepare adds what the burst needs to the world, and waits until it
	// is ready, before the timeline starts.
	Prepare(ctx context.Context, env *BurstEnv) error
	// Run is the burst. It returns when it is done, or when ctx is.
	Run(ctx context.Context, env *BurstEnv) error
	// Describe says what Run does, for the timeline.
	Describe(env *BurstEnv) string
}

// BurstEnv is what a burst works with.
type BurstEnv struct {
	// Admin is a cluster admin; Client the same with loadshed's scheme.
	Admin  kubernetes.Interface
	Client client.Client
	// Base is the API server's address and CA, for the clients of the
	// burst's own ServiceAccounts.
	Base *rest.Config
	// Cluster restarts the control plane's processes.
	Cluster *localcluster.Cluster
	// Nodes is how many Nodes the cluster has (node-000, node-001, ...).
	Nodes int
	// For is how long a burst that loops keeps at it.
	For time.Duration
	// Say reports progress.
	Say func(format string, args ...any)
}

// The benign bursts, by name.
const (
	BurstDrain            = "drain"
	BurstRollout          = "rollout"
	BurstListLoop         = "list-loop"
	BurstRelist           = "relist"
	BurstAPIServerRestart = "apiserver-restart"
)

// BurstNames lists the benign bursts.
func BurstNames() []string {
	return []string{BurstDrain, BurstRollout, BurstListLoop, BurstRelist, BurstAPIServerRestart}
}

// NewBurst returns the named benign burst.
func NewBurst(name string) (Burst, error) {
	switch name {
	case BurstDrain:
		return drainBurst{fraction: 0.5, parallel: drainParallel}, nil
	case BurstRollout:
		return rolloutBurst{}, nil
	case BurstListLoop:
		return listLoopBurst{}, nil
	case BurstRelist:
		return relistBurst{}, nil
	case BurstAPIServerRestart:
		return restartBurst{}, nil
	}
	return nil, fmt.Errorf("unknown burst %q: want one of %s", name, strings.Join(BurstNames(), ", "))
}

// serviceAccountWith is a ServiceAccount (and its namespace) bound to a
// ClusterRole of its own with rules.
func serviceAccountWith(namespace, name string, rules ...rbacv1.PolicyRule) []client.Object {
	role := "replay:" + namespace + ":" + name
	return []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role}, Rules: rules},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}},
	}
}

// listLoopBurst is an admin's or a CI job's `kubectl get pods -A` in a
// tight loop, as the ServiceAccount ci/runner: LISTs of every pod in
// chunks of 500, as tables, one after the other, for BurstEnv.For.
type listLoopBurst struct{}

const (
	ciNamespace = "ci"
	ciRunner    = "runner"
	// kubectlChunkSize is kubectl's default --chunk-size.
	kubectlChunkSize = "500"
	// tableAccept is what `kubectl get` asks for.
	tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)

func (listLoopBurst) Name() string { return BurstListLoop }

func (listLoopBurst) Describe(env *BurstEnv) string {
	return fmt.Sprintf("%s/%s runs `kubectl get pods -A` in a tight loop for %v", ciNamespace, ciRunner, env.For)
}

func (listLoopBurst) Prepare(ctx context.Context, env *BurstEnv) error {
	return createAll(ctx, env.Client, serviceAccountWith(ciNamespace, ciRunner,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{verbList}}))
}

func (listLoopBurst) Run(ctx context.Context, env *BurstEnv) error {
	cs, err := clientAs(ctx, env.Admin, env.Base, ciNamespace, ciRunner)
	if err != nil {
		return err
	}
	end := time.Now().Add(env.For)
	loops, failed := 0, 0
	for ctx.Err() == nil && time.Now().Before(end) {
		loops++
		if err := getPodsTable(ctx, cs.CoreV1().RESTClient()); err != nil && ctx.Err() == nil {
			failed++
		}
	}
	env.Say("%s: %d rounds of `kubectl get pods -A`, %d failed", BurstListLoop, loops, failed)
	return nil
}

// getPodsTable lists every pod as `kubectl get pods -A` does: as a table,
// 500 at a time.
func getPodsTable(ctx context.Context, rc rest.Interface) error {
	cont := ""
	for {
		req := rc.Get().AbsPath("/api/v1/pods").Param("limit", kubectlChunkSize).SetHeader("Accept", tableAccept)
		if cont != "" {
			req = req.Param("continue", cont)
		}
		raw, err := req.Do(ctx).Raw()
		if err != nil {
			return err
		}
		var page metav1.Table
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("reading a table of pods: %w", err)
		}
		if cont = page.Continue; cont == "" {
			return nil
		}
	}
}

// relistBurst is a controller restart: kube-controller-manager is
// restarted (a real process restart, and its informers list everything
// they watch again), and a controller-like client, ops/controller, lists
// every kind the API serves at once, as informers starting would.
type relistBurst struct{}

const (
	opsNamespace  = "ops"
	opsController = "controller"
)

func (relistBurst) Name() string { return BurstRelist }

func (relistBurst) Describe(*BurstEnv) string {
	return fmt.Sprintf("kube-controller-manager restarts, and %s/%s lists every kind at once", opsNamespace, opsController)
}

func (relistBurst) Prepare(ctx context.Context, env *BurstEnv) error {
	return createAll(ctx, env.Client, serviceAccountWith(opsNamespace, opsController,
		rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{verbList}}))
}

func (relistBurst) Run(ctx context.Context, env *BurstEnv) error {
	if err := env.Cluster.Restart("kube-controller-manager"); err != nil {
		return err
	}
	cs, err := clientAs(ctx, env.Admin, env.Base, opsNamespace, opsController)
	if err != nil {
		return err
	}
	paths, err := listPaths(cs.Discovery())
	if err != nil {
		return err
	}
	var failed atomic.Int64
	var wg sync.WaitGroup
	for _, path := range paths {
		wg.Go(func() {
			// An informer's first LIST: resourceVersion 0, from the watch
			// cache.
			body, err := cs.CoreV1().RESTClient().Get().AbsPath(path).Param("resourceVersion", "0").
				SetHeader("Accept", "application/vnd.kubernetes.protobuf,application/json").Stream(ctx)
			if err != nil {
				failed.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, body)
			_ = body.Close()
		})
	}
	wg.Wait()
	env.Say("%s: listed %d kinds, %d failed", BurstRelist, len(paths), failed.Load())
	return nil
}

// listPaths are the cluster-wide LIST paths of every kind the API server
// serves and can list, from discovery.
func listPaths(d discovery.DiscoveryInterface) ([]string, error) {
	lists, err := discovery.ServerPreferredResources(d)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("discovering the API's kinds: %w", err)
	}
	var paths []string
	for _, l := range discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{verbList}}, lists) {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		prefix := "/apis/" + gv.String()
		if gv.Group == "" {
			prefix = "/api/" + gv.Version
		}
		for _, res := range l.APIResources {
			if !strings.Contains(res.Name, "/") {
				paths = append(paths, prefix+"/"+res.Name)
			}
		}
	}
	slices.Sort(paths)
	return paths, nil
}

// restartBurst restarts kube-apiserver (same port, same etcd) once: every
// client loses its connections and watches and relists, and the API
// server's metrics, which loadshed reads, start again from zero.
type restartBurst struct{}

func (restartBurst) Name() string { return BurstAPIServerRestart }

func (restartBurst) Describe(*BurstEnv) string {
	return "kube-apiserver restarts: every client relists, its metrics start from zero"
}

func (restartBurst) Prepare(context.Context, *BurstEnv) error { return nil }

func (restartBurst) Run(_ context.Context, env *BurstEnv) error {
	began := time.Now()
	stopped, err := env.Cluster.RestartAPIServer()
	if err != nil {
		return err
	}
	env.Say("%s: kube-apiserver %s; it answered again %v after the restart began", BurstAPIServerRestart, stopped,
		time.Since(began).Round(100*time.Millisecond))
	return nil
}
