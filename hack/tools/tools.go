//go:build tools

// Package tools records the developer tools that this module pins. The tool
// directives in go.mod are what `go tool` and the Makefile use; these imports
// only keep the pins visible to older tooling and to `go mod tidy`.
//
// golangci-lint is pinned in its own module, ./golangci-lint.
package tools

import (
	_ "sigs.k8s.io/controller-runtime/tools/setup-envtest"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
