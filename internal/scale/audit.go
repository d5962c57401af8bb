package scale

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// flowSchemaListKind lists FlowSchemas as metadata.
var flowSchemaListKind = schema.GroupVersionKind{Group: "flowcontrol.apiserver.k8s.io", Version: "v1", Kind: "FlowSchemaList"}

// auditPolicy logs every request of every user once, when received, with
// its verb and object reference only, and the bodies of policies' status
// patches, to see what each changed; countRequests keeps the operator's.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["ResponseStarted", "ResponseComplete", "Panic"]
rules:
- level: Request
  resources:
  - group: loadshed.io
    resources: ["loadshedpolicies/status"]
- level: Metadata
`

// writeAuditPolicy writes the audit policy into dir and returns its path.
func writeAuditPolicy(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "audit-policy.yaml")
	return path, os.WriteFile(path, []byte(auditPolicy), 0o644)
}

// RequestRate is how often the operator sent one kind of request.
type RequestRate struct {
	// Verb is the request's verb (get, list, watch, create, update,
	// patch, delete); Resource its resource, with "/subresource", or its
	// path for a non-resource request.
	Verb, Resource string
	// PerMinute is how many were sent per minute.
	PerMinute float64
}

// auditEvent is what countRequests reads of an audit event.
type auditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	Received time.Time `json:"requestReceivedTimestamp"`
}

// countRequests reads an audit log and counts user's requests received in
// [from, to), by verb and resource.
func countRequests(path, user string, from, to time.Time) ([]RequestRate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	type key struct{ verb, resource string }
	counts := map[key]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("reading the audit log: %w", err)
		}
		if ev.User.Username != user || ev.Received.Before(from) || !ev.Received.Before(to) {
			continue
		}
		path, _, _ := strings.Cut(ev.RequestURI, "?")
		k := key{verb: ev.Verb, resource: path}
		if ev.ObjectRef != nil {
			k.resource = ev.ObjectRef.Resource
			if ev.ObjectRef.Subresource != "" {
				k.resource += "/" + ev.ObjectRef.Subresource
			}
		}
		counts[k]++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	minutes := to.Sub(from).Minutes()
	out := make([]RequestRate, 0, len(counts))
	for k, n := range counts {
		out = append(out, RequestRate{Verb: k.verb, Resource: k.resource, PerMinute: float64(n) / minutes})
	}
	slices.SortFunc(out, func(a, b RequestRate) int {
		return cmp.Or(cmp.Compare(b.PerMinute, a.PerMinute), cmp.Compare(a.Verb, b.Verb), cmp.Compare(a.Resource, b.Resource))
	})
	return out, nil
}
