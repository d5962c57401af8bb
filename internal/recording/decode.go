package recording

import (
	"fmt"
	"time"

	"github.com/loadshed/loadshed/internal/apfdump"
	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/signals"
)

// roundDecoder decodes rounds in order, keeping each instance's series and
// values, and folds each instance's samples with a signals.Folder.
type roundDecoder struct {
	accums    []signals.Accumulator
	want      exposition.Families
	instances map[string]*instanceSeries
}

// instanceSeries is what the rounds so far say of one instance.
type instanceSeries struct {
	// samples are, by id, the series as samples to fold; nil for a
	// family no accumulator reads.
	samples []*exposition.Sample
	// wanted are the ids of samples that are not nil, ascending: the
	// order the series first appeared in, the scrape's.
	wanted  []uint32
	values  []float64
	present []bool
}

func newRoundDecoder(accums []signals.Accumulator) *roundDecoder {
	want := exposition.Families{}
	for _, a := range accums {
		want[a.Family] = struct{}{}
	}
	return &roundDecoder{accums: accums, want: want, instances: map[string]*instanceSeries{}}
}

// decode decodes one round record.
func (rd *roundDecoder) decode(payload []byte) (*signals.Round, error) {
	d := &decoder{b: payload}
	r := &signals.Round{T: time.Unix(0, d.varint()), Instances: map[string]map[string]signals.Result{},
		Failed: map[string]string{}, Clients: map[string]apfdump.Summary{}, ClientsFailed: map[string]string{}}
	r.ScrapeSeconds = d.float()
	r.TimedOut = d.bool()
	n := d.count()
	for range n {
		inst := d.string()
		state := d.byte()
		if state == stateFailed {
			r.Failed[inst] = d.string()
			continue
		}
		if state != stateDelta && state != stateFresh {
			d.fail(fmt.Sprintf("instance state %d", state))
			break
		}
		is := rd.instances[inst]
		if is == nil {
			is = &instanceSeries{}
			rd.instances[inst] = is
		}
		if state == stateFresh {
			clear(is.present)
			clear(is.values)
		}
		rd.decodeSamples(d, is)
		if d.err != nil {
			break
		}
		r.Instances[inst] = is.fold(rd.accums)
		decodeDump(d, r, inst)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail(fmt.Sprintf("round: %d bytes left over", len(d.b)))
	}
	return r, d.err
}

// decodeSamples reads an instance's new series, those gone and the values
// changed.
func (rd *roundDecoder) decodeSamples(d *decoder, is *instanceSeries) {
	for range d.count() {
		def := decodeDef(d)
		var s *exposition.Sample
		if _, ok := rd.want[def.family]; ok {
			s = exposition.NewSample(def.family, def.suffix, def.le, 0, def.labels)
			is.wanted = append(is.wanted, uint32(len(is.samples)))
		}
		is.samples = append(is.samples, s)
		is.values = append(is.values, 0)
		is.present = append(is.present, false)
	}
	id := uint64(0)
	for range d.count() {
		id += d.uvarint()
		if id >= uint64(len(is.present)) {
			d.fail("series id")
			return
		}
		is.present[id] = false
	}
	id = 0
	for range d.count() {
		tagged := d.uvarint()
		id += tagged >> 1
		if id >= uint64(len(is.present)) {
			d.fail("series id")
			return
		}
		prev := 0.0
		if is.present[id] {
			prev = is.values[id]
		}
		if tagged&1 == 1 {
			is.values[id] = d.float()
		} else {
			is.values[id] = float64(int64(prev) + d.varint())
		}
		is.present[id] = true
	}
}

func decodeDef(d *decoder) seriesDef {
	def := seriesDef{family: d.string(), suffix: exposition.Suffix(d.byte())}
	if def.suffix == exposition.SuffixBucket {
		def.le = d.float()
	}
	n := d.count()
	def.labels = make([]exposition.LabelPair, 0, n)
	for range n {
		def.labels = append(def.labels, exposition.LabelPair{Name: d.string(), Value: d.string()})
	}
	return def
}

// decodeDump reads what the round read of an instance's APF dump.
func decodeDump(d *decoder, r *signals.Round, inst string) {
	switch kind := d.byte(); kind {
	case dumpNone:
	case dumpFailed:
		r.ClientsFailed[inst] = d.string()
	case dumpRead:
		sum := apfdump.Summary{Total: decodeLoad(d), ByUser: map[string]apfdump.Load{}}
		for range d.count() {
			user := d.string()
			sum.ByUser[user] = decodeLoad(d)
		}
		r.Clients[inst] = sum
	default:
		d.fail(fmt.Sprintf("dump kind %d", kind))
	}
}

func decodeLoad(d *decoder) apfdump.Load {
	return apfdump.Load{Requests: int(d.uvarint()), Waiting: int(d.uvarint()), Seats: int(d.uvarint())}
}

// fold folds the instance's present samples of wanted families, in the
// order they first appeared.
func (is *instanceSeries) fold(accums []signals.Accumulator) map[string]signals.Result {
	f := signals.NewFolder(accums)
	for _, id := range is.wanted {
		if !is.present[id] {
			continue
		}
		s := is.samples[id]
		s.Value = is.values[id]
		f.Add(s)
	}
	return f.Results()
}
