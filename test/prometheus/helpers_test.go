package prometheus

import (
	"net/url"
	"testing"
)

// hostOf is a URL's host:port: an instance label.
func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
