package localcluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func TestTheDialerMapsAdvertisedAddressesToLoopbackAndRefusesTheRest(t *testing.T) {
	c := &Cluster{apiservers: make([]*envtest.APIServer, 2), port: 6443}
	for _, tc := range []struct{ address, want string }{
		{"192.0.2.1:6443", "127.0.0.1:6443"},
		{"192.0.2.2:6443", "127.0.0.2:6443"},
		{"127.0.0.1:43210", "127.0.0.1:43210"},
		{"127.0.0.7:6443", "127.0.0.7:6443"},
		{"localhost:6443", "localhost:6443"},
		{"[::1]:6443", "[::1]:6443"},
		{"192.0.2.3:6443", ""}, // no third instance
		{"192.0.2.1:443", ""},  // not the cluster's port
		{"10.0.0.1:443", ""},   // the kubernetes Service's ClusterIP
		{"203.0.113.5:6443", ""},
		{"example.com:443", ""},
	} {
		got, err := c.loopbackFor(tc.address)
		switch {
		case tc.want == "" && !errors.Is(err, errOutsideLoopback):
			t.Errorf("%s is dialed as %q (%v), want it refused", tc.address, got, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%s is dialed as %q (%v), want %s", tc.address, got, err, tc.want)
		}
	}
}

// endpointURLs returns the base URL of every address default/kubernetes's
// EndpointSlices list, as the operator's sampler builds them.
func endpointURLs(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	list, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx,
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return nil, err
	}
	var urls []string
	for _, s := range list.Items {
		for _, p := range s.Ports {
			for _, ep := range s.Endpoints {
				for _, a := range ep.Addresses {
					urls = append(urls, "https://"+net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	sort.Strings(urls)
	return urls, nil
}

// TestEachAPIServerIsPublishedAtAnAddressThatReachesIt: with two
// kube-apiservers on one etcd, default/kubernetes lists both, each at an
// address that the cluster's dialer (and its proxy) maps to the loopback
// one it listens on, where it answers /readyz with the serving certificate
// verified as kubernetes.default.svc; a token issued by one works against
// the other; and a stopped instance leaves the list while the other stays.
func TestEachAPIServerIsPublishedAtAnAddressThatReachesIt(t *testing.T) {
	c, err := Start(Options{Assets: assets(t), APIServers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	listed := func(want ...string) {
		t.Helper()
		start := time.Now()
		var got []string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err = endpointURLs(ctx, cs)
			return err == nil && slices.Equal(got, want), nil
		})
		if err != nil {
			t.Fatalf("default/kubernetes lists %v, want %v", got, want)
		}
		t.Logf("default/kubernetes lists %v after %v", want, time.Since(start).Round(10*time.Millisecond))
	}
	both := []string{c.AdvertisedURL(0), c.AdvertisedURL(1)}
	listed(both...)
	for _, u := range both {
		parsed, _ := url.Parse(u)
		to, err := c.loopbackFor(parsed.Host)
		if host, _, _ := net.SplitHostPort(to); err != nil || !net.ParseIP(host).IsLoopback() {
			t.Errorf("%s is dialed at %q (%v), want a loopback address", u, to, err)
		}
	}

	// As the operator's sampler reaches them: through Config's dialer, and
	// through the proxy for a process of its own.
	direct := c.WithDialer(c.Config)
	direct.ServerName = "kubernetes.default.svc"
	proxied := rest.CopyConfig(direct)
	proxied.Dial = nil
	proxyURL, _ := url.Parse(c.ProxyURL())
	proxied.Proxy = http.ProxyURL(proxyURL)
	for name, cfg := range map[string]*rest.Config{"dialer": direct, "proxy": proxied} {
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range both {
			resp, err := hc.Get(u + "/readyz")
			if err != nil {
				t.Errorf("%s/readyz through the %s: %v", u, name, err)
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s/readyz through the %s: HTTP %d", u, name, resp.StatusCode)
			}
		}
		if resp, err := hc.Get("https://10.0.0.1:443/readyz"); err == nil {
			_ = resp.Body.Close()
			t.Errorf("the kubernetes Service's ClusterIP was reached through the %s", name)
		}
	}

	// A token issued by the first instance, used against the second.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "either"}}
	if _, err := cs.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	second := rest.AnonymousClientConfig(c.APIServerConfig(1))
	second.BearerToken = tr.Status.Token
	review, err := kubernetes.NewForConfigOrDie(second).AuthenticationV1().SelfSubjectReviews().Create(ctx,
		&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the first instance's token against the second: %v", err)
	}
	if !strings.HasSuffix(review.Status.UserInfo.Username, ":default:either") {
		t.Errorf("the token authenticates as %q", review.Status.UserInfo.Username)
	}

	stopped, err := c.StopAPIServer(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the second kube-apiserver %s", stopped)
	listed(c.AdvertisedURL(0))
	if err := c.StartAPIServer(1); err != nil {
		t.Fatal(err)
	}
	listed(both...)
}
