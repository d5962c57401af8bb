package recording

import (
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/scrape"
)

// How an instance appears in a round.
const (
	// stateFailed: it could not be scraped; why follows.
	stateFailed = 0
	// stateDelta: its values changed since its previous round follow.
	stateDelta = 1
	// stateFresh: it was not scraped in the previous round; all its
	// values follow, and nothing of earlier rounds holds.
	stateFresh = 2
)

// What follows an instance's samples about its APF dump.
const (
	dumpNone   = 0
	dumpRead   = 1
	dumpFailed = 2
)

// maxRecord bounds one record: a round of many big API servers stays far
// below it.
const maxRecord = 1 << 30

// Writer writes a recording: NewWriter writes the header; each round is
// read with scrape.Read into the Writer's Sinks (NewSink) and written with
// WriteRound; Close writes the end mark.
type Writer struct {
	out      *countingWriter
	gz       *gzip.Writer
	families exposition.Families
	enc      encoder
	rounds   int
	// mu guards instances, which NewSink fills from the scrapes'
	// goroutines.
	mu        sync.Mutex
	instances map[string]*instanceState
}

// instanceState is what the Writer remembers of one instance.
type instanceState struct {
	// ids maps a series key (seriesKey) to its id, in order of appearance.
	ids map[string]uint32
	// last and present are, by id, the values of the previous round written.
	last    []float64
	present []bool
	// now marks the ids of the round being written.
	now []bool
	// scraped says that the previous round written scraped it.
	scraped bool
}

// NewWriter writes a recording's first line and header to w; h.Version is
// set, h.Families sorted. The Writer does not close w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Version = Version
	h.Families = slices.Sorted(slices.Values(h.Families))
	h.Families = slices.Compact(h.Families)
	out := &countingWriter{w: w}
	wr := &Writer{out: out, gz: gzip.NewWriter(out), families: exposition.Want(h.Families...),
		instances: map[string]*instanceState{}}
	if _, err := io.WriteString(wr.gz, magic+strconv.Itoa(Version)+"\n"); err != nil {
		return nil, err
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encoding the header: %w", err)
	}
	if err := wr.record(kindHeader, b); err != nil {
		return nil, err
	}
	return wr, nil
}

// Bytes is how many bytes (compressed) have been written so far.
func (w *Writer) Bytes() int64 { return w.out.n }

// Rounds is how many rounds have been written.
func (w *Writer) Rounds() int { return w.rounds }

// record writes one record and flushes the stream, so that the file holds
// every whole record written.
func (w *Writer) record(kind byte, payload []byte) error {
	var head encoder
	head.byte(kind)
	head.count(len(payload))
	if _, err := w.gz.Write(head.b); err != nil {
		return err
	}
	if _, err := w.gz.Write(payload); err != nil {
		return err
	}
	return w.gz.Flush()
}

// WriteSnapshot writes the cluster's snapshot again, between rounds.
func (w *Writer) WriteSnapshot(snap Snapshot) error {
	b, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encoding a snapshot: %w", err)
	}
	return w.record(kindSnap, b)
}

// Close writes the end mark and ends the gzip stream.
func (w *Writer) Close() error {
	var e encoder
	e.count(w.rounds)
	if err := w.record(kindEnd, e.b); err != nil {
		return err
	}
	return w.gz.Close()
}

// NewSink returns the Sink that records one instance's samples for one
// round: pass it to scrape.Read. It is safe for concurrent use by the
// scrapes of different instances.
func (w *Writer) NewSink(instance string) *Sink {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.instances[instance]
	if st == nil {
		st = &instanceState{ids: map[string]uint32{}}
		w.instances[instance] = st
	}
	return &Sink{state: st, families: w.families, newIDs: map[string]uint32{}}
}

// WriteRound writes a round read into the Writer's Sinks.
func (w *Writer) WriteRound(r *scrape.Round[*Sink]) error {
	e := &w.enc
	e.b = e.b[:0]
	e.varint(r.T.UnixNano())
	e.float(r.ScrapeSeconds)
	e.bool(r.TimedOut)
	insts := slices.Sorted(maps.Keys(r.Failed))
	for inst := range r.Scraped {
		insts = append(insts, inst)
	}
	slices.Sort(insts)
	insts = slices.Compact(insts)
	e.count(len(insts))
	for _, inst := range insts {
		e.string(inst)
		sink, ok := r.Scraped[inst]
		if !ok {
			e.byte(stateFailed)
			e.string(r.Failed[inst])
			continue
		}
		sink.encode(e)
		encodeDump(e, r.Clients, r.ClientsFailed, inst)
	}
	for inst, st := range w.instances {
		if _, ok := r.Scraped[inst]; !ok {
			st.scraped = false
		}
	}
	if len(e.b) > maxRecord {
		return fmt.Errorf("a round of %d bytes is more than a recording holds (%d)", len(e.b), maxRecord)
	}
	if err := w.record(kindRound, e.b); err != nil {
		return err
	}
	w.rounds++
	return nil
}

// encodeDump writes what the round read of an instance's APF dump.
func encodeDump(e *encoder, clients map[string]apfdump.Summary, failed map[string]string, inst string) {
	if sum, ok := clients[inst]; ok {
		e.byte(dumpRead)
		encodeLoad(e, sum.Total)
		e.count(len(sum.ByUser))
		for _, user := range slices.Sorted(maps.Keys(sum.ByUser)) {
			e.string(user)
			encodeLoad(e, sum.ByUser[user])
		}
		return
	}
	if why, ok := failed[inst]; ok {
		e.byte(dumpFailed)
		e.string(why)
		return
	}
	e.byte(dumpNone)
}

func encodeLoad(e *encoder, l apfdump.Load) {
	e.count(l.Requests)
	e.count(l.Waiting)
	e.count(l.Seats)
}

// Sink records one instance's samples for one round (Writer.NewSink). The
// buckets of histograms are kept, their _sum and _count are not: no
// signal reads them.
type Sink struct {
	state    *instanceState
	families exposition.Families
	key      []byte
	// newIDs and newDefs are the series first seen in this round; they
	// become the instance's when the round is written, not before: a
	// scrape that fails leaves nothing behind.
	newIDs  map[string]uint32
	newDefs []seriesDef
	values  []sinkValue
}

type sinkValue struct {
	id uint32
	v  float64
}

// seriesDef is a series as a recording defines it.
type seriesDef struct {
	family string
	suffix exposition.Suffix
	le     float64
	labels []exposition.LabelPair
}

// Families are the families the recording holds.
func (s *Sink) Families() exposition.Families { return s.families }

// Add records one sample.
func (s *Sink) Add(x *exposition.Sample) {
	if x.Suffix == exposition.SuffixSum || x.Suffix == exposition.SuffixCount {
		return
	}
	s.key = seriesKey(s.key[:0], x)
	id, ok := s.state.ids[string(s.key)]
	if !ok {
		id, ok = s.newIDs[string(s.key)]
	}
	if !ok {
		id = uint32(len(s.state.ids) + len(s.newDefs))
		s.newIDs[string(s.key)] = id
		s.newDefs = append(s.newDefs, defOf(x))
	}
	s.values = append(s.values, sinkValue{id: id, v: x.Value})
}

// seriesKey appends what identifies a sample's series to b.
func seriesKey(b []byte, x *exposition.Sample) []byte {
	b = append(b, x.Family...)
	b = append(b, 0, byte(x.Suffix))
	b = strconv.AppendUint(b, math.Float64bits(x.Le), 16)
	x.Labels(func(name, value []byte) bool {
		b = append(b, 0)
		b = append(b, name...)
		b = append(b, 0)
		b = append(b, value...)
		return true
	})
	return b
}

func defOf(x *exposition.Sample) seriesDef {
	d := seriesDef{family: x.Family, suffix: x.Suffix, le: x.Le}
	x.Labels(func(name, value []byte) bool {
		d.labels = append(d.labels, exposition.LabelPair{Name: string(name), Value: string(value)})
		return true
	})
	return d
}

// encode writes the instance's round: its new series, those gone, and the
// values that changed, and makes them the instance's state.
func (s *Sink) encode(e *encoder) {
	st := s.state
	fresh := !st.scraped
	if fresh {
		e.byte(stateFresh)
	} else {
		e.byte(stateDelta)
	}
	e.count(len(s.newDefs))
	for _, d := range s.newDefs {
		encodeDef(e, d)
	}
	maps.Copy(st.ids, s.newIDs)
	n := len(st.ids)
	st.last = append(st.last, make([]float64, n-len(st.last))...)
	st.present = append(st.present, make([]bool, n-len(st.present))...)
	st.now = append(st.now, make([]bool, n-len(st.now))...)
	s.sortValues()
	if fresh {
		clear(st.present)
	}
	for _, v := range s.values {
		st.now[v.id] = true
	}
	s.encodeGone(e)
	s.encodeChanged(e)
	for _, v := range s.values {
		st.last[v.id], st.present[v.id] = v.v, true
	}
	for id := range st.present {
		st.present[id], st.now[id] = st.now[id], false
	}
	st.scraped = true
}

// sortValues sorts the values by id; the last value of a series wins,
// should a scrape repeat one.
func (s *Sink) sortValues() {
	slices.SortStableFunc(s.values, func(a, b sinkValue) int { return cmp.Compare(a.id, b.id) })
	out := s.values[:0]
	for i, v := range s.values {
		if i+1 < len(s.values) && s.values[i+1].id == v.id {
			continue
		}
		out = append(out, v)
	}
	s.values = out
}

func encodeDef(e *encoder, d seriesDef) {
	e.string(d.family)
	e.byte(byte(d.suffix))
	if d.suffix == exposition.SuffixBucket {
		e.float(d.le)
	}
	e.count(len(d.labels))
	for _, l := range d.labels {
		e.string(l.Name)
		e.string(l.Value)
	}
}

// encodeGone writes the ids of the series present in the instance's
// previous round and not in this one, ascending, as differences.
func (s *Sink) encodeGone(e *encoder) {
	st := s.state
	var gone []uint32
	for id, was := range st.present {
		if was && !st.now[id] {
			gone = append(gone, uint32(id))
		}
	}
	e.count(len(gone))
	prev := uint32(0)
	for _, id := range gone {
		e.uvarint(uint64(id - prev))
		prev = id
	}
}

// encodeChanged writes the values that are new or changed since the
// instance's previous round, by ascending id: the id's difference from the
// previous one, shifted left, with the low bit set when the value is a
// float's bits rather than an integer's difference from the previous value
// (0 for a series that was not present).
func (s *Sink) encodeChanged(e *encoder) {
	st := s.state
	n := 0
	for _, v := range s.values {
		if !st.present[v.id] || math.Float64bits(st.last[v.id]) != math.Float64bits(v.v) {
			n++
		}
	}
	e.count(n)
	prevID := uint32(0)
	for _, v := range s.values {
		prev := 0.0
		if st.present[v.id] {
			prev = st.last[v.id]
			if math.Float64bits(prev) == math.Float64bits(v.v) {
				continue
			}
		}
		delta := uint64(v.id-prevID) << 1
		prevID = v.id
		if isInt(prev) && isInt(v.v) {
			e.uvarint(delta)
			e.varint(int64(v.v) - int64(prev))
			continue
		}
		e.uvarint(delta | 1)
		e.float(v.v)
	}
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
