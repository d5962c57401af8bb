package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// kube-apiserver refuses to advertise a loopback address when it publishes
// its endpoints itself (the lease endpoint reconciler, the default): "may not
// be in the loopback range", the validation every Endpoints and EndpointSlice
// address gets. So instance i listens on 127.0.0.(i+1) and advertises
// 192.0.2.(i+1), an address of TEST-NET-1 (RFC 5737: for documentation,
// never assigned, never routed), and the cluster's own dialer (Dial, and the
// proxy for other processes) turns the one into the other. Nothing dialed
// through them leaves loopback: they refuse any other address.

// maxAPIServers bounds Options.APIServers.
const maxAPIServers = 8

// loopbackIP is the address instance i listens on.
func loopbackIP(i int) net.IP { return net.IPv4(127, 0, 0, byte(i+1)) }

// advertisedIP is the address instance i publishes in default/kubernetes.
func advertisedIP(i int) net.IP { return net.IPv4(192, 0, 2, byte(i+1)) }

// freePortOnAll returns a TCP port free on each of the addresses: every
// instance listens on the same port (the endpoint reconciler publishes all
// of them with one), each on its own address.
func freePortOnAll(ips []net.IP) (int, error) {
	var lastErr error
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ips[0].String(), "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		held := []net.Listener{l}
		lastErr = nil
		for _, ip := range ips[1:] {
			o, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
			if err != nil {
				lastErr = err
				break
			}
			held = append(held, o)
		}
		for _, h := range held {
			_ = h.Close()
		}
		if lastErr == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port free on every kube-apiserver address: %w", lastErr)
}

// errOutsideLoopback is the error of a dial the cluster refuses.
var errOutsideLoopback = errors.New("the local cluster dials only loopback addresses and its kube-apiservers' advertised ones")

// loopbackFor returns the loopback address that stands for address (host
// and port): an instance's advertised address maps to the one it listens
// on, a loopback address or localhost to itself. Anything else is refused.
func (c *Cluster) loopbackFor(address string) (string, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", err
	}
	if host == "localhost" {
		return address, nil
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.IsLoopback() {
		return address, nil
	}
	if ip != nil && port == strconv.Itoa(c.port) {
		for i := range c.apiservers {
			if ip.Equal(advertisedIP(i)) {
				return net.JoinHostPort(loopbackIP(i).String(), port), nil
			}
		}
	}
	return "", fmt.Errorf("%w, not %s", errOutsideLoopback, address)
}

// Dial connects as a client inside the cluster would, to an address it
// publishes (an instance's advertised address in default/kubernetes) or to
// a loopback one; it refuses every other address, so that nothing dialed
// through it leaves the machine's loopback.
func (c *Cluster) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("the local cluster dials tcp, not %s", network)
	}
	to, err := c.loopbackFor(address)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

// WithDialer returns a copy of cfg that dials through Dial: what a client
// that follows the EndpointSlices of default/kubernetes, such as the
// operator's sampler, needs to reach each instance. (Config itself has no
// dialer: client-go shares one transport among the clients of a config
// without one, and the replay's agents rely on that.)
func (c *Cluster) WithDialer(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Dial = c.Dial
	return out
}

// ProxyURL is the URL of an HTTP proxy (CONNECT only) that dials as Dial
// does, for the clients of the cluster that run as their own process and
// follow its endpoints (the replay's operator): give it as proxy-url in
// their kubeconfig.
func (c *Cluster) ProxyURL() string { return c.proxyURL }

// proxy is the HTTP CONNECT proxy behind ProxyURL.
type proxy struct {
	dial   func(ctx context.Context, network, address string) (net.Conn, error)
	server *http.Server
	// tunnels are the connections of the open tunnels, closed with the proxy.
	mu      sync.Mutex
	tunnels map[net.Conn]struct{}
	closed  bool
}

// startProxy serves a proxy on a free loopback port and returns its URL.
func startProxy(dial func(ctx context.Context, network, address string) (net.Conn, error)) (*proxy, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	p := &proxy{dial: dial, tunnels: map[net.Conn]struct{}{}}
	p.server = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.server.Serve(l) }()
	return p, "http://" + l.Addr().String(), nil
}

// ServeHTTP opens a tunnel to the address a CONNECT names.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "this proxy only tunnels (CONNECT)", http.StatusMethodNotAllowed)
		return
	}
	upstream, err := p.dial(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = upstream.Close()
		http.Error(w, "cannot tunnel over this connection", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		_ = upstream.Close()
		return
	}
	if !p.track(conn, upstream) {
		return
	}
	defer p.untrack(conn, upstream)
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		// What the client sent after its CONNECT may already be buffered.
		_, _ = io.Copy(upstream, buf.Reader)
		_ = upstream.Close()
		close(done)
	}()
	_, _ = io.Copy(conn, upstream)
	_ = conn.Close()
	<-done
}

// track records a tunnel's connections, or closes them and returns false
// when the proxy is closed.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.tunnels[c] = struct{}{}
	}
	return true
}

func (p *proxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(p.tunnels, c)
	}
}

// close stops the proxy and ends its tunnels.
func (p *proxy) close() {
	_ = p.server.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c := range p.tunnels {
		_ = c.Close()
	}
}
