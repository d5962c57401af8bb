package exposition

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/loadshed/loadshed/test/testutil"
)

// renderText writes fams in the text format, as a server would.
func renderText(tb testing.TB, fams []*dto.MetricFamily) []byte {
	tb.Helper()
	var b bytes.Buffer
	for _, mf := range fams {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Bytes()
}

// encodeDelimited writes fams in the delimited protobuf format.
func encodeDelimited(tb testing.TB, fams []*dto.MetricFamily) []byte {
	tb.Helper()
	var b bytes.Buffer
	for _, mf := range fams {
		if _, err := protodelim.MarshalTo(&b, mf); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Bytes()
}

// sortedFamilies returns the families of expfmt's map by name.
func sortedFamilies(m map[string]*dto.MetricFamily) []*dto.MetricFamily {
	names := slices.Sorted(maps.Keys(m))
	fams := make([]*dto.MetricFamily, len(names))
	for i, n := range names {
		fams[i] = m[n]
	}
	return fams
}

func TestRecordedTextMatchesExpfmt(t *testing.T) {
	if !checkText(t, testutil.Recorded(t, "apiserver.txt"), Want(apiserverWanted...)) {
		t.Error("the recorded text payload was not compared")
	}
}

func TestRecordedProtobufMatchesProto(t *testing.T) {
	if !checkProtobuf(t, testutil.Recorded(t, "apiserver.pb"), Want(apiserverWanted...)) {
		t.Error("the recorded protobuf payload was not compared")
	}
}

func TestBothFormatsOfTheSameDataYieldTheSameSamples(t *testing.T) {
	want := Want(apiserverWanted...)
	pbFams, err := decodeDelimited(testutil.Recorded(t, "apiserver.pb"))
	if err != nil {
		t.Fatal(err)
	}
	textFams, err := expfmtText(testutil.Recorded(t, "apiserver.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		text, pb   []byte
		minSamples int
	}{
		{
			name:       "the recorded protobuf payload and its text rendering",
			text:       renderText(t, pbFams),
			pb:         testutil.Recorded(t, "apiserver.pb"),
			minSamples: 6000,
		},
		{
			name:       "the recorded text payload and its protobuf encoding",
			text:       testutil.Recorded(t, "apiserver.txt"),
			pb:         encodeDelimited(t, sortedFamilies(textFams)),
			minSamples: 6000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromText, err := collect(ParseText, tt.text, want)
			if err != nil {
				t.Fatal(err)
			}
			fromPB, err := collect(ParseProtobuf, tt.pb, want)
			if err != nil {
				t.Fatal(err)
			}
			if len(fromText) < tt.minSamples {
				t.Errorf("%d samples, want at least %d", len(fromText), tt.minSamples)
			}
			if d := diffKeys(keys(fromPB), keys(fromText)); d != "" {
				t.Errorf("protobuf vs text: %s", d)
			}
		})
	}
}

// The two recorded payloads are two scrapes taken moments apart: the same
// series, and the same values but for the few counters that moved between
// them.
func TestRecordedScrapesHaveTheSameSeries(t *testing.T) {
	want := Want(apiserverWanted...)
	fromText, err := collect(ParseText, testutil.Recorded(t, "apiserver.txt"), want)
	if err != nil {
		t.Fatal(err)
	}
	fromPB, err := collect(ParseProtobuf, testutil.Recorded(t, "apiserver.pb"), want)
	if err != nil {
		t.Fatal(err)
	}
	series := func(rs []rec) []string {
		ks := keys(rs)
		for i, k := range ks {
			ks[i] = k[:strings.LastIndexByte(k, ' ')]
		}
		slices.Sort(ks)
		return ks
	}
	if d := diffKeys(series(fromPB), series(fromText)); d != "" {
		t.Errorf("series: protobuf vs text: %s", d)
	}
	moved := 0
	textKeys, pbKeys := keys(fromText), keys(fromPB)
	for _, k := range pbKeys {
		if _, found := slices.BinarySearch(textKeys, k); !found {
			moved++
			t.Logf("moved: %s", k)
		}
	}
	const most = 5
	if moved > most {
		t.Errorf("%d of %d samples have other values, want at most %d", moved, len(pbKeys), most)
	}
}
