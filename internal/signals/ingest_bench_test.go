package signals

import (
	"strings"
	"testing"
	"time"

	"github.com/loadshed/loadshed/internal/metrics/exposition"
	"github.com/loadshed/loadshed/internal/policy"

	"github.com/loadshed/loadshed/test/testutil"
)

// BenchmarkIngestFold measures what one scrape costs the sampler: parsing
// a recorded kube-apiserver payload and folding it into the accumulators of
// every catalogue signal plus attribution. (The parser alone, on payloads
// up to 10 MB, is measured by exposition's BenchmarkIngest.)
func BenchmarkIngestFold(b *testing.B) {
	var accums []Accumulator
	for sig := range catalogue {
		q, err := ForTrigger(&policy.Trigger{Name: string(sig), Signal: sig, Window: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		accums = append(accums, q.Accumulators()...)
	}
	accums = append(accums, DispatchedByFlowSchema, RejectedByFlowSchema, SeatsByFlowSchema)
	for _, tc := range []struct{ name, file, contentType string }{
		{"recorded-text", "apiserver.txt.gz", "text/plain; version=0.0.4"},
		{"recorded-protobuf", "apiserver.pb.gz", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"},
	} {
		data := testutil.Recorded(b, strings.TrimSuffix(tc.file, ".gz"))
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				f := NewFolder(accums)
				if err := exposition.Parse(tc.contentType, data, f.Families(), f.Add); err != nil {
					b.Fatal(err)
				}
				_ = f.Results()
			}
		})
	}
}
