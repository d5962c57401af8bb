//go:build tools

// Package tools records that this module pins Prometheus: promtool and the
// Prometheus server are built from it. The tool directives in go.mod are
// what `go tool` and the Makefile use.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
