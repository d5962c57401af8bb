//go:build tools

// Package tools records that this module pins golangci-lint. The tool
// directive in go.mod is what `go tool` and the Makefile use.
package tools

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
)
