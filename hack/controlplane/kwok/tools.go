//go:build tools

// Package tools pins kwok, which keeps fake Nodes Ready and moves their
// bound pods to Running, for the local cluster of the incident replay.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
