//go:build tools

// Package tools records that this module pins the Helm CLI. The tool
// directive in go.mod is what `go tool` and the Makefile use.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
