package promserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// Who Prometheus is in a local cluster, and what it scrapes there.
const (
	// Namespace and ServiceAccount are Prometheus's.
	Namespace      = "monitoring"
	ServiceAccount = "prometheus"
	// JobAPIServer is the job that scrapes every kube-apiserver: the
	// catalogue's scrapeLatency selects job=~".*apiserver.*".
	JobAPIServer = "apiserver"
	// apiServerName is the name the kube-apiservers' serving certificate is
	// verified for, as the operator's sampler does: the Service's, which
	// every instance's certificate carries whatever address it is reached at.
	apiServerName = "kubernetes.default.svc"
	// metricsReader names the ClusterRole (and its binding) that lets
	// Prometheus GET /metrics, and the FlowSchema of its scrapes.
	metricsReader = "prometheus-metrics"
	// metricsPrecedence is the FlowSchema's matchingPrecedence: before
	// Kubernetes' own service-accounts (9000).
	metricsPrecedence = 500
)

// Cluster is what Prometheus needs of a local cluster: how many
// kube-apiservers it runs, an admin config that reaches each at the
// loopback address it listens on, and the address each publishes.
// localcluster.Cluster and testenv.Env have it.
type Cluster interface {
	APIServers() int
	APIServerConfig(i int) *rest.Config
	AdvertisedURL(i int) string
}

// StartForCluster starts Prometheus scraping every kube-apiserver of the
// cluster, job JobAPIServer, as a real Prometheus in a cluster does: as its
// own ServiceAccount (Namespace/ServiceAccount, with a TokenRequest token
// valid for a day) allowed to GET /metrics, verifying each instance's
// certificate for kubernetes.default.svc against the cluster's CA. Each
// instance is dialed at the loopback address it listens on and labelled
// instance="<the address it publishes in default/kubernetes>", which is how
// the operator's sampler names it. A kube-apiserver stopped is up=0 until it
// answers again on its address.
//
// Its scrapes are routed to the exempt priority level by a FlowSchema (as
// OpenShift's openshift-monitoring-metrics does for its Prometheus): on the
// workload-low level, where ServiceAccounts go, a flood of other
// ServiceAccounts would queue and reject them, and the signals would be
// missing exactly while they matter. opts.Jobs is replaced; the other
// options are kept. It waits until every instance has been scraped once.
func StartForCluster(ctx context.Context, c Cluster, opts Options) (*Server, error) {
	admin := c.APIServerConfig(0)
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	if err := grantMetrics(ctx, cs); err != nil {
		return nil, err
	}
	tr, err := cs.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for %s/%s: %w", Namespace, ServiceAccount, err)
	}
	job := Job{Name: JobAPIServer, CA: admin.CAData, ServerName: apiServerName, Token: tr.Status.Token}
	for i := range c.APIServers() {
		listen, err := hostPort(c.APIServerConfig(i).Host)
		if err != nil {
			return nil, err
		}
		published, err := hostPort(c.AdvertisedURL(i))
		if err != nil {
			return nil, err
		}
		job.Targets = append(job.Targets, Target{Address: listen, Instance: published})
	}
	opts.Jobs = []Job{job}
	s, err := Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	// The first scrape of each comes within an interval of the start.
	if err := s.WaitForTargets(ctx, JobAPIServer, len(job.Targets), waitForTargets(opts)); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitForTargets is how long StartForCluster waits for every instance's
// first scrape: a minute, and at least a few intervals.
func waitForTargets(opts Options) time.Duration {
	return max(time.Minute, 5*opts.ScrapeInterval)
}

// hostPort is the host:port of a URL.
func hostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", fmt.Errorf("%s has no port: %w", raw, err)
	}
	return u.Host, nil
}

// grantMetrics creates Prometheus's namespace and ServiceAccount, lets it
// GET /metrics, and routes those requests to the exempt priority level;
// what exists already is kept.
func grantMetrics(ctx context.Context, cs kubernetes.Interface) error {
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: Namespace, Name: ServiceAccount}
	creates := []func() error{
		func() error {
			_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.CoreV1().ServiceAccounts(Namespace).Create(ctx,
				&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: ServiceAccount}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: metricsReader},
				Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: metricsReader}, Subjects: []rbacv1.Subject{subject},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReader}}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := cs.FlowcontrolV1().FlowSchemas().Create(ctx, metricsFlowSchema(), metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range creates {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("granting Prometheus /metrics: %w", err)
		}
	}
	return nil
}

// metricsFlowSchema routes Prometheus's GETs of /metrics to the exempt
// priority level.
func metricsFlowSchema() *flowcontrolv1.FlowSchema {
	return &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: metricsReader},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{
				Name: flowcontrolv1.PriorityLevelConfigurationNameExempt},
			MatchingPrecedence: metricsPrecedence,
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
					ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: Namespace, Name: ServiceAccount}}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics"}}},
			}},
		},
	}
}
