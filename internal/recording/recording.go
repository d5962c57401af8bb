// Package recording is the file `kubectl loadshed record` writes and the
// back-test reads: what every kube-apiserver's /metrics said, round after
// round, as the operator's sampler reads it, before any folding, so that a
// policy written later can be evaluated on it with the operator's own code.
//
// A recording is one gzip stream. It starts with the line
// "loadshed-recording <version>" and holds records, each a kind byte, a
// uvarint length and that many bytes:
//
//   - 'H', first and once: the Header as JSON (when, the interval, the
//     families, the server, and a Snapshot of the cluster's DaemonSets,
//     namespaces and FlowSchemas, trimmed to what a back-test reads);
//   - 'R', one per round: its time, the slowest scrape and whether one timed
//     out, and each instance: why it failed, or its samples and its APF dump
//     summary (or why that failed);
//   - 'S', between rounds: the Snapshot again, as JSON, each time record read
//     it and found it changed (it reads it every SnapshotEvery): a DaemonSet
//     made while recording (the flood's, often) is attributed too. Readers
//     that predate it skip it;
//   - 'E', last: the end mark, written when record stops normally. A file
//     without it (record killed) reads up to its last whole round, and
//     says so (ErrCutShort).
//
// Samples are compact: each instance's series (family, suffix, bucket bound,
// labels) are defined once, in the round they first appear, and a round
// holds only the values that changed since the instance's previous round,
// the series that disappeared, and the new ones; integer values (counts)
// are written as varint differences. An instance not scraped in the
// previous round starts afresh with all its values. Of a histogram only the
// buckets are kept (the signals read no _sum nor _count). The writer
// flushes the gzip stream after each round, so that a killed record loses
// at most the round it was writing.
package recording

import (
	"errors"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Version is the format version this package writes and the newest it
// reads.
const Version = 1

// magic starts the first line of every recording, followed by the version.
const magic = "loadshed-recording "

// The record kinds.
const (
	kindHeader = 'H'
	kindRound  = 'R'
	kindSnap   = 'S'
	kindEnd    = 'E'
)

// ErrCutShort is the error of a recording that ends without its end mark
// (record was killed, or the file was cut): what it holds up to its last
// whole round is read and returned with it.
var ErrCutShort = errors.New("the recording was cut short")

// Header says what a recording holds.
type Header struct {
	// Version is the format version.
	Version int `json:"version"`
	// Started is when recording started.
	Started time.Time `json:"started"`
	// Interval is the time between rounds.
	Interval metav1.Duration `json:"interval"`
	// Timeout bounds each instance's scrape.
	Timeout metav1.Duration `json:"timeout"`
	// Families are the metric families recorded, sorted.
	Families []string `json:"families"`
	// Server is the API server the recorder was configured with (the
	// kubeconfig's), which it scrapes when the instances' endpoints cannot
	// be used.
	Server string `json:"server"`
	// Recorder names the program that wrote the recording, with its version.
	Recorder string `json:"recorder"`
	// Snapshot is what a back-test needs of the cluster, read when
	// recording started; later ones are 'S' records.
	Snapshot Snapshot `json:"snapshot"`
}

// Snapshot is what a back-test reads of the cluster besides metrics: what a
// policy's targets select and protect, and the FlowSchemas a throttle is
// placed ahead of. No Secret, no pod, no request body: metadata only.
type Snapshot struct {
	// DaemonSets are trimmed to namespace, name, labels, and their pod
	// template's serviceAccountName and priorityClassName.
	DaemonSets []appsv1.DaemonSet `json:"daemonSets"`
	// Namespaces maps each namespace to its labels.
	Namespaces map[string]labels.Set `json:"namespaces"`
	// FlowSchemas are trimmed to name, labels, annotations and spec.
	FlowSchemas []flowcontrolv1.FlowSchema `json:"flowSchemas"`
}
