package exposition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ParseProtobuf parses the delimited protobuf format likewise: a sequence of
// io.prometheus.client.MetricFamily messages, each preceded by its length as a
// varint.
//
// A family's name and type are found by walking its top-level fields, each
// metric skipped by its length (so that, as in proto, the last name wins);
// an unwanted family is then skipped whole. A wanted one is read
// field by field with protowire, with proto's semantics (the last of repeated
// scalars wins, repeated messages merge, unknown fields and fields of an
// unexpected wire type are skipped), into the samples its text form, as
// expfmt's encoder writes it, yields with ParseText:
//   - a histogram gives one SuffixBucket sample per bucket
//     (cumulative_count_float, or cumulative_count if that is 0), a +Inf
//     bucket equal to the sample count unless a bucket is +Inf, and its
//     SuffixSum and SuffixCount;
//   - a summary gives its quantiles as SuffixNone samples with a "quantile"
//     label, and its sum and count;
//   - a counter, gauge or untyped metric gives one SuffixNone sample.
//
// A metric lacking the field of its family's type is skipped, and
// native-histogram fields are ignored.
func ParseProtobuf(data []byte, want Families, fn func(*Sample)) error {
	if len(want) == 0 {
		return nil
	}
	p := &protoParser{names: newIndex(want), fn: fn}
	for off, i := 0, 0; off < len(data); i++ {
		size, n := protowire.ConsumeVarint(data[off:])
		if n < 0 {
			return fmt.Errorf("protobuf exposition: message %d at byte %d: length: %w", i, off, protowire.ParseError(n))
		}
		if size > uint64(len(data)-off-n) {
			return fmt.Errorf("protobuf exposition: message %d at byte %d: %w", i, off, errTruncated)
		}
		msg := data[off+n : off+n+int(size)]
		if err := p.family(msg); err != nil {
			return fmt.Errorf("protobuf exposition: message %d at byte %d: %w", i, off, err)
		}
		off += n + int(size)
	}
	return nil
}

var errTruncated = errors.New("message longer than the data left")

// The values of io.prometheus.client.MetricType.
const (
	typeCounter        = 0
	typeGauge          = 1
	typeSummary        = 2
	typeUntyped        = 3
	typeHistogram      = 4
	typeGaugeHistogram = 5
)

// target is where the samples of one series of a family go, if ok.
type target struct {
	ref
	ok bool
}

// protoParser holds the state of one ParseProtobuf call.
type protoParser struct {
	names  index
	fn     func(*Sample)
	sample Sample
	typ    int32
	// parts says where each series of the current family goes: parts[SuffixNone]
	// is the family's own name (counters, gauges, untyped, summary quantiles),
	// the others its "_bucket", "_sum" and "_count" series.
	parts [4]target
	// labels are the current metric's labels; ranges the contents of its
	// value fields (several occurrences of a message field merge).
	labels []label
	ranges [][]byte
	// tmp holds labels derived from labels; nameBuf and numBuf hold a
	// suffixed name and a formatted number.
	tmp     []label
	leBuf   []label
	nameBuf []byte
	numBuf  []byte
}

// field reads one field of b: its number and wire type, its value for varint
// and fixed64 fields, its content for bytes fields, and its length (negative
// on errors, see protowire.ParseError).
func field(b []byte) (num protowire.Number, typ protowire.Type, val uint64, content []byte, n int) {
	// Fast paths for one-byte tags, varints and lengths: nearly all fields.
	if len(b) >= 2 && b[0] < 0x80 && b[0] >= 1<<3 {
		num, typ = protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
		switch {
		case typ == protowire.VarintType && b[1] < 0x80:
			return num, typ, uint64(b[1]), nil, 2
		case typ == protowire.Fixed64Type && len(b) >= 9:
			return num, typ, binary.LittleEndian.Uint64(b[1:9]), nil, 9
		case typ == protowire.BytesType && b[1] < 0x80 && int(b[1]) <= len(b)-2:
			return num, typ, 0, b[2 : 2+int(b[1])], 2 + int(b[1])
		}
	}
	num, typ, n = protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, nil, n
	}
	var m int
	switch typ {
	case protowire.VarintType:
		val, m = protowire.ConsumeVarint(b[n:])
	case protowire.Fixed64Type:
		val, m = protowire.ConsumeFixed64(b[n:])
	case protowire.BytesType:
		content, m = protowire.ConsumeBytes(b[n:])
	default:
		m = protowire.ConsumeFieldValue(num, typ, b[n:])
	}
	if m < 0 {
		return 0, 0, 0, nil, m
	}
	return num, typ, val, content, n + m
}

func (p *protoParser) family(msg []byte) error {
	var name []byte
	p.typ = typeCounter
	for b := msg; len(b) > 0; {
		num, typ, val, content, n := field(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			name = content
		case num == 3 && typ == protowire.VarintType:
			p.typ = int32(val) // as proto decodes enums
		}
	}
	p.parts = [4]target{}
	switch p.typ {
	case typeCounter, typeGauge, typeUntyped:
		p.parts[SuffixNone] = p.resolve(name, "")
	case typeSummary:
		p.parts[SuffixNone] = p.resolve(name, "")
		p.parts[SuffixSum] = p.resolve(name, "_sum")
		p.parts[SuffixCount] = p.resolve(name, "_count")
	case typeHistogram, typeGaugeHistogram:
		p.parts[SuffixBucket] = p.resolve(name, "_bucket")
		p.parts[SuffixSum] = p.resolve(name, "_sum")
		p.parts[SuffixCount] = p.resolve(name, "_count")
	}
	if !p.parts[0].ok && !p.parts[1].ok && !p.parts[2].ok && !p.parts[3].ok {
		return nil
	}
	for b := msg; len(b) > 0; {
		num, typ, _, content, n := field(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == 4 && typ == protowire.BytesType {
			if err := p.metric(content); err != nil {
				return fmt.Errorf("family %q: %w", name, err)
			}
		}
	}
	return nil
}

// resolve says where the series name+suffix of the current family goes, as
// ParseText would resolve that series name.
func (p *protoParser) resolve(name []byte, suffix string) target {
	p.nameBuf = append(append(p.nameBuf[:0], name...), suffix...)
	r, ok := p.names.resolve(p.nameBuf)
	return target{ref: r, ok: ok}
}

// valueField returns the number of the Metric field that holds a value of the
// family type typ.
func valueField(typ int32) protowire.Number {
	switch typ {
	case typeCounter:
		return 3
	case typeGauge:
		return 2
	case typeSummary:
		return 4
	case typeUntyped:
		return 5
	}
	return 7
}

func (p *protoParser) metric(m []byte) error {
	p.labels, p.ranges = p.labels[:0], p.ranges[:0]
	vf := valueField(p.typ)
	for b := m; len(b) > 0; {
		num, typ, _, content, n := field(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			l, err := labelPair(content)
			if err != nil {
				return err
			}
			p.labels = append(p.labels, l)
		case vf:
			p.ranges = append(p.ranges, content)
		}
	}
	if len(p.ranges) == 0 {
		return nil
	}
	switch p.typ {
	case typeSummary:
		return p.summary()
	case typeHistogram, typeGaugeHistogram:
		return p.histogram()
	}
	var v float64
	err := p.scan(func(num protowire.Number, typ protowire.Type, val uint64, _ []byte) error {
		if num == 1 && typ == protowire.Fixed64Type {
			v = math.Float64frombits(val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return p.emit(p.parts[SuffixNone], p.labels, v)
}

// scan calls fn for every field of the current metric's value messages.
func (p *protoParser) scan(fn func(num protowire.Number, typ protowire.Type, val uint64, content []byte) error) error {
	for _, r := range p.ranges {
		for b := r; len(b) > 0; {
			num, typ, val, content, n := field(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			if err := fn(num, typ, val, content); err != nil {
				return err
			}
		}
	}
	return nil
}

func labelPair(b []byte) (label, error) {
	var l label
	for len(b) > 0 {
		num, typ, _, content, n := field(b)
		if n < 0 {
			return label{}, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			switch num {
			case 1:
				l.name = content
			case 2:
				l.value = content
			}
		}
	}
	return l, nil
}

func (p *protoParser) summary() error {
	var count uint64
	var sum float64
	err := p.scan(func(num protowire.Number, typ protowire.Type, val uint64, content []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			count = val
		case num == 2 && typ == protowire.Fixed64Type:
			sum = math.Float64frombits(val)
		case num == 3 && typ == protowire.BytesType:
			q, v, err := quantile(content)
			if err != nil {
				return err
			}
			if t := p.parts[SuffixNone]; t.ok {
				p.numBuf = appendFloat(p.numBuf[:0], q)
				p.tmp = append(append(p.tmp[:0], p.labels...), label{name: quantLabel, value: p.numBuf})
				return p.emit(t, p.tmp, v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := p.emit(p.parts[SuffixSum], p.labels, sum); err != nil {
		return err
	}
	return p.emit(p.parts[SuffixCount], p.labels, float64(count))
}

func quantile(b []byte) (q, v float64, err error) {
	for len(b) > 0 {
		num, typ, val, _, n := field(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.Fixed64Type {
			switch num {
			case 1:
				q = math.Float64frombits(val)
			case 2:
				v = math.Float64frombits(val)
			}
		}
	}
	return q, v, nil
}

func (p *protoParser) histogram() error {
	var count uint64
	var countFloat, sum float64
	err := p.scan(func(num protowire.Number, typ protowire.Type, val uint64, _ []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			count = val
		case num == 2 && typ == protowire.Fixed64Type:
			sum = math.Float64frombits(val)
		case num == 4 && typ == protowire.Fixed64Type:
			countFloat = math.Float64frombits(val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if countFloat == 0 {
		countFloat = float64(count)
	}
	if p.parts[SuffixBucket].ok {
		if err := p.buckets(countFloat); err != nil {
			return err
		}
	}
	if err := p.emit(p.parts[SuffixSum], p.labels, sum); err != nil {
		return err
	}
	return p.emit(p.parts[SuffixCount], p.labels, countFloat)
}

// buckets emits the current histogram's buckets, and a +Inf bucket of count
// unless one is +Inf.
func (p *protoParser) buckets(count float64) error {
	t := p.parts[SuffixBucket]
	// As in text, where "le" follows the metric's labels, the bucket's bound
	// replaces any "le" label (which must still be a number).
	p.tmp = p.tmp[:0]
	for _, l := range p.labels {
		if string(l.name) != "le" {
			p.tmp = append(p.tmp, l)
		} else if _, ok := parseFloat(l.value); !ok && t.suffix == SuffixBucket {
			return fmt.Errorf("%w %q", errBadLe, l.value)
		}
	}
	labels := p.tmp
	s := &p.sample
	emit := func(le, v float64) error {
		if t.suffix != SuffixBucket {
			// The series name "..._bucket" is itself wanted, so "le" is
			// an ordinary label.
			p.numBuf = appendFloat(p.numBuf[:0], le)
			return p.emit(t, append(p.labels, label{name: leLabel, value: p.numBuf}), v)
		}
		s.Family, s.Suffix, s.Le, s.Value, s.labels = t.family, SuffixBucket, le, v, labels
		p.fn(s)
		return nil
	}
	infSeen := false
	err := p.scan(func(num protowire.Number, typ protowire.Type, _ uint64, content []byte) error {
		if num != 3 || typ != protowire.BytesType {
			return nil
		}
		le, v, err := bucket(content)
		if err != nil {
			return err
		}
		if math.IsInf(le, +1) {
			infSeen = true
		}
		return emit(le, v)
	})
	if err != nil {
		return err
	}
	if !infSeen {
		return emit(math.Inf(+1), count)
	}
	return nil
}

// bucket returns a bucket's upper bound and cumulative count.
func bucket(b []byte) (le, v float64, err error) {
	var count uint64
	for len(b) > 0 {
		num, typ, val, _, n := field(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			count = val
		case num == 2 && typ == protowire.Fixed64Type:
			le = math.Float64frombits(val)
		case num == 4 && typ == protowire.Fixed64Type:
			v = math.Float64frombits(val)
		}
	}
	if v == 0 {
		v = float64(count)
	}
	return le, v, nil
}

// emit calls fn with a sample of the series t, if wanted. A SuffixBucket
// series other than a histogram's buckets (a counter named "x_bucket" when
// "x" is wanted) takes its bound from its "le" label, as in text.
func (p *protoParser) emit(t target, labels []label, v float64) error {
	if !t.ok {
		return nil
	}
	s := &p.sample
	s.Family, s.Suffix, s.Value, s.Le, s.labels = t.family, t.suffix, v, 0, labels
	if t.suffix == SuffixBucket {
		// takeLe rewrites the slice, which may be p.labels.
		p.leBuf = append(p.leBuf[:0], labels...)
		var err error
		if s.labels, s.Le, err = takeLe(p.leBuf); err != nil {
			return err
		}
	}
	p.fn(s)
	return nil
}
