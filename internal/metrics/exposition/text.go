package exposition

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// ParseText parses the text format (0.0.4), calling fn for every sample of a
// wanted family.
//
// A line whose series name is not wanted costs one name lookup (none when it
// repeats the previous line's name) and a jump to the next newline; its labels
// are not read. A series name resolves to a family as Families says: the name
// itself if it is wanted (SuffixNone), else, if it ends in "_bucket", "_sum" or
// "_count", its base if that is wanted. # HELP and # TYPE lines are not needed
// for that and are skipped like all comments.
//
// The grammar is expfmt's TextParser's, including quoted UTF-8 names
// ({"name", ...} and "name"{...}) and an optional integer timestamp, which is
// ignored. The parser is more lenient in a few places: a missing final
// newline, trailing blanks and a CR before the newline are accepted, and
// unwanted lines are not checked at all. It is stricter in one: a "_bucket"
// sample of a wanted histogram needs an "le" label holding a number. A
// malformed line of a wanted family stops the parse with an error naming the
// line.
func ParseText(data []byte, want Families, fn func(*Sample)) error {
	return parseText(data, want, fn, false)
}

var (
	errNoValue      = errors.New("missing sample value")
	errBadValue     = errors.New("invalid sample value")
	errBadTimestamp = errors.New("invalid timestamp")
	errTrailing     = errors.New("unexpected text after the timestamp")
	errNoName       = errors.New("missing metric name")
	errTwoNames     = errors.New("two metric names")
	errLabelName    = errors.New("invalid label name")
	errNoEquals     = errors.New(`expected "=" after a label name`)
	errNoQuote      = errors.New(`expected '"' to open a label value`)
	errLabelEnd     = errors.New(`expected "," or "}" after a label value`)
	errUnterminated = errors.New("unterminated quoted string")
	errBadEscape    = errors.New(`invalid escape sequence (want \\, \" or \n)`)
)

// byteClass returns a table of the bytes for which in is true.
func byteClass(in func(c byte) bool) *[256]bool {
	var t [256]bool
	for c := range t {
		t[c] = in(byte(c))
	}
	return &t
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

var (
	// labelChar holds the bytes of an unquoted label name.
	labelChar = byteClass(func(c byte) bool { return isLetter(c) || isDigit(c) })
	// nameChar holds the bytes of an unquoted metric name.
	nameChar = byteClass(func(c byte) bool { return isLetter(c) || isDigit(c) || c == ':' })
	// nameCont holds the bytes that continue a metric name token: a quote
	// there starts a quoted part.
	nameCont = byteClass(func(c byte) bool { return isLetter(c) || isDigit(c) || c == ':' || c == '"' })
)

// textParser holds the state of one ParseText call, reused from line to line.
type textParser struct {
	names index
	fn    func(*Sample)
	// om accepts OpenMetrics' exemplars and float timestamps.
	om     bool
	sample Sample
	// labels and scratch (unescaped names and values) hold the current
	// line's labels.
	labels  []label
	scratch []byte
}

func parseText(data []byte, want Families, fn func(*Sample), om bool) error {
	if len(want) == 0 {
		return nil
	}
	p := &textParser{names: newIndex(want), fn: fn, om: om}
	return p.parse(data)
}

func (p *textParser) parse(data []byte) error {
	// last is the previous line's unquoted metric name and lastRef, lastOK
	// what it resolved to: a histogram's lines repeat the name, and comparing
	// bytes is cheaper than scanning and looking up the name.
	var last []byte
	var lastRef ref
	var lastOK bool
	for pos := 0; pos < len(data); {
		start := pos
		pos = skipBlanks(data, pos)
		if pos == len(data) {
			break
		}
		switch data[pos] {
		case '\n':
			pos++
			continue
		case '#':
			pos = lineEnd(data, pos) + 1
			continue
		case '{':
			eol := lineEnd(data, pos)
			if err := p.bracesLine(data[pos+1 : eol]); err != nil {
				return lineError(data, start, err)
			}
			pos = eol + 1
			continue
		}
		var i int // the end of the name
		if n := len(last); n > 0 && pos+n < len(data) && !nameCont[data[pos+n]] &&
			string(data[pos:pos+n]) == string(last) {
			i = pos + n
		} else {
			for i = pos; i < len(data) && nameChar[data[i]]; i++ {
			}
			if i < len(data) && data[i] == '"' {
				eol := lineEnd(data, pos)
				if err := p.quotedNameLine(data[pos:eol]); err != nil {
					return lineError(data, start, err)
				}
				pos = eol + 1
				continue
			}
			last = data[pos:i]
			lastRef, lastOK = p.names.resolve(last)
		}
		eol := lineEnd(data, i)
		if lastOK {
			p.reset()
			if err := p.line(data[i:eol], lastRef); err != nil {
				return lineError(data, start, err)
			}
		}
		pos = eol + 1
	}
	return nil
}

// lineEnd returns the index of the newline ending the line that holds
// data[i], or len(data).
func lineEnd(data []byte, i int) int {
	if j := bytes.IndexByte(data[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(data)
}

func lineError(data []byte, start int, err error) error {
	return fmt.Errorf("text exposition: line %d: %w", bytes.Count(data[:start], []byte{'\n'})+1, err)
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

func (p *textParser) reset() {
	p.labels = p.labels[:0]
	p.scratch = p.scratch[:0]
}

// line parses what follows the metric name of a wanted family's sample: the
// optional label set, the value and the optional timestamp.
func (p *textParser) line(rest []byte, r ref) error {
	rest = trimCR(rest)
	k := skipBlanks(rest, 0)
	if k < len(rest) && rest[k] == '{' {
		var err error
		if k, err = p.labelSet(rest, k+1, nil); err != nil {
			return err
		}
		k = skipBlanks(rest, k)
	}
	return p.valueAndEmit(rest[k:], r)
}

// quotedNameLine parses a line whose metric name has a quoted part, e.g.
// "name"{...} 1.
func (p *textParser) quotedNameLine(line []byte) error {
	p.reset()
	name, k, err := p.token(line, 0, nameChar)
	if err != nil {
		return err
	}
	r, ok := p.names.resolve(name)
	if !ok {
		return nil
	}
	return p.line(line[k:], r)
}

// bracesLine parses a line in which the metric name is inside the braces, e.g.
// {"name", a="b"} 1; line starts after the "{".
func (p *textParser) bracesLine(line []byte) error {
	line = trimCR(line)
	p.reset()
	var name []byte
	k, err := p.labelSet(line, 0, &name)
	if err != nil {
		return err
	}
	if name == nil {
		return errNoName
	}
	r, ok := p.names.resolve(name)
	if !ok {
		return nil
	}
	return p.valueAndEmit(line[skipBlanks(line, k):], r)
}

// labelSet parses label pairs from line[k:], just after the "{", through the
// "}", and returns the index after it. If name is not nil, one bare token (the
// metric name in the {"name", ...} syntax) is allowed and stored in *name.
func (p *textParser) labelSet(line []byte, k int, name *[]byte) (int, error) {
	for {
		k = skipBlanks(line, k)
		if k == len(line) {
			return 0, errLabelEnd
		}
		if line[k] == '}' {
			return k + 1, nil
		}
		lname, next, err := p.token(line, k, labelChar)
		if err != nil {
			return 0, err
		}
		if len(lname) == 0 {
			return 0, errLabelName
		}
		k = skipBlanks(line, next)
		if k == len(line) {
			return 0, errNoEquals
		}
		if line[k] != '=' {
			if name == nil || (line[k] != ',' && line[k] != '}') {
				return 0, errNoEquals
			}
			if *name != nil {
				return 0, errTwoNames
			}
			*name = lname
			if line[k] == ',' {
				k++
			}
			continue
		}
		k = skipBlanks(line, k+1)
		if k == len(line) || line[k] != '"' {
			return 0, errNoQuote
		}
		value, next, err := p.quoted(line, k+1, nil)
		if err != nil {
			return 0, err
		}
		p.labels = append(p.labels, label{name: lname, value: value})
		k = skipBlanks(line, next)
		switch {
		case k == len(line):
			return 0, errLabelEnd
		case line[k] == ',':
			k++
		case line[k] != '}':
			return 0, errLabelEnd
		}
	}
}

// token reads a metric name (class nameChar) or a label name (class
// labelChar) at line[k:] as expfmt does: unquoted bytes of the class, not
// starting with a digit, then optionally a quoted part, which ends the token.
// It returns an empty token if line[k] cannot start one.
func (p *textParser) token(line []byte, k int, class *[256]bool) ([]byte, int, error) {
	if k == len(line) || line[k] != '"' && (!class[line[k]] || isDigit(line[k])) {
		return nil, k, nil
	}
	j := k
	for j < len(line) && class[line[j]] {
		j++
	}
	if j == len(line) || line[j] != '"' {
		return line[k:j], j, nil
	}
	return p.quoted(line, j+1, line[k:j])
}

// quoted reads a quoted string starting at line[k], just after the opening
// quote, prefixed by prefix, and returns it unescaped and the index after the
// closing quote. Only a string with escapes or a prefix is copied (to
// p.scratch).
func (p *textParser) quoted(line []byte, k int, prefix []byte) ([]byte, int, error) {
	e := k
	for e < len(line) && line[e] != '"' && line[e] != '\\' {
		e++
	}
	if e < len(line) && line[e] == '"' && len(prefix) == 0 {
		return line[k:e], e + 1, nil
	}
	start := len(p.scratch)
	p.scratch = append(p.scratch, prefix...)
	p.scratch = append(p.scratch, line[k:e]...)
	for e < len(line) {
		switch c := line[e]; c {
		case '"':
			return p.scratch[start:], e + 1, nil
		case '\\':
			if e+1 == len(line) {
				return nil, 0, errUnterminated
			}
			switch line[e+1] {
			case '\\', '"':
				p.scratch = append(p.scratch, line[e+1])
			case 'n':
				p.scratch = append(p.scratch, '\n')
			default:
				return nil, 0, errBadEscape
			}
			e += 2
		default:
			p.scratch = append(p.scratch, c)
			e++
		}
	}
	return nil, 0, errUnterminated
}

// valueAndEmit parses the value and the optional timestamp in tail, and calls
// fn.
func (p *textParser) valueAndEmit(tail []byte, r ref) error {
	j := 0
	for j < len(tail) && tail[j] != ' ' && tail[j] != '\t' {
		j++
	}
	if j == 0 {
		return errNoValue
	}
	v, ok := parseFloat(tail[:j])
	if !ok {
		return fmt.Errorf("%w %q", errBadValue, tail[:j])
	}
	if k := skipBlanks(tail, j); k < len(tail) && !p.exemplar(tail[k]) {
		t := k
		for t < len(tail) && tail[t] != ' ' && tail[t] != '\t' {
			t++
		}
		if !p.timestamp(tail[k:t]) {
			return fmt.Errorf("%w %q", errBadTimestamp, tail[k:t])
		}
		if k = skipBlanks(tail, t); k < len(tail) && !p.exemplar(tail[k]) {
			return errTrailing
		}
	}
	s := &p.sample
	s.Family, s.Suffix, s.Value, s.Le = r.family, r.suffix, v, 0
	s.labels = p.labels
	if r.suffix == SuffixBucket {
		var err error
		if s.labels, s.Le, err = takeLe(p.labels); err != nil {
			return err
		}
	}
	p.fn(s)
	return nil
}

// exemplar reports whether c starts an OpenMetrics exemplar, which is ignored.
func (p *textParser) exemplar(c byte) bool {
	return p.om && c == '#'
}

// timestamp reports whether b is a valid timestamp: integer milliseconds, or
// in OpenMetrics float seconds.
func (p *textParser) timestamp(b []byte) bool {
	if p.om {
		_, ok := parseFloat(b)
		return ok
	}
	_, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(b), len(b)), 10, 64)
	return err == nil
}
