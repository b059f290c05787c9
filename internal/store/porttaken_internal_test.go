package store

import (
	"errors"
	"net"
	"testing"
)

// TestPortTaken checks that a listen on a port in use is recognised (so a
// start on picked ports picks again) and that other errors are not.
func TestPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = net.Listen("tcp", l.Addr().String())
	if err == nil || !portTaken(err) {
		t.Errorf("second listen on %s: %v, want a port-taken error", l.Addr(), err)
	}
	if portTaken(errors.New("embedded etcd: a data directory is required")) {
		t.Error("an unrelated error was taken for a port in use")
	}
}
