//go:build tools

// Package tools records that this module pins Prometheus: promtool now, and
// the Prometheus server later, are built from it. The tool directive in
// go.mod is what `go tool` and the Makefile use.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
