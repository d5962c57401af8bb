package exposition

import (
	"slices"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	want := Want("a", "h", "s", "x_count")
	tests := []struct {
		name  string
		input string
		// want is the samples as rec.key renders them.
		want []string
		// err, if not empty, is part of the error wanted.
		err string
	}{
		{
			name:  "a sample with labels and a timestamp yields one sample",
			input: "a{x=\"1\",y=\"2\"} 3 1700000000000\n",
			want:  []string{`a{x="1",y="2"} 3`},
		},
		{
			name:  "unwanted families are skipped, even malformed ones",
			input: "b{x=\"1\" garbage\nab 1\na 2\nb_bucket{le=\"x\"} y\n",
			want:  []string{`a{} 2`},
		},
		{
			name: "a histogram yields buckets without their le label, a sum and a count",
			input: "# TYPE h histogram\nh_bucket{v=\"GET\",le=\"0.5\"} 1\nh_bucket{v=\"GET\",le=\"+Inf\"} 2\n" +
				"h_sum{v=\"GET\"} 0.75\nh_count{v=\"GET\"} 2\n",
			want: []string{`h_bucket{v="GET" le=0.5} 1`, `h_bucket{v="GET" le=+Inf} 2`, `h_sum{v="GET"} 0.75`, `h_count{v="GET"} 2`},
		},
		{
			name:  "suffixes resolve without TYPE lines, le anywhere in the labels",
			input: "h_bucket{le=\"1e-3\",v=\"PUT\"} 7\nh_sum 1\nh_count 2\nh 3\n",
			want:  []string{`h_bucket{v="PUT" le=0.001} 7`, `h_sum{} 1`, `h_count{} 2`, `h{} 3`},
		},
		{
			name:  "a wanted name that ends in a suffix is taken as it is",
			input: "x_count{le=\"1\"} 4\nx_count_sum 5\n",
			want:  []string{`x_count{le="1"} 4`, `x_count_sum{} 5`},
		},
		{
			name:  "a summary keeps quantile as an ordinary label",
			input: "# TYPE s summary\ns{quantile=\"0.99\"} 0.5\ns_sum 3\ns_count 4\n",
			want:  []string{`s{quantile="0.99"} 0.5`, `s_sum{} 3`, `s_count{} 4`},
		},
		{
			name:  "escapes in label values are unescaped",
			input: `a{x="b\\c\"d\ne",y="\\"} 1` + "\n",
			want:  []string{`a{x="b\\c\"d\ne",y="\\"} 1`},
		},
		{
			name:  "quoted metric and label names are read, with escapes",
			input: "{\"a\", \"x y\"=\"1\"} 1\n\"a\"{\"q\\\"\"=\"2\"} 2\n{z=\"3\",\"h_sum\"} 3\n",
			want:  []string{`a{x y="1"} 1`, `a{q"="2"} 2`, `h_sum{z="3"} 3`},
		},
		{
			name:  "blanks, tabs, a trailing comma, CRLF and a missing final newline are accepted",
			input: "  a { x = \"1\" , } \t 1 \t\r\n\ta\t2",
			want:  []string{`a{x="1"} 1`, `a{} 2`},
		},
		{
			name:  "comments and empty lines are skipped",
			input: "# HELP a the a\n\n   \n# TYPE a counter\n#a 9\n a 1\n",
			want:  []string{`a{} 1`},
		},
		{
			name:  "a value may follow a name directly, as expfmt allows",
			input: "a-1\na{x=\"1\"}2\n",
			want:  []string{`a{} -1`, `a{x="1"} 2`},
		},
		{
			name:  "values take every form of strconv.ParseFloat",
			input: "a 1e3\na .5\na -0\na +Inf\na -Inf\na NaN\na 12345678901234567890\na 0.1000000000000000055511151231257827\n",
			want: []string{`a{} 1000`, `a{} 0.5`, `a{} 0`, `a{} +Inf`, `a{} -Inf`, `a{} NaN`,
				`a{} 1.2345678901234567e+19`, `a{} 0.1`},
		},
		{
			name:  "a malformed line names its line number",
			input: "a 1\n\na{x=\"1\"}\n",
			want:  []string{`a{} 1`},
			err:   "line 3: missing sample value",
		},
		{
			name:  "hex floats and underscores are refused as expfmt refuses them",
			input: "a 0x1p3\n",
			err:   `line 1: invalid sample value "0x1p3"`,
		},
		{
			name:  "a bucket without le is refused",
			input: "h_bucket{x=\"1\"} 3\n",
			err:   `bucket without an "le" label`,
		},
		{
			name:  "a bucket with a non-numeric le is refused",
			input: "h_bucket{le=\"big\"} 3\n",
			err:   `invalid "le" label "big"`,
		},
		{
			name:  "an unknown escape is refused",
			input: `a{x="\t"} 1`,
			err:   "invalid escape sequence",
		},
		{
			name:  "an unterminated label value is refused",
			input: "a{x=\"1} 1\n",
			err:   "unterminated quoted string",
		},
		{
			name:  "a label without a value is refused",
			input: "a{x} 1\n",
			err:   `expected "=" after a label name`,
		},
		{
			name:  "an unquoted label value is refused",
			input: "a{x=1} 1\n",
			err:   `expected '"' to open a label value`,
		},
		{
			name:  "text after the timestamp is refused",
			input: "a 1 2 3\n",
			err:   "unexpected text after the timestamp",
		},
		{
			name:  "a non-integer timestamp is refused",
			input: "a 1 2.5\n",
			err:   `invalid timestamp "2.5"`,
		},
		{
			name:  "two metric names in braces are refused",
			input: "{a, b} 1\n",
			err:   "two metric names",
		},
		{
			name:  "a label set without a name is refused",
			input: "{x=\"1\"} 1\n",
			err:   "missing metric name",
		},
		{
			name:  "an exemplar is refused outside OpenMetrics",
			input: "a 1 # {t=\"1\"} 1\n",
			err:   "invalid timestamp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(ParseText, []byte(tt.input), want)
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

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
