package recording

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/loadshed/loadshed/internal/signals"
)

// Recording is a recording file opened for reading: its header is read,
// its rounds are read (again) by each call of Each or Rounds.
type Recording struct {
	path   string
	header Header
	// seen is every snapshot's objects merged (see DaemonSets).
	seen Snapshot
}

// Open opens a recording and reads its header. A file that is not a
// recording, or one of a newer format than this package reads, is an
// error saying so.
func Open(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	rr, err := newRecordReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h, err := rr.header()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen, err := merged(rr, h.Snapshot)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Recording{path: path, header: h, seen: seen}, nil
}

// merged reads the rest of the recording for its later snapshots and
// merges them into first: every object any snapshot held, the latest
// version of each. A recording cut short gives what it holds; Each says
// it is cut short.
func merged(rr *recordReader, first Snapshot) (Snapshot, error) {
	dss := map[string]appsv1.DaemonSet{}
	fss := map[string]flowcontrolv1.FlowSchema{}
	nss := map[string]labels.Set{}
	add := func(s Snapshot) {
		for _, ds := range s.DaemonSets {
			dss[ds.Namespace+"/"+ds.Name] = ds
		}
		for _, fs := range s.FlowSchemas {
			fss[fs.Name] = fs
		}
		maps.Copy(nss, s.Namespaces)
	}
	add(first)
	for {
		kind, payload, err := rr.next()
		if err != nil || kind == kindEnd {
			break
		}
		if kind != kindSnap {
			continue
		}
		var s Snapshot
		if err := json.Unmarshal(payload, &s); err != nil {
			return Snapshot{}, fmt.Errorf("reading a snapshot: %w", err)
		}
		add(s)
	}
	out := Snapshot{Namespaces: nss}
	for _, k := range slices.Sorted(maps.Keys(dss)) {
		out.DaemonSets = append(out.DaemonSets, dss[k])
	}
	for _, k := range slices.Sorted(maps.Keys(fss)) {
		out.FlowSchemas = append(out.FlowSchemas, fss[k])
	}
	return out, nil
}

// Header is what the recording says it holds.
func (r *Recording) Header() Header { return r.header }

// DaemonSets are every DaemonSet the recording saw, when it started and in
// the snapshots it took while recording, the latest version of each,
// trimmed (see Snapshot), sorted by namespace and name.
func (r *Recording) DaemonSets() []appsv1.DaemonSet { return r.seen.DaemonSets }

// Namespaces maps each namespace the recording saw to its latest labels.
func (r *Recording) Namespaces() map[string]labels.Set { return r.seen.Namespaces }

// FlowSchemas are every FlowSchema the recording saw, the latest version of
// each, trimmed (see Snapshot), sorted by name.
func (r *Recording) FlowSchemas() []flowcontrolv1.FlowSchema { return r.seen.FlowSchemas }

// Rounds reads every round, folding each instance's samples for accums with
// signals.Folder, as the operator's sampler folds a scrape. A family an
// accumulator reads that the recording does not hold is an error naming
// it. A recording cut short gives its whole rounds with an error that
// wraps ErrCutShort.
func (r *Recording) Rounds(accums []signals.Accumulator) ([]*signals.Round, error) {
	var rounds []*signals.Round
	err := r.Each(accums, func(round *signals.Round) error {
		rounds = append(rounds, round)
		return nil
	})
	return rounds, err
}

// Each reads the rounds one at a time, as Rounds does, and calls fn with
// each, stopping at fn's first error, which it returns. A recording cut
// short calls fn with its whole rounds and returns an error that wraps
// ErrCutShort.
func (r *Recording) Each(accums []signals.Accumulator, fn func(*signals.Round) error) error {
	if err := r.holds(accums); err != nil {
		return err
	}
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	rr, err := newRecordReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", r.path, err)
	}
	if _, err := rr.header(); err != nil {
		return fmt.Errorf("%s: %w", r.path, err)
	}
	dec := newRoundDecoder(accums)
	var last time.Time
	for n := 0; ; n++ {
		kind, payload, err := rr.next()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return cutShort(r.path, n, last)
		case err != nil:
			return fmt.Errorf("%s: after %d rounds: %w", r.path, n, err)
		}
		switch kind {
		case kindEnd:
			return nil
		case kindRound:
			round, err := dec.decode(payload)
			if err != nil {
				return fmt.Errorf("%s: round %d: %w", r.path, n+1, err)
			}
			last = round.T
			if err := fn(round); err != nil {
				return err
			}
		default:
			n-- // a kind a later version of this format added: skipped
		}
	}
}

func cutShort(path string, rounds int, last time.Time) error {
	if rounds == 0 {
		return fmt.Errorf("%s: %w before its first round", path, ErrCutShort)
	}
	return fmt.Errorf("%s: %w: read its %d whole rounds, the last at %s", path, ErrCutShort, rounds,
		last.UTC().Format(time.RFC3339))
}

// holds checks that the recording holds every family accums read.
func (r *Recording) holds(accums []signals.Accumulator) error {
	var missing []string
	for _, a := range accums {
		if !slices.Contains(r.header.Families, a.Family) && !slices.Contains(missing, a.Family) {
			missing = append(missing, a.Family)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("%s does not hold the metric families %s, which the policy reads (it holds %s): "+
		"record again with --family %s", r.path, strings.Join(missing, ", "), strings.Join(r.header.Families, ", "),
		strings.Join(missing, " --family "))
}

// recordReader reads a recording's first line and records.
type recordReader struct {
	br  *bufio.Reader
	buf []byte
}

// newRecordReader opens the gzip stream and checks the first line.
func newRecordReader(f io.Reader) (*recordReader, error) {
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("not a loadshed recording (not gzip: %w)", err)
	}
	br := bufio.NewReaderSize(gz, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil || !strings.HasPrefix(string(line), magic) {
		return nil, fmt.Errorf("not a loadshed recording (it does not start with %q)", magic)
	}
	v, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(line), magic)))
	switch {
	case err != nil || v < 1:
		return nil, fmt.Errorf("not a loadshed recording (version %q)", strings.TrimSpace(string(line)))
	case v > Version:
		return nil, fmt.Errorf("a recording of format version %d, newer than this kubectl-loadshed reads (%d): "+
			"read it with the kubectl-loadshed that wrote it, or a newer one", v, Version)
	}
	return &recordReader{br: br}, nil
}

// header reads the first record, the header.
func (rr *recordReader) header() (Header, error) {
	kind, payload, err := rr.next()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Header{}, fmt.Errorf("%w before the end of its header", ErrCutShort)
	}
	if err != nil {
		return Header{}, err
	}
	if kind != kindHeader {
		return Header{}, fmt.Errorf("%w: the first record is %q, not the header", errMalformed, kind)
	}
	var h Header
	if err := json.Unmarshal(payload, &h); err != nil {
		return Header{}, fmt.Errorf("reading the header: %w", err)
	}
	return h, nil
}

// next reads one record; its payload is valid until the next call. A
// record cut short is io.ErrUnexpectedEOF; no record at all, io.EOF.
func (rr *recordReader) next() (kind byte, payload []byte, err error) {
	kind, err = rr.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(rr.br)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return 0, nil, err
	}
	if n > maxRecord {
		return 0, nil, fmt.Errorf("%w: a record of %d bytes", errMalformed, n)
	}
	if uint64(cap(rr.buf)) < n {
		rr.buf = make([]byte, n)
	}
	rr.buf = rr.buf[:n]
	if _, err := io.ReadFull(rr.br, rr.buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return kind, rr.buf, nil
}
