package exposition

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/loadshed/loadshed/test/testutil"
)

func TestWant(t *testing.T) {
	f := Want("a", "b", "a")
	if len(f) != 2 {
		t.Fatalf("got %d families, want 2", len(f))
	}
	for _, n := range []string{"a", "b"} {
		if _, ok := f[n]; !ok {
			t.Errorf("%q missing", n)
		}
	}
	if len(Want()) != 0 {
		t.Error("Want() is not empty")
	}
}

func TestSampleFamilyIsTheWantedString(t *testing.T) {
	name := strings.Repeat("a", 3) // not a constant: its own bytes
	want := Want(name)
	pb := encodeDelimited(t, []*dto.MetricFamily{{Name: proto.String("aaa"), Type: dto.MetricType_COUNTER.Enum(),
		Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(1)}}}}})
	tests := []struct {
		name  string
		parse parseFunc
		data  []byte
	}{
		{name: "text", parse: ParseText, data: []byte("aaa_sum 1\naaa 2\n")},
		{name: "protobuf", parse: ParseProtobuf, data: pb},
	}
	for _, tt := range tests {
		t.Run("in "+tt.name+" the family is the caller's string", func(t *testing.T) {
			n := 0
			err := tt.parse(tt.data, want, func(s *Sample) {
				n++
				if unsafe.StringData(s.Family) != unsafe.StringData(name) {
					t.Errorf("Family %q is a copy", s.Family)
				}
			})
			if err != nil || n == 0 {
				t.Fatalf("%d samples, error %v", n, err)
			}
		})
	}
}

func TestSampleLabels(t *testing.T) {
	s := Sample{labels: []label{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("")}, {[]byte("c"), []byte("3")}}}
	tests := []struct {
		name, label, value string
		ok                 bool
	}{
		{name: "a present label returns its value", label: "a", value: "1", ok: true},
		{name: "an empty label is present", label: "b", value: "", ok: true},
		{name: "an absent label is not", label: "le"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := s.Label(tt.label)
			if string(v) != tt.value || ok != tt.ok {
				t.Errorf("Label(%q) = %q, %v; want %q, %v", tt.label, v, ok, tt.value, tt.ok)
			}
		})
	}
	var seen []string
	s.Labels(func(name, value []byte) bool {
		seen = append(seen, string(name)+"="+string(value))
		return len(seen) < 2
	})
	if strings.Join(seen, ",") != "a=1,b=" {
		t.Errorf("Labels stopped after %q, want a=1,b=", seen)
	}
}

func TestParseDispatchesOnContentType(t *testing.T) {
	want := Want("a")
	text := []byte("a 1 # {trace=\"x\"} 0.5 1.25\n")
	plain := []byte("a 1\n")
	pb := encodeDelimited(t, []*dto.MetricFamily{{Name: proto.String("a"), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}}})
	tests := []struct {
		name        string
		contentType string
		data        []byte
		err         string
	}{
		{name: "delimited protobuf goes to ParseProtobuf", data: pb,
			contentType: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"},
		{name: "text 0.0.4 goes to ParseText", data: plain, contentType: "text/plain; version=0.0.4; charset=utf-8"},
		{name: "text without a version goes to ParseText", data: plain, contentType: "text/plain"},
		{name: "no content type falls back to text", data: plain, contentType: ""},
		{name: "an unknown content type falls back to text", data: plain, contentType: "text/html; charset=utf-8"},
		{name: "OpenMetrics 1.0.0 is read as text with exemplars", data: text,
			contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8"},
		{name: "OpenMetrics of an unknown version is read as text with exemplars", data: text,
			contentType: "application/openmetrics-text; version=9.9.9; charset=utf-8"},
		{name: "protobuf text encoding is refused", data: plain, err: "unsupported exposition format",
			contentType: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []rec
			err := Parse(tt.contentType, tt.data, want, func(s *Sample) { got = append(got, recOf(s)) })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := diffKeys(keys(got), []string{`a{} 1`}); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestAcceptHeaderPrefersProtobufThenText(t *testing.T) {
	h := http.Header{"Accept": []string{AcceptHeader}}
	tests := []struct {
		name   string
		offers []expfmt.Format
		want   expfmt.FormatType
	}{
		{name: "a server offering everything sends delimited protobuf",
			offers: expfmt.DefaultAcceptedFormats(), want: expfmt.TypeProtoDelim},
		{name: "a server offering OpenMetrics and text sends text",
			offers: []expfmt.Format{expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtText}, want: expfmt.TypeTextPlain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := expfmt.NegotiateAccept(h, tt.offers...); got.FormatType() != tt.want {
				t.Errorf("negotiated %q", got)
			}
		})
	}
}

func TestParseFloat(t *testing.T) {
	inputs := []string{"0", "-0", "1", "-1", "0.005", ".5", "5.", "123456789012345678", "1234567890123456789",
		"9007199254740993", "0.1", "-2.5e-3", "1e308", "+Inf", "-Inf", "NaN", "inf", "+1", "00012.50",
		"0.0000000000000000000001", "0.00000000000000000000001"}
	for _, in := range inputs {
		t.Run("the value "+in+" parses as strconv.ParseFloat parses it", func(t *testing.T) {
			want, err := strconv.ParseFloat(in, 64)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := parseFloat([]byte(in))
			if !ok || math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
				t.Errorf("parseFloat(%q) = %v, %v; want %v", in, got, ok, want)
			}
		})
	}
	for _, in := range []string{"", "-", ".", "1e", "0x10", "0x1p3", "1_000", "1e400", "--1", "1.2.3", "1 "} {
		t.Run("the value "+in+" is refused", func(t *testing.T) {
			if got, ok := parseFloat([]byte(in)); ok {
				t.Errorf("parseFloat(%q) = %v, want an error", in, got)
			}
		})
	}
}

func TestParsingAllocatesNothingPerSample(t *testing.T) {
	want := Want(apiserverWanted...)
	for _, name := range []string{"apiserver.txt", "apiserver.pb"} {
		data := testutil.Recorded(t, name)
		parse := ParseText
		if strings.HasSuffix(name, ".pb") {
			parse = ParseProtobuf
		}
		samples := 0
		allocs := testing.AllocsPerRun(5, func() {
			samples = 0
			if err := parse(data, want, func(*Sample) { samples++ }); err != nil {
				t.Fatal(err)
			}
		})
		// A few for the index and the scratch space, whatever the size.
		if allocs > 30 {
			t.Errorf("%s: %v allocations for %d samples, want at most 30", name, allocs, samples)
		}
	}
}
