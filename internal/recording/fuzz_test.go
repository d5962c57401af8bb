package recording

import (
	"testing"
)

// FuzzRoundDecoder: no bytes make the round decoder panic or loop; they
// decode or are an error.
func FuzzRoundDecoder(f *testing.F) {
	var e encoder
	e.varint(1)
	e.float(0.5)
	e.bool(true)
	e.count(1)
	e.string("https://192.0.2.1:6443")
	e.byte(stateFresh)
	e.count(1)
	encodeDef(&e, seriesDef{family: "apiserver_current_inflight_requests"})
	e.count(0)
	e.count(1)
	e.uvarint(0)
	e.varint(4)
	e.byte(dumpFailed)
	e.string("HTTP 403")
	f.Add(e.b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		rd := newRoundDecoder(allAccums(t))
		for range 2 {
			_, _ = rd.decode(payload)
		}
	})
}
