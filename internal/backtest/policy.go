package backtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/loadshed/loadshed/api/v1alpha1"
	"github.com/loadshed/loadshed/internal/policy"
)

// ReadPolicy reads a LoadShedPolicy from YAML or JSON (one document, as
// kubectl apply -f takes it or kubectl get -o yaml writes it) and resolves
// its spec as the operator does (policy.Resolve). Unknown fields are
// errors: a misspelt field would otherwise be back-tested as its default.
// What only the API server checks (the schema's bounds, its CEL rules) is
// not checked here.
func ReadPolicy(data []byte) (*v1alpha1.LoadShedPolicy, *policy.Config, error) {
	docs, err := documents(data)
	if err != nil {
		return nil, nil, err
	}
	switch len(docs) {
	case 0:
		return nil, nil, errors.New("the file holds no document")
	case 1:
	default:
		return nil, nil, fmt.Errorf("the file holds %d documents; give it the one LoadShedPolicy to back-test", len(docs))
	}
	obj := &v1alpha1.LoadShedPolicy{}
	if err := yaml.UnmarshalStrict(docs[0], obj); err != nil {
		return nil, nil, fmt.Errorf("reading the LoadShedPolicy: %w", err)
	}
	if obj.Kind != "LoadShedPolicy" || obj.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, nil, fmt.Errorf("the file holds a %s (%s), not a LoadShedPolicy (%s)", kindOf(obj.Kind), obj.APIVersion,
			v1alpha1.GroupVersion)
	}
	if obj.Name == "" {
		return nil, nil, errors.New("the LoadShedPolicy has no metadata.name")
	}
	cfg, err := policy.Resolve(&obj.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("LoadShedPolicy %s is not valid: %w", obj.Name, err)
	}
	return obj, cfg, nil
}

// documents splits YAML into its documents, leaving out empty ones.
func documents(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the YAML: %w", err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, fmt.Errorf("reading the YAML: %w", err)
		}
		if v != nil {
			out = append(out, doc)
		}
	}
}

func kindOf(kind string) string {
	if kind == "" {
		return "document without a kind"
	}
	return kind
}
