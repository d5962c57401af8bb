// Package exposition is a fast, filtering reader of the Prometheus exposition
// formats: the text format 0.0.4 (and, leniently, OpenMetrics text) and the
// delimited protobuf format.
//
// A scrape of a big kube-apiserver is ~10 MB with tens of thousands of series,
// of which the operator needs a dozen families. Decoding all of it with
// expfmt costs hundreds of milliseconds and allocates many times the payload;
// the parsers here skip the families nobody asked for (in text, one name
// lookup and a jump to the next newline per line; in protobuf, a skip by
// length) and hand every sample of the wanted families to a callback without
// allocating per sample.
package exposition

import (
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"unsafe"

	"github.com/prometheus/common/expfmt"
)

// AcceptHeader is the Accept header to send when scraping: delimited protobuf
// preferred, the text format 0.0.4 as the fallback.
const AcceptHeader = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,` +
	`text/plain;version=0.0.4;q=0.3`

// Families is the set of wanted metric family names. A histogram or summary is
// named by its base name (e.g. "apiserver_request_duration_seconds"), a
// counter by its full name (e.g. "apiserver_request_total").
type Families map[string]struct{}

// Want returns the Families made of names.
func Want(names ...string) Families {
	f := make(Families, len(names))
	for _, n := range names {
		f[n] = struct{}{}
	}
	return f
}

// Suffix says which series of a histogram or summary a sample belongs to.
type Suffix uint8

const (
	// SuffixNone is a sample named like its family: a counter, gauge or
	// untyped sample, or a summary's quantile.
	SuffixNone Suffix = iota
	// SuffixBucket is a histogram bucket ("_bucket"); Sample.Le holds its
	// upper bound.
	SuffixBucket
	// SuffixSum is a histogram's or summary's "_sum".
	SuffixSum
	// SuffixCount is a histogram's or summary's "_count".
	SuffixCount
)

// label is one label pair. Both slices point into the input or into a
// parser's scratch space.
type label struct {
	name, value []byte
}

// Sample is one sample of a wanted family, valid only during the callback (it
// points into the input or into reused scratch space; nothing may be
// retained).
type Sample struct {
	// Family is the name as it appears in Families.
	Family string
	// Suffix says which series of a histogram or summary this is.
	Suffix Suffix
	// Le is the bucket's upper bound for SuffixBucket (math.Inf(1) for
	// +Inf), and 0 otherwise.
	Le float64
	// Value is the sample's value.
	Value float64

	// labels excludes "le" on buckets; "quantile" is an ordinary label.
	labels []label
}

// Label returns the (unescaped) value of a label and whether it is present.
func (s *Sample) Label(name string) ([]byte, bool) {
	for _, l := range s.labels {
		if string(l.name) == name {
			return l.value, true
		}
	}
	return nil, false
}

// Labels calls fn for each label pair until fn returns false.
func (s *Sample) Labels(fn func(name, value []byte) bool) {
	for _, l := range s.labels {
		if !fn(l.name, l.value) {
			return
		}
	}
}

// LabelPair is a label's name and value, for NewSample.
type LabelPair struct {
	Name, Value string
}

// NewSample returns a sample as a parser hands it to its callback, with
// copies of labels: samples read back from a recording are folded by the
// same code as a scrape's. Unlike a parsed sample, it is the caller's: it
// may keep it and set its Value before each use. For SuffixBucket, le is
// the bucket's upper bound and labels hold no "le", as parsed; for the
// other suffixes le is ignored (0).
func NewSample(family string, suffix Suffix, le, value float64, labels []LabelPair) *Sample {
	s := &Sample{Family: family, Suffix: suffix, Value: value, labels: make([]label, len(labels))}
	if suffix == SuffixBucket {
		s.Le = le
	}
	for i, l := range labels {
		s.labels[i] = label{name: []byte(l.Name), value: []byte(l.Value)}
	}
	return s
}

// Parse dispatches on a response's Content-Type: delimited protobuf goes to
// ParseProtobuf, OpenMetrics to a lenient text parse (exemplars and float
// timestamps are ignored), and everything else, including a missing or unknown
// Content-Type, to ParseText. Only protobuf encodings other than delimited
// are refused.
func Parse(contentType string, data []byte, want Families, fn func(*Sample)) error {
	format := expfmt.ResponseFormat(http.Header{"Content-Type": []string{contentType}})
	switch format.FormatType() {
	case expfmt.TypeProtoDelim:
		return ParseProtobuf(data, want, fn)
	case expfmt.TypeOpenMetrics:
		return parseText(data, want, fn, true)
	case expfmt.TypeTextPlain:
		return parseText(data, want, fn, false)
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	switch {
	case err != nil:
		return parseText(data, want, fn, false)
	case mediaType == expfmt.ProtoType:
		return fmt.Errorf("%w: %q", errUnsupportedFormat, contentType)
	case mediaType == expfmt.OpenMetricsType:
		return parseText(data, want, fn, true)
	}
	return parseText(data, want, fn, false)
}

var errUnsupportedFormat = errors.New("unsupported exposition format")

// ref is what a series name resolves to: a wanted family and a suffix.
type ref struct {
	family string
	suffix Suffix
}

// index resolves series names to wanted families. Its keys are the wanted
// names themselves, so that a ref's family is the caller's string.
type index map[string]ref

func newIndex(want Families) index {
	idx := make(index, len(want))
	for f := range want {
		if f != "" {
			idx[f] = ref{family: f}
		}
	}
	return idx
}

// resolve returns the wanted family of a series name: the name itself if it
// is wanted, else, for a name ending in "_bucket", "_sum" or "_count", its base
// if that is wanted.
func (x index) resolve(name []byte) (ref, bool) {
	if r, ok := x[string(name)]; ok {
		return r, true
	}
	var base []byte
	var suffix Suffix
	switch n := len(name); {
	case n > len("_bucket") && string(name[n-len("_bucket"):]) == "_bucket":
		base, suffix = name[:n-len("_bucket")], SuffixBucket
	case n > len("_sum") && string(name[n-len("_sum"):]) == "_sum":
		base, suffix = name[:n-len("_sum")], SuffixSum
	case n > len("_count") && string(name[n-len("_count"):]) == "_count":
		base, suffix = name[:n-len("_count")], SuffixCount
	default:
		return ref{}, false
	}
	r, ok := x[string(base)]
	r.suffix = suffix
	return r, ok
}

var (
	errNoLe    = errors.New(`bucket without an "le" label`)
	errBadLe   = errors.New(`invalid "le" label`)
	leLabel    = []byte("le")
	quantLabel = []byte("quantile")
)

// takeLe removes every "le" label from labels and returns the value of the
// last one, parsed, as text parsers do.
func takeLe(labels []label) ([]label, float64, error) {
	n, found := 0, false
	var le float64
	for _, l := range labels {
		if len(l.name) == 2 && l.name[0] == 'l' && l.name[1] == 'e' {
			v, ok := parseFloat(l.value)
			if !ok {
				return nil, 0, fmt.Errorf("%w %q", errBadLe, l.value)
			}
			le, found = v, true
			continue
		}
		labels[n] = l
		n++
	}
	if !found {
		return nil, 0, errNoLe
	}
	return labels[:n], le, nil
}

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloat parses a sample value or an "le" or "quantile" label as expfmt
// does: strconv.ParseFloat (so also "+Inf", "-Inf" and "NaN"), without hex
// floats or underscores, and without out-of-range values.
func parseFloat(b []byte) (float64, bool) {
	if f, ok := parseDecimal(b); ok {
		return f, true
	}
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c == 'p' || c == 'P' || c == '_' {
			return 0, false
		}
	}
	// The error, which would hold the string, is dropped, so the string
	// never outlives b.
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	return f, err == nil
}

// parseDecimal parses the common forms "123", "-1.25" and ".5" exactly (a
// mantissa below 2^53 and at most 22 fraction digits make one correctly
// rounded division), and reports false for anything else.
func parseDecimal(b []byte) (float64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64
	digits, frac := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		mant = mant*10 + uint64(b[i]-'0')
		digits++
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			mant = mant*10 + uint64(b[i]-'0')
			digits++
			frac++
		}
	}
	if i != len(b) || digits == 0 || digits > 19 || mant > 1<<53 || frac >= len(pow10) {
		return 0, false
	}
	f := float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	return f, true
}

// appendFloat formats f as expfmt's text encoder does, so that a "quantile"
// or "le" label read from protobuf equals the one read from text.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
