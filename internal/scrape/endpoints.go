package scrape

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// forgetAfter is how long an instance that default/kubernetes no longer
// lists counts as missing, unless as many instances as before are listed
// again (it was replaced): twice kubelet's longest crash-loop back-off
// (five minutes), so that an API server that crash-loops, listed only
// between its crashes, is never forgotten. An instance removed for good
// leaves the policies partially blind for that long.
const forgetAfter = 10 * time.Minute

// listedInstances remembers which instances default/kubernetes listed.
type listedInstances struct {
	// last is when each instance was last listed.
	last map[string]time.Time
	// most is the most instances listed at once, last at mostAt, within
	// forgetAfter.
	most   int
	mostAt time.Time
}

// missing records the instances listed at now, and returns those that are
// not listed any more and count as missing, with when each was last
// listed: while fewer instances are listed than were at once within
// forgetAfter, as many as are lacking, those listed last. Fewer listed
// than before, with none of them new, is an instance down (stopping, a
// kube-apiserver takes itself out of the list; crashed, it is taken out
// once its lease expires); as many, with a new one among them, is an
// instance replaced.
func (l *listedInstances) missing(now time.Time, listed []string) map[string]time.Time {
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	for _, u := range listed {
		l.last[u] = now
	}
	for u, at := range l.last {
		if now.Sub(at) > forgetAfter {
			delete(l.last, u)
		}
	}
	if len(listed) >= l.most || now.Sub(l.mostAt) > forgetAfter {
		l.most, l.mostAt = len(listed), now
	}
	lacking := l.most - len(listed)
	if lacking <= 0 {
		return nil
	}
	var gone []string
	for u := range l.last {
		if !slices.Contains(listed, u) {
			gone = append(gone, u)
		}
	}
	slices.SortFunc(gone, func(a, b string) int {
		return cmp.Or(l.last[b].Compare(l.last[a]), strings.Compare(a, b))
	})
	out := map[string]time.Time{}
	for _, u := range gone[:min(lacking, len(gone))] {
		out[u] = l.last[u]
	}
	return out
}

// endpoints returns the base URL of every ready kube-apiserver instance,
// from the EndpointSlices of default/kubernetes (the operator's reader is
// its cache, so they are watched, not listed).
func (s *Scraper) endpoints(ctx context.Context) ([]string, error) {
	list := &discoveryv1.EndpointSliceList{}
	if err := s.reader.List(ctx, list, client.InNamespace(metav1.NamespaceDefault),
		client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		return nil, fmt.Errorf("listing the EndpointSlices of default/kubernetes: %w", err)
	}
	return endpointURLs(list.Items), nil
}

// endpointURLs returns the base URL of every ready endpoint address of the
// slices, on their https port.
func endpointURLs(list []discoveryv1.EndpointSlice) []string {
	var urls []string
	for _, slice := range list {
		port := int32(0)
		for _, p := range slice.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				urls = append(urls, "https://"+net.JoinHostPort(addr, strconv.Itoa(int(port))))
			}
		}
	}
	return urls
}
