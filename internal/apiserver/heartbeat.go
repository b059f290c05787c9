package apiserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/internal/store"
)

// Heartbeat streams. A node agent keeps one request open,
// POST /apis/vigil.dev/v1/heartbeats/<node>, and writes a line (a beat
// number) every renew interval; the server records the beat in its
// HeartbeatDigest, commits the digest to etcd with every other beat that
// arrived meanwhile, and only then writes the line back. An acknowledged
// beat is a renewal in etcd, as a Lease update was, for a fraction of the
// cost: one transaction a heartbeatCommitInterval for all of this server's
// nodes instead of one HTTP request and one transaction per node and beat.

// heartbeatCommitInterval is the shortest time between two commits of the
// digest: the most a beat waits for its commit beyond the commit itself.
const heartbeatCommitInterval = 250 * time.Millisecond

// heartbeatGather is how long a commit waits after the first beat for the
// others: agents beat on the same clock boundaries, so the beats of a
// whole fleet arrive within a few milliseconds and share one commit.
const heartbeatGather = 25 * time.Millisecond

// maxBeatLine bounds a beat line (a decimal number).
const maxBeatLine = 64

// heartbeats is this server's digest of its agents' beats, and the loop
// that commits it.
type heartbeats struct {
	s         *Server
	name      string // the digest's object name
	r         *resource
	retention time.Duration

	mu      sync.Mutex
	serial  int64
	nodes   map[string]*beatingNode
	dirty   bool         // the digest changed since the last commit
	waiting []chan error // beats waiting for the next commit
	kick    chan struct{}
	// stopCtx ends when run returns: the streams end with it.
	stopCtx context.Context
	stop    context.CancelFunc

	rev int64 // the digest's revision in etcd, 0 if unknown; run's own
	uid types.UID
	at  metav1.Time
}

// beatingNode is a node with an open stream to this server.
type beatingNode struct {
	streams int
	beat    *v1.NodeBeat // nil until its first beat
	// closed is when its last stream ended (zero while one is open).
	closed time.Time
}

func newHeartbeats(s *Server, name string, retention time.Duration) *heartbeats {
	h := &heartbeats{
		s: s, name: name, r: s.byPath[v1.VigilGroupName+"/heartbeatdigests"], retention: retention,
		// Serials only have to differ from the ones before; starting at
		// the clock keeps a restarted server from repeating one.
		serial: s.now().UnixNano(),
		nodes:  map[string]*beatingNode{}, kick: make(chan struct{}, 1),
	}
	h.stopCtx, h.stop = context.WithCancel(context.Background())
	return h
}

// open registers a stream of node.
func (h *heartbeats) open(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[node]
	if n == nil {
		n = &beatingNode{}
		h.nodes[node] = n
	}
	n.streams++
	n.closed = time.Time{}
}

// close unregisters a stream. A node whose last stream ended stays in the
// digest, its beat unchanged, for the retention: an observer that relists
// in the meantime still finds its last beat (a serial it may not have
// seen), instead of an absence that says nothing about when the node last
// beat. The run loop drops it after that.
func (h *heartbeats) close(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.nodes[node]
	if n.streams--; n.streams > 0 {
		return
	}
	if n.beat == nil {
		delete(h.nodes, node)
		return
	}
	n.closed = h.s.now()
	time.AfterFunc(h.retention, h.poke)
}

// pruneLocked drops the nodes whose last stream ended a retention ago.
func (h *heartbeats) pruneLocked() {
	now := h.s.now()
	for name, n := range h.nodes {
		if n.streams == 0 && !n.closed.IsZero() && now.Sub(n.closed) >= h.retention {
			delete(h.nodes, name)
			h.dirty = true
		}
	}
}

// beat records a beat of node; done receives the result of the commit
// that carries it.
func (h *heartbeats) beat(node string, done chan error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serial++
	h.nodes[node].beat = &v1.NodeBeat{Serial: h.serial, Time: metav1.NewMicroTime(h.s.now())}
	h.dirty = true
	h.waiting = append(h.waiting, done)
	h.poke()
}

func (h *heartbeats) poke() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run commits the digest whenever it changed, at most once a
// heartbeatCommitInterval, until ctx ends.
func (h *heartbeats) run(ctx context.Context) {
	defer h.stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			waiting := h.waiting
			h.waiting = nil
			h.mu.Unlock()
			for _, w := range waiting {
				w <- ctx.Err()
			}
			return
		case <-h.kick:
		}
		if wait := max(heartbeatGather, heartbeatCommitInterval-time.Since(last)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				continue // fails the waiting beats above
			case <-t.C:
			}
		}
		h.mu.Lock()
		h.pruneLocked()
		if !h.dirty {
			h.mu.Unlock()
			continue
		}
		waiting, d := h.waiting, h.snapshotLocked()
		h.waiting, h.dirty = nil, false
		h.mu.Unlock()
		err := h.commit(ctx, d)
		last = time.Now()
		if err != nil {
			h.s.log.Warn("committing the heartbeat digest failed", "digest", h.name, "err", err)
			h.mu.Lock()
			h.dirty = true // the next beat tries again
			h.mu.Unlock()
		}
		for _, w := range waiting {
			w <- err
		}
	}
}

func (h *heartbeats) snapshotLocked() *v1.HeartbeatDigest {
	d := &v1.HeartbeatDigest{ObjectMeta: metav1.ObjectMeta{Name: h.name}, Nodes: make(map[string]v1.NodeBeat, len(h.nodes))}
	for name, n := range h.nodes {
		if n.beat != nil {
			d.Nodes[name] = *n.beat
		}
	}
	return d
}

// commit writes the digest: an update of the revision last written, a
// create when there is none. Only this server writes its digest; anyone
// else's change (a delete, an edit) is overwritten.
func (h *heartbeats) commit(ctx context.Context, d *v1.HeartbeatDigest) error {
	key := h.r.key("", h.name)
	for attempt := 0; attempt < 3; attempt++ {
		if h.rev == 0 {
			cur, err := h.s.store.Get(ctx, key)
			switch {
			case store.IsNotFound(err):
				h.uid, h.at = types.UID(uuid.NewString()), metav1.NewTime(h.s.now()).Rfc3339Copy()
				d.UID, d.CreationTimestamp = h.uid, h.at
				data, err := encodeStored(d, h.r)
				if err != nil {
					return err
				}
				kv, err := h.s.store.Create(ctx, key, data, 0)
				if store.IsExists(err) {
					continue
				}
				if err != nil {
					return fmt.Errorf("creating heartbeat digest %s: %w", h.name, err)
				}
				h.rev = kv.ModRevision
				return nil
			case err != nil:
				return fmt.Errorf("reading heartbeat digest %s: %w", h.name, err)
			}
			if err := h.adopt(cur); err != nil {
				return err
			}
		}
		d.UID, d.CreationTimestamp = h.uid, h.at
		data, err := encodeStored(d, h.r)
		if err != nil {
			return err
		}
		kv, err := h.s.store.Update(ctx, key, data, h.rev)
		switch {
		case err == nil:
			h.rev = kv.ModRevision
			return nil
		case store.IsConflict(err):
			if err := h.adopt(kv); err != nil {
				return err
			}
		case store.IsNotFound(err):
			h.rev = 0
		default:
			return fmt.Errorf("writing heartbeat digest %s: %w", h.name, err)
		}
	}
	return fmt.Errorf("writing heartbeat digest %s: it keeps changing under this server", h.name)
}

// adopt takes the identity and revision of the stored digest.
func (h *heartbeats) adopt(kv store.KV) error {
	cur, err := decodeStored(h.r, kv)
	if err != nil {
		return err
	}
	h.rev, h.uid, h.at = kv.ModRevision, cur.GetUID(), cur.GetCreationTimestamp()
	return nil
}

// heartbeatPrefix is the path of the heartbeat streams.
const heartbeatPrefix = "/apis/" + v1.VigilGroupName + "/" + v1.Version + "/heartbeats/"

// fullDuplex (called by authenticate for the heartbeat paths, so that a
// refusal there is answered too) lets the handler answer while the request body is still
// coming. An HTTP/1 server otherwise reads the whole body before it sends
// an answer, and a stream's body never ends: even a refusal (a bad token, a
// bad name) would never reach the client.
//
// The connection is not reused after a stream: its body may not have
// ended, and net/http (as of Go 1.26) can then read the next request while
// the old body's reader still runs.
func fullDuplex(w http.ResponseWriter) *http.ResponseController {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // not supported: nothing reads ahead (HTTP/2, in process)
	w.Header().Set("Connection", "close")
	return rc
}

// heartbeat serves a node's heartbeat stream.
func (s *Server) heartbeat(w http.ResponseWriter, req *http.Request) error {
	rc := http.NewResponseController(w) // full duplex since authenticate
	node := req.PathValue("node")
	if msgs := validation.IsDNS1123Subdomain(node); len(msgs) > 0 {
		return badRequest("%q is not a node name: %s", node, msgs[0])
	}
	select {
	case <-s.ready:
	default:
		return apierrors.NewServiceUnavailable("the API server is still starting")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}
	h := s.beats
	h.open(node)
	defer h.close(node)

	// The body is read here, in the handler (net/http allows no read after
	// it returns); a stopping server interrupts the read with a deadline.
	var mu sync.Mutex
	returned := false
	defer func() { mu.Lock(); returned = true; mu.Unlock() }()
	stop := context.AfterFunc(h.stopCtx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !returned {
			_ = rc.SetReadDeadline(time.Now())
		}
	})
	defer stop()
	sc := bufio.NewScanner(req.Body)
	sc.Buffer(make([]byte, 0, maxBeatLine), maxBeatLine)
	fail := func(msg string) error {
		_, _ = fmt.Fprintf(w, "error: %s\n", msg)
		_ = rc.Flush()
		return nil
	}
	done := make(chan error, 1)
	for {
		if !sc.Scan() {
			switch {
			case h.stopCtx.Err() != nil:
				return fail("the API server is stopping")
			case errors.Is(sc.Err(), bufio.ErrTooLong):
				return fail(fmt.Sprintf("a beat is a decimal number on a line of at most %d bytes", maxBeatLine))
			}
			return nil // the client ended the stream
		}
		line := sc.Bytes()
		if _, err := strconv.ParseUint(string(line), 10, 64); err != nil {
			return fail(fmt.Sprintf("a beat is a decimal number, not %q", line))
		}
		h.beat(node, done)
		select {
		case err := <-done:
			if err != nil {
				return fail("the beat could not be committed: " + err.Error())
			}
		case <-req.Context().Done():
			return nil
		case <-h.stopCtx.Done():
			return fail("the API server is stopping")
		}
		ack := make([]byte, 0, len(line)+1)
		if _, err := w.Write(append(append(ack, line...), '\n')); err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
