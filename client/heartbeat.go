package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// HeartbeatDigests returns the client of HeartbeatDigests (one per API
// server, cluster-scoped).
func (c *Client) HeartbeatDigests() *Resource[*v1.HeartbeatDigest] {
	return newResource[*v1.HeartbeatDigest](c, vigilBase, "heartbeatdigests", "", false)
}

// HeartbeatPath is the path of a node's heartbeat stream.
func HeartbeatPath(node string) string { return vigilBase + "/heartbeats/" + node }

// HeartbeatStream is a node agent's open heartbeat stream: one POST whose
// body carries beats, one line each, and whose answer carries each beat
// back once the server has committed it to etcd. Beat and Ack may be called
// from different goroutines; each from one at a time.
type HeartbeatStream struct {
	body   *io.PipeWriter
	resp   *http.Response
	lines  *bufio.Scanner
	cancel context.CancelFunc
	// beats queue the beats for the writer goroutine, so that Beat never
	// blocks on a server that stopped reading; wrote is closed when it ends.
	beats chan uint64
	wrote chan struct{}
}

// beatQueue is how many beats may wait to be sent before Beat fails.
const beatQueue = 8

// Heartbeat opens node's heartbeat stream. It lasts until ctx ends, Close
// is called, or the connection fails.
func (c *Client) Heartbeat(ctx context.Context, node string) (*HeartbeatStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	// The transport waits for the body's end before it gives up on a
	// request that failed: the body ends with the stream's context.
	context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	req, err := c.newHTTPRequest(ctx, request{method: http.MethodPost, path: HeartbeatPath(node)})
	if err != nil {
		cancel()
		return nil, err
	}
	req.Body, req.ContentLength = pr, -1
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Accept", "text/plain")
	resp, err := c.streams.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening the heartbeat stream of node %s: %w", node, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("opening the heartbeat stream of node %s: %w", node, statusError(resp.StatusCode, http.MethodPost, b))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 256), 64<<10)
	s := &HeartbeatStream{body: pw, resp: resp, lines: sc, cancel: cancel, beats: make(chan uint64, beatQueue), wrote: make(chan struct{})}
	go s.write(ctx)
	return s, nil
}

// write sends the queued beats until the stream ends.
func (s *HeartbeatStream) write(ctx context.Context) {
	defer close(s.wrote)
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-s.beats:
			if _, err := s.body.Write(append(strconv.AppendUint(nil, n, 10), '\n')); err != nil {
				return
			}
		}
	}
}

// Beat sends beat number n. It does not wait for the server to take it;
// it fails when the beats before it are still waiting or the stream ended.
func (s *HeartbeatStream) Beat(n uint64) error {
	select {
	case <-s.wrote:
		return fmt.Errorf("sending heartbeat %d: the stream has ended", n)
	default:
	}
	select {
	case s.beats <- n:
		return nil
	default:
		return fmt.Errorf("sending heartbeat %d: the server has not taken the %d beats before it", n, beatQueue)
	}
}

// Ack waits for the server to acknowledge a beat and returns its number: the
// beat is committed. An error line from the server, or the stream's end, is
// an error.
func (s *HeartbeatStream) Ack() (uint64, error) {
	if !s.lines.Scan() {
		if err := s.lines.Err(); err != nil {
			return 0, fmt.Errorf("reading heartbeat acknowledgements: %w", err)
		}
		return 0, fmt.Errorf("the heartbeat stream ended: %w", io.EOF)
	}
	line := s.lines.Text()
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return 0, fmt.Errorf("the server ended the heartbeat stream: %s", msg)
	}
	n, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("the server sent a malformed heartbeat acknowledgement %q", line)
	}
	return n, nil
}

// Close ends the stream (the context's end closes the body).
func (s *HeartbeatStream) Close() error {
	s.cancel()
	err := s.resp.Body.Close()
	<-s.wrote
	return err
}
