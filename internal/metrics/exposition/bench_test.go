package exposition

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/loadshed/loadshed/test/testutil"
)

// syntheticSize is the size the synthetic payloads grow to, give or take
// 5% (a replica adds ~20% to the text).
const syntheticSize = 10 << 20

const minSyntheticSize = syntheticSize * 95 / 100

var synthetic struct {
	once sync.Once
	// text is ~10 MB of text and pb the same data in protobuf (~2 MB);
	// bigPB is ~10 MB of protobuf, with ~5 times the series.
	text, pb, bigPB []byte
}

// syntheticPayloads returns scrapes grown from the recorded one like a big
// cluster's: every series with a "resource" label is repeated for more
// resources (and API groups), as hundreds of CRDs would add, until the
// payload reaches syntheticSize. The families stay the same.
func syntheticPayloads(tb testing.TB) (text, pb, bigPB []byte) {
	synthetic.once.Do(func() {
		fams, err := decodeDelimited(testutil.Recorded(tb, "apiserver.pb"))
		if err != nil {
			tb.Fatal(err)
		}
		grown := grow(fams, func(fams []*dto.MetricFamily) int { return len(renderText(tb, fams)) })
		synthetic.text, synthetic.pb = renderText(tb, grown), encodeDelimited(tb, grown)
		grown = grow(fams, func(fams []*dto.MetricFamily) int { return len(encodeDelimited(tb, fams)) })
		synthetic.bigPB = encodeDelimited(tb, grown)
	})
	return synthetic.text, synthetic.pb, synthetic.bigPB
}

// grow returns fams with as many replicas (see replicate) as make size
// reach syntheticSize.
func grow(fams []*dto.MetricFamily, size func([]*dto.MetricFamily) int) []*dto.MetricFamily {
	base := size(fams)
	// Replica numbers have two or three digits: measure one of those.
	perReplica := size(replicate(fams, 100, 100)) - base
	replicas := max(1, (syntheticSize-base)/perReplica)
	for {
		grown := replicate(fams, 1, replicas)
		if size(grown) >= minSyntheticSize {
			return grown
		}
		replicas++
	}
}

// replicate returns fams where every metric with a "resource" label is
// followed by copies numbered from to through, each with that label and the
// "group" label (if any) changed to those of a made-up CRD.
func replicate(fams []*dto.MetricFamily, from, through int) []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, len(fams))
	for i, mf := range fams {
		grown := proto.CloneOf(mf)
		for _, m := range mf.GetMetric() {
			if !hasLabel(m, "resource") {
				continue
			}
			for k := from; k <= through; k++ {
				c := proto.CloneOf(m)
				for _, l := range c.GetLabel() {
					switch l.GetName() {
					case "resource":
						l.Value = proto.String(fmt.Sprintf("%s%d", l.GetValue(), k))
					case "group":
						l.Value = proto.String(fmt.Sprintf("crd%d.example.com", k))
					}
				}
				grown.Metric = append(grown.Metric, c)
			}
		}
		out[i] = grown
	}
	return out
}

func hasLabel(m *dto.Metric, name string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

// decodeExpfmt is the baseline: expfmt's decoder reads every family, and the
// wanted ones are then folded as the ours sink folds samples.
func decodeExpfmt(data []byte, format expfmt.Format, want Families, sums map[string]float64) (int, error) {
	dec := expfmt.NewDecoder(bytes.NewReader(data), format)
	hits := 0
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			if errors.Is(err, io.EOF) {
				return hits, nil
			}
			return hits, err
		}
		if _, ok := want[mf.GetName()]; !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "resource" {
					hits += len(l.GetValue())
				}
			}
			switch {
			case m.Histogram != nil:
				for _, b := range m.Histogram.GetBucket() {
					sums[mf.GetName()] += float64(b.GetCumulativeCount())
				}
				sums[mf.GetName()] += m.Histogram.GetSampleSum() + float64(m.Histogram.GetSampleCount())
			case m.Counter != nil:
				sums[mf.GetName()] += m.Counter.GetValue()
			case m.Gauge != nil:
				sums[mf.GetName()] += m.Gauge.GetValue()
			case m.Untyped != nil:
				sums[mf.GetName()] += m.Untyped.GetValue()
			}
		}
	}
}

// BenchmarkIngest compares ParseText and ParseProtobuf ("ours"), folding
// every wanted sample (a sum per family and one label lookup), with a full
// expfmt decode of the same payload.
func BenchmarkIngest(b *testing.B) {
	want := Want(apiserverWanted...)
	synthText, synthPB, bigPB := syntheticPayloads(b)
	payloads := []struct {
		name   string
		data   []byte
		parse  parseFunc
		format expfmt.Format
	}{
		{"recorded-text", testutil.Recorded(b, "apiserver.txt"), ParseText, expfmt.NewFormat(expfmt.TypeTextPlain)},
		{"recorded-protobuf", testutil.Recorded(b, "apiserver.pb"), ParseProtobuf, expfmt.NewFormat(expfmt.TypeProtoDelim)},
		{"synthetic-text", synthText, ParseText, expfmt.NewFormat(expfmt.TypeTextPlain)},
		{"synthetic-protobuf", synthPB, ParseProtobuf, expfmt.NewFormat(expfmt.TypeProtoDelim)},
		{"synthetic-protobuf-10MB", bigPB, ParseProtobuf, expfmt.NewFormat(expfmt.TypeProtoDelim)},
	}
	for _, p := range payloads {
		sums := make(map[string]float64, len(want))
		b.Run(p.name+"/ours", func(b *testing.B) {
			b.SetBytes(int64(len(p.data)))
			b.ReportAllocs()
			samples, hits := 0, 0
			fn := func(s *Sample) {
				samples++
				sums[s.Family] += s.Value
				if v, ok := s.Label("resource"); ok {
					hits += len(v)
				}
			}
			for b.Loop() {
				samples = 0
				clear(sums)
				if err := p.parse(p.data, want, fn); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(samples), "samples/op")
		})
		b.Run(p.name+"/expfmt", func(b *testing.B) {
			b.SetBytes(int64(len(p.data)))
			b.ReportAllocs()
			for b.Loop() {
				clear(sums)
				if _, err := decodeExpfmt(p.data, p.format, want, sums); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSyntheticPayloadsAreBigAndAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10 MB payload")
	}
	text, pb, bigPB := syntheticPayloads(t)
	want := Want(apiserverWanted...)
	fromText, err := collect(ParseText, text, want)
	if err != nil {
		t.Fatal(err)
	}
	fromPB, err := collect(ParseProtobuf, pb, want)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(text, []byte{'\n'})
	t.Logf("text %d bytes, %d lines; protobuf %d bytes; %d wanted samples", len(text), lines, len(pb), len(fromText))
	if len(text) < minSyntheticSize || lines < 50000 {
		t.Errorf("text %d bytes and %d lines, want at least %d bytes and 50000 lines", len(text), lines, minSyntheticSize)
	}
	bigSamples := 0
	if err := ParseProtobuf(bigPB, want, func(*Sample) { bigSamples++ }); err != nil {
		t.Fatal(err)
	}
	t.Logf("big protobuf %d bytes, %d wanted samples", len(bigPB), bigSamples)
	if len(bigPB) < minSyntheticSize {
		t.Errorf("big protobuf %d bytes, want at least %d", len(bigPB), minSyntheticSize)
	}
	if d := diffKeys(keys(fromPB), keys(fromText)); d != "" {
		t.Errorf("protobuf vs text: %s", d)
	}
}
