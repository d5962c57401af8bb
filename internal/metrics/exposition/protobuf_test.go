package exposition

import (
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func lp(name, value string) *dto.LabelPair { return &dto.LabelPair{Name: &name, Value: &value} }

// wire helpers build messages field by field.
func bytesField(num protowire.Number, content ...[]byte) []byte {
	var b []byte
	for _, c := range content {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendBytes(b, c)
	}
	return b
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func doubleField(num protowire.Number, f float64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(nil, num, protowire.Fixed64Type), math.Float64bits(f))
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// delimited prefixes each message with its length.
func delimited(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = protowire.AppendBytes(b, m)
	}
	return b
}

func TestParseProtobuf(t *testing.T) {
	want := Want("a", "h", "s")
	counter := func(name string, v float64, labels ...*dto.LabelPair) *dto.MetricFamily {
		return &dto.MetricFamily{Name: &name, Type: dto.MetricType_COUNTER.Enum(),
			Metric: []*dto.Metric{{Label: labels, Counter: &dto.Counter{Value: &v}}}}
	}
	histogram := func(h *dto.Histogram) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String("h"), Type: dto.MetricType_HISTOGRAM.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{lp("v", "GET")}, Histogram: h}}}
	}
	aName := bytesField(1, []byte("a"))
	aMetric := bytesField(4, concat(bytesField(1, concat(bytesField(1, []byte("x")), bytesField(2, []byte("1")))),
		bytesField(3, doubleField(1, 5))))
	tests := []struct {
		name string
		// fams are encoded first, then raw is appended.
		fams []*dto.MetricFamily
		raw  []byte
		want []string
		err  string
	}{
		{
			name: "counters, gauges and untyped metrics yield their values",
			fams: []*dto.MetricFamily{
				counter("a", 1, lp("x", "1")),
				{Name: proto.String("a"), Type: dto.MetricType_GAUGE.Enum(),
					Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(2)}}}},
				{Name: proto.String("a"), Type: dto.MetricType_UNTYPED.Enum(),
					Metric: []*dto.Metric{{Untyped: &dto.Untyped{Value: proto.Float64(3)}}}},
				counter("b", 4),
			},
			want: []string{`a{x="1"} 1`, `a{} 2`, `a{} 3`},
		},
		{
			name: "a histogram without a +Inf bucket gets one equal to its count",
			fams: []*dto.MetricFamily{histogram(&dto.Histogram{
				SampleCount: proto.Uint64(3), SampleSum: proto.Float64(1.5),
				Bucket: []*dto.Bucket{{UpperBound: proto.Float64(0.5), CumulativeCount: proto.Uint64(1)}},
			})},
			want: []string{`h_bucket{v="GET" le=0.5} 1`, `h_bucket{v="GET" le=+Inf} 3`, `h_sum{v="GET"} 1.5`, `h_count{v="GET"} 3`},
		},
		{
			name: "a histogram with a +Inf bucket gets no second one",
			fams: []*dto.MetricFamily{histogram(&dto.Histogram{
				SampleCount: proto.Uint64(3), SampleSum: proto.Float64(1.5),
				Bucket: []*dto.Bucket{{UpperBound: proto.Float64(math.Inf(1)), CumulativeCount: proto.Uint64(2)}},
			})},
			want: []string{`h_bucket{v="GET" le=+Inf} 2`, `h_sum{v="GET"} 1.5`, `h_count{v="GET"} 3`},
		},
		{
			name: "float counts are used unless they are zero",
			fams: []*dto.MetricFamily{histogram(&dto.Histogram{
				SampleCountFloat: proto.Float64(2.5),
				Bucket: []*dto.Bucket{
					{UpperBound: proto.Float64(1), CumulativeCountFloat: proto.Float64(1.5)},
					{UpperBound: proto.Float64(2), CumulativeCountFloat: proto.Float64(0), CumulativeCount: proto.Uint64(2)},
				},
				Schema: proto.Int32(3), PositiveCount: []float64{1, 2},
			})},
			want: []string{`h_bucket{v="GET" le=1} 1.5`, `h_bucket{v="GET" le=2} 2`, `h_bucket{v="GET" le=+Inf} 2.5`,
				`h_sum{v="GET"} 0`, `h_count{v="GET"} 2.5`},
		},
		{
			name: "a summary yields its quantiles with a quantile label, its sum and its count",
			fams: []*dto.MetricFamily{{Name: proto.String("s"), Type: dto.MetricType_SUMMARY.Enum(),
				Metric: []*dto.Metric{{Summary: &dto.Summary{SampleCount: proto.Uint64(4), SampleSum: proto.Float64(3),
					Quantile: []*dto.Quantile{
						{Quantile: proto.Float64(0.5), Value: proto.Float64(1)},
						{Quantile: proto.Float64(0.99), Value: proto.Float64(2)},
					}}}}}},
			want: []string{`s{quantile="0.5"} 1`, `s{quantile="0.99"} 2`, `s_sum{} 3`, `s_count{} 4`},
		},
		{
			name: "a metric without the value of its family's type is skipped",
			fams: []*dto.MetricFamily{{Name: proto.String("a"), Type: dto.MetricType_COUNTER.Enum(),
				Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}}},
		},
		{
			name: "a counter named like a bucket of a wanted family is a bucket, its le label the bound",
			fams: []*dto.MetricFamily{counter("h_bucket", 6, lp("le", "0.25"), lp("v", "GET")), counter("h_count", 7)},
			want: []string{`h_bucket{v="GET" le=0.25} 6`, `h_count{} 7`},
		},
		{
			name: "an unwanted family is skipped without reading its metrics",
			raw:  delimited(concat(bytesField(1, []byte("b")), bytesField(4, []byte{0xff, 0xff, 0xff}))),
		},
		{
			name: "the type may follow the metrics",
			raw: delimited(concat(aName,
				bytesField(4, concat(bytesField(2, doubleField(1, 8)))),
				varintField(3, typeGauge))),
			want: []string{`a{} 8`},
		},
		{
			name: "unknown fields and fields of an unexpected wire type are skipped",
			raw: delimited(concat(aName, varintField(4, 1), varintField(99, 1),
				bytesField(4, concat(varintField(3, 1), bytesField(3, concat(doubleField(1, 9), varintField(1, 3), doubleField(7, 1))))))),
			want: []string{`a{} 9`},
		},
		{
			name: "repeated value messages merge and the last scalar wins",
			raw: delimited(concat(aName, bytesField(4, concat(
				bytesField(3, doubleField(1, 1)), bytesField(1, bytesField(1, []byte("x"))), bytesField(3, doubleField(1, 2)))))),
			want: []string{`a{x=""} 2`},
		},
		{
			name: "a family without a length prefix is refused",
			raw:  []byte{0xff},
			err:  "message 0 at byte 0: length",
		},
		{
			name: "a family longer than the data is refused",
			raw:  concat(delimited(concat(aName, aMetric)), []byte{0x10, 1}),
			want: []string{`a{x="1"} 5`},
			err:  "message 1 at byte 25: message longer than the data left",
		},
		{
			name: "a malformed metric of a wanted family is refused",
			raw:  delimited(concat(aName, bytesField(4, []byte{0x0a, 0x05, 0x01}))),
			err:  `family "a"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := append(encodeDelimited(t, tt.fams), tt.raw...)
			got, err := collect(ParseProtobuf, data, want)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("got error %v, want one containing %q", err, tt.err)
			}
			if d := diffKeys(keys(got), sortedCopy(tt.want)); d != "" {
				t.Error(d)
			}
		})
	}
}
