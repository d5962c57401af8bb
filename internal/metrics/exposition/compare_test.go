package exposition

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
)

// apiserverWanted is the set of families the operator reads from
// kube-apiserver.
var apiserverWanted = []string{
	"apiserver_current_inflight_requests",
	"apiserver_flowcontrol_current_inqueue_requests",
	"apiserver_flowcontrol_rejected_requests_total",
	"apiserver_request_sli_duration_seconds",
	"apiserver_request_duration_seconds",
	"apiserver_request_total",
	"apiserver_flowcontrol_dispatched_requests_total",
	"apiserver_flowcontrol_current_executing_seats",
	"apiserver_flowcontrol_nominal_limit_seats",
	"etcd_request_duration_seconds",
	"apiserver_request_terminations_total",
}

// rec is a sample copied out of the callback.
type rec struct {
	family string
	suffix Suffix
	le     float64
	labels [][2]string
	value  float64
}

func recOf(s *Sample) rec {
	r := rec{family: s.Family, suffix: s.Suffix, le: s.Le, value: s.Value}
	s.Labels(func(name, value []byte) bool {
		r.labels = append(r.labels, [2]string{string(name), string(value)})
		return true
	})
	return r
}

func canonFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f == 0:
		return "0"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

var suffixNames = [...]string{"", "_bucket", "_sum", "_count"}

// key renders a sample canonically: labels sorted, -0 as 0, le only on
// buckets.
func (r rec) key() string {
	ls := slices.Clone(r.labels)
	slices.SortFunc(ls, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	var b strings.Builder
	b.WriteString(r.family)
	b.WriteString(suffixNames[r.suffix])
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", l[0], l[1])
	}
	if r.suffix == SuffixBucket {
		fmt.Fprintf(&b, " le=%s", canonFloat(r.le))
	}
	b.WriteString("} ")
	b.WriteString(canonFloat(r.value))
	return b.String()
}

func keys(rs []rec) []string {
	ks := make([]string, len(rs))
	for i, r := range rs {
		ks[i] = r.key()
	}
	slices.Sort(ks)
	return ks
}

// diffKeys describes how two sorted multisets differ, or returns "".
func diffKeys(got, want []string) string {
	var missing, extra []string
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || (i < len(got) && got[i] < want[j]):
			extra = append(extra, got[i])
			i++
		case i == len(got) || got[i] > want[j]:
			missing = append(missing, want[j])
			j++
		default:
			i++
			j++
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	const most = 5
	return fmt.Sprintf("%d samples, want %d; %d missing, e.g. %q; %d unexpected, e.g. %q",
		len(got), len(want), len(missing), missing[:min(most, len(missing))], len(extra), extra[:min(most, len(extra))])
}

type parseFunc func(data []byte, want Families, fn func(*Sample)) error

func collect(parse parseFunc, data []byte, want Families) ([]rec, error) {
	var rs []rec
	err := parse(data, want, func(s *Sample) { rs = append(rs, recOf(s)) })
	return rs, err
}

// expfmtText parses data with expfmt's TextParser. A panic of the parser
// (v0.73.1 panics on a histogram's or summary's labels in the {"name", ...}
// syntax when the line before was of another family and no histogram or
// summary line came before: its label map is nil) is returned as an error.
func expfmtText(data []byte) (fams map[string]*dto.MetricFamily, err error) {
	defer func() {
		if r := recover(); r != nil {
			fams, err = nil, fmt.Errorf("expfmt panicked: %v", r)
		}
	}()
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(data))
}

func dtoLabels(ls []*dto.LabelPair) [][2]string {
	out := make([][2]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, [2]string{l.GetName(), l.GetValue()})
	}
	return out
}

// without returns ls without the labels called name, and the last value of
// those.
func without(ls [][2]string, name string) ([][2]string, string, bool) {
	out := make([][2]string, 0, len(ls))
	var v string
	found := false
	for _, l := range ls {
		if l[0] == name {
			v, found = l[1], true
			continue
		}
		out = append(out, l)
	}
	return out, v, found
}

func isHistogram(t dto.MetricType) bool {
	return t == dto.MetricType_HISTOGRAM || t == dto.MetricType_GAUGE_HISTOGRAM
}

// fromExpfmt turns expfmt's families into the samples ParseText yields for
// want. A histogram's count that expfmt made up (normalizeHistogram sets a
// missing count to 0 when buckets are floats) is returned apart, as optional.
func fromExpfmt(fams map[string]*dto.MetricFamily, want Families) (samples, optional []rec) {
	idx := newIndex(want)
	for name, mf := range fams {
		typ := mf.GetType()
		_, wanted := want[name]
		switch {
		case isHistogram(typ):
			if !wanted {
				continue
			}
			for _, m := range mf.GetMetric() {
				h, ls := m.GetHistogram(), dtoLabels(m.GetLabel())
				for _, b := range h.GetBucket() {
					v := float64(b.GetCumulativeCount())
					if b.CumulativeCountFloat != nil {
						v = b.GetCumulativeCountFloat()
					}
					samples = append(samples, rec{name, SuffixBucket, b.GetUpperBound(), ls, v})
				}
				if h.SampleSum != nil {
					samples = append(samples, rec{name, SuffixSum, 0, ls, h.GetSampleSum()})
				}
				switch {
				case h.SampleCountFloat != nil && h.GetSampleCountFloat() == 0 && h.SampleCount == nil:
					optional = append(optional, rec{name, SuffixCount, 0, ls, 0})
				case h.SampleCountFloat != nil:
					samples = append(samples, rec{name, SuffixCount, 0, ls, h.GetSampleCountFloat()})
				case h.SampleCount != nil:
					samples = append(samples, rec{name, SuffixCount, 0, ls, float64(h.GetSampleCount())})
				}
			}
		case typ == dto.MetricType_SUMMARY:
			if !wanted {
				continue
			}
			for _, m := range mf.GetMetric() {
				s, ls := m.GetSummary(), dtoLabels(m.GetLabel())
				for _, q := range s.GetQuantile() {
					qls := append(slices.Clone(ls), [2]string{"quantile", string(appendFloat(nil, q.GetQuantile()))})
					samples = append(samples, rec{name, SuffixNone, 0, qls, q.GetValue()})
				}
				if s.SampleSum != nil {
					samples = append(samples, rec{name, SuffixSum, 0, ls, s.GetSampleSum()})
				}
				if s.SampleCount != nil {
					samples = append(samples, rec{name, SuffixCount, 0, ls, float64(s.GetSampleCount())})
				}
			}
		default:
			r, ok := idx.resolve([]byte(name))
			if !ok {
				continue
			}
			for _, m := range mf.GetMetric() {
				var v float64
				switch {
				case m.Counter != nil:
					v = m.Counter.GetValue()
				case m.Gauge != nil:
					v = m.Gauge.GetValue()
				case m.Untyped != nil:
					v = m.Untyped.GetValue()
				default:
					continue
				}
				ls := dtoLabels(m.GetLabel())
				var le float64
				if r.suffix == SuffixBucket {
					var lv string
					ls, lv, _ = without(ls, "le")
					le, _ = parseFloat([]byte(lv))
				}
				samples = append(samples, rec{r.family, r.suffix, le, ls, v})
			}
		}
	}
	return samples, optional
}

// incomparable says why expfmt's view of data cannot be compared with
// ParseText's, or returns "". expfmt reads a histogram or summary by its #
// TYPE line, statefully, and ParseText by series names alone; the cases
// where that changes which family a line joins are left out:
//   - a typed histogram or summary F and also separate families F_bucket,
//     F_sum or F_count (lines that came before F's TYPE line);
//   - a typed histogram or summary whose name resolves to another wanted
//     family (a histogram called F_bucket when F is wanted);
//   - the {"name", ...} syntax for a typed histogram or summary, or with
//     labels before the name when there are histograms or summaries (expfmt
//     reads the labels of such a line with the state left by the line
//     before);
//   - a sample with a label twice (expfmt keeps the last "le" or "quantile"
//     of a histogram or summary, and refuses other duplicates);
//   - a typed histogram's or summary's sum or count twice for one series
//     (expfmt keeps the last integer and the last non-integer count apart,
//     and then prefers the latter).
func incomparable(data []byte, fams map[string]*dto.MetricFamily, ours []rec, want Families) string {
	idx := newIndex(want)
	typed := func(t dto.MetricType) bool { return isHistogram(t) || t == dto.MetricType_SUMMARY }
	for name, mf := range fams {
		if !typed(mf.GetType()) {
			continue
		}
		if _, ok := want[name]; ok {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if fams[name+s] != nil {
					return "typed family and " + name + s
				}
			}
		} else if _, ok := idx.resolve([]byte(name)); ok {
			return "typed family " + name + " resolves to a wanted one"
		}
	}
	lower := bytes.ToLower(data)
	anyTyped := bytes.Contains(lower, []byte("histogram")) || bytes.Contains(lower, []byte("summary"))
	for line := range bytes.Lines(data) {
		l := bytes.TrimLeft(line, " \t")
		if len(l) == 0 || l[0] != '{' {
			continue
		}
		name, first := bracesName(l[1:])
		if !first && anyTyped || typedTarget(fams, string(name)) {
			return "name in braces"
		}
	}
	sumsAndCounts := map[string]bool{}
	for _, r := range ours {
		if t := fams[r.family].GetType(); fams[r.family] != nil && (isHistogram(t) || t == dto.MetricType_SUMMARY) &&
			(r.suffix == SuffixSum || r.suffix == SuffixCount) {
			special := "le"
			if t == dto.MetricType_SUMMARY {
				special = "quantile"
			}
			ls, _, _ := without(r.labels, special)
			k := rec{family: r.family, suffix: r.suffix, labels: ls}.key()
			if sumsAndCounts[k] {
				return "a histogram's or summary's sum or count twice"
			}
			sumsAndCounts[k] = true
		}
		seen := map[string]bool{}
		for _, l := range r.labels {
			if seen[l[0]] {
				return "duplicate label " + l[0]
			}
			seen[l[0]] = true
		}
	}
	return ""
}

// bracesName returns the metric name of a line in the {"name", ...} syntax
// (from after the "{") and whether it comes first.
func bracesName(line []byte) (name []byte, first bool) {
	p := &textParser{}
	k := skipBlanks(line, 0)
	tok, next, err := p.token(line, k, labelChar)
	if next = skipBlanks(line, next); err == nil && len(tok) > 0 && next < len(line) && line[next] != '=' {
		return tok, true
	}
	_, _ = p.labelSet(line, 0, &name)
	return name, false
}

// typedTarget reports whether expfmt would put a sample called name in a
// typed histogram or summary.
func typedTarget(fams map[string]*dto.MetricFamily, name string) bool {
	typed := func(n string) bool {
		t := fams[n].GetType()
		return fams[n] != nil && (isHistogram(t) || t == dto.MetricType_SUMMARY)
	}
	if typed(name) {
		return true
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, s); ok && typed(base) {
			return true
		}
	}
	return false
}

// asExpfmtSees rewrites ParseText's samples as expfmt records them when a
// wanted family is a typed histogram or summary: a bare-name line of a
// histogram is a bucket if it has "le" and lost otherwise, as is a
// summary's without "quantile"; a bucket with le="NaN" or a quantile
// "NaN" is lost; "le" ("quantile") is dropped from a
// histogram's (summary's) sum and count; a summary's count is truncated to
// an integer.
func asExpfmtSees(ours []rec, fams map[string]*dto.MetricFamily) []rec {
	var out []rec
	for _, r := range ours {
		typ := fams[r.family].GetType()
		hist, summary := fams[r.family] != nil && isHistogram(typ), fams[r.family] != nil && typ == dto.MetricType_SUMMARY
		if !hist && !summary {
			out = append(out, r)
			continue
		}
		special := "le"
		if summary {
			special = "quantile"
		}
		switch r.suffix {
		case SuffixBucket:
			if hist && math.IsNaN(r.le) {
				continue
			}
		case SuffixNone:
			ls, v, found := without(r.labels, special)
			if !found {
				continue
			}
			f, _ := parseFloat([]byte(v))
			if math.IsNaN(f) {
				continue
			}
			if hist {
				r = rec{r.family, SuffixBucket, f, ls, r.value}
			} else {
				r.labels = append(ls, [2]string{"quantile", string(appendFloat(nil, f))})
			}
		case SuffixSum, SuffixCount:
			r.labels, _, _ = without(r.labels, special)
			if summary && r.suffix == SuffixCount {
				r.value = float64(uint64(r.value))
			}
		}
		out = append(out, r)
	}
	return out
}

// checkText compares ParseText with expfmt's TextParser on data. It fails if
// expfmt accepts data and ParseText does not (except for a "_bucket" sample
// without a numeric "le", which ParseText refuses on purpose) or yields other
// samples. It returns whether the samples were compared.
func checkText(t *testing.T, data []byte, want Families) bool {
	t.Helper()
	ours, ourErr := collect(ParseText, data, want)
	fams, err := expfmtText(data)
	if err != nil {
		return false
	}
	if ourErr != nil {
		if errors.Is(ourErr, errNoLe) || errors.Is(ourErr, errBadLe) {
			return false
		}
		t.Fatalf("expfmt accepts the input, ParseText fails: %v", ourErr)
	}
	if why := incomparable(data, fams, ours, want); why != "" {
		return false
	}
	expected, optional := fromExpfmt(fams, want)
	got := keys(asExpfmtSees(ours, fams))
	for _, o := range optional {
		if _, found := slices.BinarySearch(got, o.key()); found {
			expected = append(expected, o)
		}
	}
	if d := diffKeys(got, keys(expected)); d != "" {
		t.Fatalf("ParseText and expfmt differ: %s", d)
	}
	return true
}

// fromProto turns families decoded by proto into the samples ParseProtobuf
// must yield for want, by the rules in its doc comment. It returns
// errNoLe or errBadLe where ParseProtobuf must fail with them.
func fromProto(fams []*dto.MetricFamily, want Families) ([]rec, error) {
	idx := newIndex(want)
	var out []rec
	add := func(series string, ls [][2]string, v float64) error {
		r, ok := idx.resolve([]byte(series))
		if !ok {
			return nil
		}
		var le float64
		if r.suffix == SuffixBucket {
			// Every "le" must be a number, and the last one is the bound.
			found := false
			for _, l := range ls {
				if l[0] == "le" {
					var valid bool
					if le, valid = parseFloat([]byte(l[1])); !valid {
						return errBadLe
					}
					found = true
				}
			}
			if !found {
				return errNoLe
			}
			ls, _, _ = without(ls, "le")
		}
		out = append(out, rec{r.family, r.suffix, le, ls, v})
		return nil
	}
	for _, mf := range fams {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			ls := dtoLabels(m.GetLabel())
			var err error
			switch mf.GetType() {
			case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_UNTYPED:
				var v float64
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					if m.Counter == nil {
						continue
					}
					v = m.Counter.GetValue()
				case dto.MetricType_GAUGE:
					if m.Gauge == nil {
						continue
					}
					v = m.Gauge.GetValue()
				default:
					if m.Untyped == nil {
						continue
					}
					v = m.Untyped.GetValue()
				}
				err = add(name, ls, v)
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				if s == nil {
					continue
				}
				for _, q := range s.GetQuantile() {
					qls := append(slices.Clone(ls), [2]string{"quantile", string(appendFloat(nil, q.GetQuantile()))})
					if err = add(name, qls, q.GetValue()); err != nil {
						return nil, err
					}
				}
				if err = add(name+"_sum", ls, s.GetSampleSum()); err == nil {
					err = add(name+"_count", ls, float64(s.GetSampleCount()))
				}
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				err = histogramFromProto(m, name, ls, add)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func histogramFromProto(m *dto.Metric, name string, ls [][2]string, add func(string, [][2]string, float64) error) error {
	h := m.GetHistogram()
	if h == nil {
		return nil
	}
	count := h.GetSampleCountFloat()
	if count == 0 {
		count = float64(h.GetSampleCount())
	}
	infSeen := false
	bucket := func(le, v float64) error {
		// As in text: the bound follows the metric's labels.
		bls := append(slices.Clone(ls), [2]string{"le", string(appendFloat(nil, le))})
		return add(name+"_bucket", bls, v)
	}
	for _, b := range h.GetBucket() {
		v := b.GetCumulativeCountFloat()
		if v == 0 {
			v = float64(b.GetCumulativeCount())
		}
		if math.IsInf(b.GetUpperBound(), +1) {
			infSeen = true
		}
		if err := bucket(b.GetUpperBound(), v); err != nil {
			return err
		}
	}
	if !infSeen {
		if err := bucket(math.Inf(+1), count); err != nil {
			return err
		}
	}
	if err := add(name+"_sum", ls, h.GetSampleSum()); err != nil {
		return err
	}
	return add(name+"_count", ls, count)
}

// decodeDelimited decodes data with protodelim and proto. (Without a
// MaxSize, protodelim allocates what a length prefix says before reading,
// so that a few bytes take all memory; expfmt's decoder does just that.)
func decodeDelimited(data []byte) ([]*dto.MetricFamily, error) {
	r := bytes.NewReader(data)
	var fams []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		err := protodelim.UnmarshalOptions{MaxSize: int64(len(data))}.UnmarshalFrom(r, mf)
		if errors.Is(err, io.EOF) {
			return fams, nil
		}
		if err != nil {
			return nil, err
		}
		fams = append(fams, mf)
	}
}

// checkProtobuf compares ParseProtobuf with proto's decoding of data. It
// fails if proto accepts data and ParseProtobuf fails (other than as
// fromProto says) or yields other samples, and returns whether the samples
// were compared.
func checkProtobuf(t *testing.T, data []byte, want Families) bool {
	t.Helper()
	ours, ourErr := collect(ParseProtobuf, data, want)
	fams, err := decodeDelimited(data)
	if err != nil {
		return false
	}
	expected, wantErr := fromProto(fams, want)
	if wantErr != nil {
		if !errors.Is(ourErr, wantErr) {
			t.Fatalf("ParseProtobuf: got error %v, want %v", ourErr, wantErr)
		}
		return false
	}
	if ourErr != nil {
		t.Fatalf("proto accepts the input, ParseProtobuf fails: %v", ourErr)
	}
	if d := diffKeys(keys(ours), keys(expected)); d != "" {
		t.Fatalf("ParseProtobuf and proto differ: %s", d)
	}
	return true
}
