package qmp_test

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// FuzzPeerInput feeds arbitrary bytes from QEMU's side, after the
// handshake, while a command is outstanding. Whatever comes, the client
// does not panic, the command ends (answered, refused, or disconnected),
// and once QEMU hangs up, Done and Events close with Err matching
// ErrDisconnected.
func FuzzPeerInput(f *testing.F) {
	for _, s := range []string{
		`{"return": {"running": true, "status": "running"}, "id": "2"}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": "2"}`,
		`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 1, "microseconds": 2}}`,
		`{"event": "STOP"}{"return": {}, "id": "2"}`,
		`{"return": {"running": "no"}, "id": "2"}`,
		`{"id": "2"}`,
		`{"id": ["2"]}`,
		`{"QMP": {}}`,
		`[]`,
		`{"return": `,
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		synctest.Test(t, func(t *testing.T) {
			c, p := connect(t)
			run := async(func() error { _, err := c.Status(t.Context()); return err })
			p.expect("query-status")
			_, _ = p.conn.Write(input) // fails if the client already hung up
			p.conn.Close()
			err := <-run
			var qe *qmp.Error
			if err != nil && !errors.Is(err, qmp.ErrDisconnected) && !errors.As(err, &qe) &&
				!strings.Contains(err.Error(), "decoding the reply") {
				t.Errorf("Status: %v, want success, an error reply, a bad reply or ErrDisconnected", err)
			}
			<-c.Done()
			for range c.Events() {
			}
			if !errors.Is(c.Err(), qmp.ErrDisconnected) {
				t.Errorf("Err() = %v", c.Err())
			}
		})
	})
}
