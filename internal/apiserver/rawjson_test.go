package apiserver

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzRawScanner holds the raw scanner to encoding/json: what it accepts is
// valid JSON, and it accepts every valid JSON text in compact form.
func FuzzRawScanner(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `""`, `0`, `-0.5e+7`, `true`, `null`, `{"a":[1,{"b":null}],"c":"\u00e9\"\\\/\b\f\n\r\t"}`,
		`{"a":1,}`, `[1,]`, `{"a" :1}`, `01`, `1.`, `1e`, `"\x"`, `"\u12"`, "\"\x01\"", `{"a":1}}`, `tru`, `[[[[`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := rawScanner{b: b}
		ok := s.value() == nil && s.i == len(b)
		if ok && !json.Valid(b) {
			t.Fatalf("the scanner accepts invalid JSON %q", b)
		}
		if json.Valid(b) {
			var compact bytes.Buffer
			if err := json.Compact(&compact, b); err != nil {
				t.Fatal(err)
			}
			s := rawScanner{b: compact.Bytes()}
			if err := s.value(); err != nil || s.i != compact.Len() {
				t.Fatalf("the scanner refuses compact JSON %q: %v at %d", compact.Bytes(), err, s.i)
			}
		}
	})
}
