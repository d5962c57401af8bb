package replay

import (
	"net/http"
	"sync/atomic"
)

// countThrottled counts the HTTP 429 responses a client receives, also the
// ones client-go retries by itself.
func countThrottled(n *atomic.Int64) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			if err == nil && resp.StatusCode == http.StatusTooManyRequests {
				n.Add(1)
			}
			return resp, err
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
