package kubectl

import (
	"fmt"
	"io"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loadshed/loadshed/internal/scrape"
)

// apiServerReader returns what reads every kube-apiserver as the operator's
// sampler does (package scrape), finding them through the EndpointSlices
// of default/kubernetes with a client, and that client.
func apiServerReader(o *Options) (*scrape.Scraper, client.Client, error) {
	cfg, err := o.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := o.Client()
	if err != nil {
		return nil, nil, err
	}
	sc, err := scrape.New(cfg, c)
	if err != nil {
		return nil, nil, err
	}
	return sc, c, nil
}

// warnFallback says on w when a round could not read the instances one by
// one, and what that means for rates.
func warnFallback(w io.Writer, st scrape.Status) {
	if st.Fallback == "" {
		return
	}
	_, _ = fmt.Fprintf(w, "warning: %s. Behind a load balancer each request may reach another API server, "+
		"so rates mix them; give access to the EndpointSlices of default/kubernetes and to the addresses they list.\n",
		st.Fallback)
}
