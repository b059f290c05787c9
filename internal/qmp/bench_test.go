package qmp_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"

	"github.com/vigil-vm/vigil/internal/qmp"
)

// echoPeer answers every command over conn with a query-status reply,
// until conn is closed.
func echoPeer(conn net.Conn) {
	enc, dec := json.NewEncoder(conn), json.NewDecoder(conn)
	if enc.Encode(greeting) != nil {
		return
	}
	for {
		var r request
		if dec.Decode(&r) != nil {
			return
		}
		if enc.Encode(map[string]any{"return": qmp.StatusInfo{Running: true, Status: "running"}, "id": r.ID}) != nil {
			return
		}
	}
}

func benchClient(b *testing.B) *qmp.Client {
	a, s := net.Pipe()
	done := make(chan struct{})
	go func() { echoPeer(s); close(done) }()
	c, err := qmp.NewClient(context.Background(), a)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(); s.Close(); <-done })
	return c
}

// BenchmarkRun measures one query-status round trip over net.Pipe: encode,
// write, the peer's decode and encode, the read loop, decode.
func BenchmarkRun(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunParallel measures round trips from concurrent callers on one
// connection.
func BenchmarkRunParallel(b *testing.B) {
	c := benchClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Status(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRealQEMU measures a query-status round trip to a real QEMU.
func BenchmarkRealQEMU(b *testing.B) {
	sock, _, _ := startQEMU(b)
	ctx := context.Background()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
