package exposition

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/loadshed/loadshed/test/testutil"
)

// fuzzWanted is the recorded payloads' wanted set plus the short names of
// the handwritten seeds.
func fuzzWanted() Families {
	return Want(append([]string{"a", "h", "s"}, apiserverWanted...)...)
}

// textFamilies splits a text payload into its families' blocks, each starting
// with its # HELP line and cut after at most limit bytes' worth of lines, to
// keep fuzzing inputs small.
func textFamilies(data []byte, limit int) [][]byte {
	var blocks [][]byte
	cut := func(b []byte) []byte {
		if len(b) <= limit {
			return b
		}
		if i := bytes.LastIndexByte(b[:limit], '\n'); i >= 0 {
			return b[:i+1]
		}
		return b[:limit]
	}
	start := 0
	for i := 1; i < len(data); i++ {
		if data[i-1] == '\n' && bytes.HasPrefix(data[i:], []byte("# HELP ")) {
			blocks = append(blocks, cut(data[start:i]))
			start = i
		}
	}
	return append(blocks, cut(data[start:]))
}

var textSeeds = []string{
	"a 1\n",
	"a{x=\"y\"} 2 1712345678901\n",
	"# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n",
	"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 4\n",
	"{\"a\", x=\"y\\\\n\\\"z\\n\"} 5\n",
	"\"a\"{\"x\"=\"1\"} 6\n",
	"a{x = \"1\" , } 7\n\t a\t-Inf\n",
	"h_bucket{le=\"1\"} NaN\nh_count 3\r\n",
	"a_bucket{x=\"1\"} 3\n",
	"h_bucket{le=\"0x1p3\"} 1\n",
	"# HELP a_count x\n# TYPE a summary\na_count 1.5\na{quantile=\"0.9\"} 2\n",
	"other_metric{resource=\"pods\"} 1\nother_metric{resource=\"pods\"\n",
	"a{x=\"1\"} 1e400\n",
	"a{x=\"\\q\"} 1\n",
}

func FuzzParseText(f *testing.F) {
	for _, s := range textSeeds {
		f.Add([]byte(s))
	}
	for _, block := range textFamilies(testutil.Recorded(f, "apiserver.txt"), 2048) {
		f.Add(block)
	}
	want := fuzzWanted()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkText(t, data, want)
		// Most mutations make input expfmt refuses, which leaves nothing
		// to compare: compare also the lines of data that expfmt accepts.
		if valid := acceptedLines(data); len(valid) != len(data) {
			checkText(t, valid, want)
		}
		// And, reading data as choices, an input of the short names'
		// samples with every trap: TYPE lines before, after and between
		// samples, bare names and suffixes, duplicates, le and quantile
		// anywhere, quoted names, odd values and blanks.
		checkText(t, acceptedLines(generateText(data)), want)
	})
}

// choices reads data as a sequence of choices: next returns the next byte
// (0 once data runs out), pick picks one of a list with it.
func choices(data []byte) (next func() int, pick func([]string) string) {
	next = func() int {
		if len(data) == 0 {
			return 0
		}
		c := data[0]
		data = data[1:]
		return int(c)
	}
	pick = func(from []string) string { return from[next()%len(from)] }
	return next, pick
}

// generateText makes a text payload out of data, read as a sequence of
// choices.
func generateText(data []byte) []byte {
	next, pick := choices(data)
	names := []string{"a", "a_bucket", "a_sum", "a_count", "h", "h_bucket", "h_sum", "h_count",
		"s", "s_sum", "s_count", "s_bucket", "o", "o_bucket", "h_bucket_count", "apiserver_request_total"}
	types := []string{"counter", "gauge", "histogram", "summary", "untyped", "gaugehistogram", "HISTOGRAM"}
	labelNames := []string{"x", "y", "le", "quantile", `"q r"`}
	labelValues := []string{"1", "0.5", "+Inf", `a\"b\n`, "", "1e-3", "NaN", "x", "-1"}
	values := []string{"1", "0", "-1", "1.5", "NaN", "+Inf", "-Inf", "3e2", "-0", "18446744073709551616", "2.5", ".5"}
	var b bytes.Buffer
	for len(data) > 0 && b.Len() < 4096 {
		switch op := next(); op % 8 {
		case 0:
			b.WriteString("# TYPE " + pick(names) + " " + pick(types) + "\n")
		case 1:
			b.WriteString("# HELP " + pick(names) + " help\n")
		default:
			name, style := pick(names), next()
			var labels []string
			braces := style%8 == 1
			if braces {
				labels = append(labels, `"`+name+`"`)
			}
			mask := next()
			for i, l := range labelNames {
				if mask&(1<<i) != 0 {
					labels = append(labels, l+`="`+pick(labelValues)+`"`)
				}
			}
			if style&16 != 0 {
				labels = append(labels, `le="`+pick(labelValues)+`"`)
			}
			sep := ","
			if style&2 != 0 {
				sep = " , "
			}
			switch {
			case braces:
				if style&32 != 0 {
					labels = append(labels[1:], labels[0])
				}
				b.WriteString("{" + strings.Join(labels, sep) + "}")
			case style&64 != 0:
				b.WriteString(`"` + name + `"{` + strings.Join(labels, sep) + "}")
			case style&4 != 0 && len(labels) == 0:
				b.WriteString(name)
			default:
				b.WriteString(name + "{" + strings.Join(labels, sep) + "}")
			}
			b.WriteString(" " + pick(values))
			if style&8 != 0 {
				b.WriteString(" 1700000000000")
			}
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// acceptedLines returns the longest sequence of data's first 64 lines that
// expfmt accepts, taking lines one by one.
func acceptedLines(data []byte) []byte {
	var kept, try []byte
	n := 0
	for line := range bytes.Lines(data) {
		if n++; n > 64 {
			break
		}
		if line[len(line)-1] != '\n' {
			line = append(line[:len(line):len(line)], '\n')
		}
		try = append(append(try[:0], kept...), line...)
		if _, err := expfmtText(try); err == nil {
			kept = append(kept, line...)
		}
	}
	return kept
}

// protoMessages splits a delimited protobuf payload into its messages, each
// with its length.
func protoMessages(data []byte) [][]byte {
	var msgs [][]byte
	for off := 0; off < len(data); {
		size, n := protowire.ConsumeVarint(data[off:])
		if n < 0 || size > uint64(len(data)-off-n) {
			break
		}
		msgs = append(msgs, data[off:off+n+int(size)])
		off += n + int(size)
	}
	return msgs
}

func protoSeeds(tb testing.TB) [][]byte {
	lp := func(name, value string) *dto.LabelPair { return &dto.LabelPair{Name: &name, Value: &value} }
	fams := []*dto.MetricFamily{
		{Name: proto.String("a"), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{
			{Label: []*dto.LabelPair{lp("x", "y")}, Counter: &dto.Counter{Value: proto.Float64(3)}},
		}},
		{Name: proto.String("h"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{
			Label: []*dto.LabelPair{lp("verb", "GET")},
			Histogram: &dto.Histogram{
				SampleCountFloat: proto.Float64(2.5), SampleSum: proto.Float64(1),
				Bucket: []*dto.Bucket{
					{UpperBound: proto.Float64(0.5), CumulativeCountFloat: proto.Float64(1.5)},
					{UpperBound: proto.Float64(1), CumulativeCount: proto.Uint64(2)},
				},
			},
		}}},
		{Name: proto.String("s"), Type: dto.MetricType_SUMMARY.Enum(), Metric: []*dto.Metric{{
			Summary: &dto.Summary{SampleCount: proto.Uint64(4), SampleSum: proto.Float64(3),
				Quantile: []*dto.Quantile{{Quantile: proto.Float64(0.5), Value: proto.Float64(math.NaN())}}},
		}}},
		{Name: proto.String("a_bucket"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{
			{Label: []*dto.LabelPair{lp("le", "7")}, Gauge: &dto.Gauge{Value: proto.Float64(1)}},
		}},
	}
	seeds := make([][]byte, 0, len(fams))
	for _, mf := range fams {
		seeds = append(seeds, encodeDelimited(tb, []*dto.MetricFamily{mf}))
	}
	return seeds
}

func FuzzParseProtobuf(f *testing.F) {
	for _, s := range protoSeeds(f) {
		f.Add(s)
	}
	for _, m := range protoMessages(testutil.Recorded(f, "apiserver.pb")) {
		f.Add(m)
	}
	want := fuzzWanted()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkProtobuf(t, data, want)
		// Most mutations make input proto refuses: compare also families
		// built from data read as choices, with fields in any order,
		// repeated, unknown or of the wrong wire type.
		generated := generateProtobuf(data)
		checkProtobuf(t, generated, want)
		// The same data in text must yield the same samples (family by
		// family: expfmt refuses a family twice in text).
		for _, m := range protoMessages(generated) {
			checkSameInText(t, m, want)
		}
	})
}

// checkSameInText renders the families of a protobuf payload as text with
// expfmt's encoder and checks that ParseText yields what ParseProtobuf
// yields, if expfmt's encoder and parser accept them.
func checkSameInText(t *testing.T, pb []byte, want Families) {
	t.Helper()
	fams, err := decodeDelimited(pb)
	if err != nil {
		return
	}
	var text bytes.Buffer
	for _, mf := range fams {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			return
		}
	}
	if _, err := expfmtText(text.Bytes()); err != nil {
		return
	}
	fromPB, pbErr := collect(ParseProtobuf, pb, want)
	fromText, textErr := collect(ParseText, text.Bytes(), want)
	leErr := func(err error) bool { return errors.Is(err, errNoLe) || errors.Is(err, errBadLe) }
	switch {
	case pbErr != nil || textErr != nil:
		if !leErr(pbErr) || !leErr(textErr) {
			t.Fatalf("protobuf error %v, text error %v, for\n%s", pbErr, textErr, text.Bytes())
		}
	default:
		if d := diffKeys(keys(fromPB), keys(fromText)); d != "" {
			t.Fatalf("protobuf vs its text: %s, for\n%s", d, text.Bytes())
		}
	}
}

// generateProtobuf makes a delimited protobuf payload out of data, read as a
// sequence of choices.
func generateProtobuf(data []byte) []byte {
	next, pick := choices(data)
	floats := []float64{0, 1, -1, 0.5, 2.5, math.Inf(1), math.Inf(-1), math.NaN(), 1e-3, 100, math.Copysign(0, -1)}
	double := func(num protowire.Number) []byte { return doubleField(num, floats[next()%len(floats)]) }
	names := []string{"a", "a_bucket", "a_sum", "a_count", "h", "h_bucket", "s", "s_sum", "o", "apiserver_request_total"}
	labelNames := []string{"x", "le", "quantile", ""}
	labelValues := []string{"1", "0.5", "+Inf", "NaN", "", "x"}
	// noise is nothing, an unknown field, a known field of a wrong wire
	// type, or an empty known field (an empty value message is a value).
	noise := func() []byte {
		switch next() % 4 {
		case 1:
			return varintField(protowire.Number(20+next()%10), uint64(next()))
		case 2:
			return varintField(protowire.Number(1+next()%4), uint64(next()))
		case 3:
			return bytesField(protowire.Number(1+next()%4), nil)
		}
		return nil
	}
	// message returns the fields, shuffled a little, of a message.
	message := func(fields ...[]byte) []byte {
		if k := next() % (len(fields) + 1); k < len(fields) {
			fields[0], fields[k] = fields[k], fields[0]
		}
		return concat(append(fields, noise())...)
	}
	value := func(typ int) []byte {
		var fields [][]byte
		for range next() % 5 {
			switch op := next(); {
			case typ == typeSummary && op%3 == 0:
				fields = append(fields, bytesField(3, message(double(1), double(2))))
			case typ == typeSummary:
				fields = append(fields, varintField(1, uint64(next())), double(2))
			case (typ == typeHistogram || typ == typeGaugeHistogram) && op%3 == 0:
				fields = append(fields, bytesField(3, message(varintField(1, uint64(next())), double(2), double(4))))
			case typ == typeHistogram || typ == typeGaugeHistogram:
				fields = append(fields, varintField(1, uint64(next())), double(2), double(4),
					protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.VarintType), protowire.EncodeZigZag(3)))
			default:
				fields = append(fields, double(1))
			}
		}
		return message(fields...)
	}
	var out []byte
	for len(data) > 0 && len(out) < 4096 {
		typ := next() % 7
		metrics := next() % 4
		fields := make([][]byte, 0, 2+metrics)
		fields = append(fields, bytesField(1, []byte(pick(names))), varintField(3, uint64(typ)))
		for range metrics {
			labels := next() % 3
			metric := make([][]byte, 0, labels+2)
			for range labels {
				metric = append(metric, bytesField(1, message(bytesField(1, []byte(pick(labelNames))),
					bytesField(2, []byte(pick(labelValues))))))
			}
			for range 1 + next()%2 {
				vt := typ
				if next()%8 == 0 {
					vt = next() % 6
				}
				metric = append(metric, bytesField(valueField(int32(vt)), value(vt)))
			}
			fields = append(fields, bytesField(4, message(metric...)))
		}
		out = append(out, delimited(message(fields...))...)
	}
	return out
}
