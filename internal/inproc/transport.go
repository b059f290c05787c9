// Package inproc carries HTTP requests to a handler in the same process,
// with no socket in between. vigil server's own controllers and local agent
// talk to the API server this way: the same handler, authentication and
// JSON as any client, without the TCP round trip, the HTTP/1.1 framing on
// both sides and the connection's buffers.
//
// A response is handed to the client when the handler returns, or at its
// first Flush: from then on the body streams (watches), each Flush passing
// what was written since the last one.
package inproc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// RemoteAddr is the RemoteAddr of every request the Transport makes. It is
// written as an abstract unix socket peer is, so a server that trusts local
// peers trusts it; no request from a network connection can carry it.
const RemoteAddr = "@in-process"

// streamChunk is how much a streaming response collects before it passes
// what it has on without waiting for a Flush.
const streamChunk = 64 << 10

// idleWorker is how long a goroutine that served a request waits for the
// next before it ends. Reusing goroutines keeps the stacks they grew
// serving requests: a new goroutine per request grows its stack again each
// time, a few percent of the server's CPU under load.
const idleWorker = 10 * time.Second

// Transport is an http.RoundTripper that serves each request by calling
// Handler on a goroutine of its own: an idle one that served an earlier
// request, or a new one. A worker ends after idleWorker without a request.
// A handler that streams returns when the request's context ends; the
// context ends when the client closes the response body.
//
// There are no connection upgrades (websockets): the server's own clients
// never ask for one.
type Transport struct {
	Handler http.Handler

	once sync.Once
	idle chan func() // unbuffered: a send succeeds only if a worker waits
}

// run runs f on an idle worker, or on a new one.
func (t *Transport) run(f func()) {
	t.once.Do(func() { t.idle = make(chan func()) })
	select {
	case t.idle <- f:
	default:
		go t.worker(f)
	}
}

func (t *Transport) worker(f func()) {
	timer := time.NewTimer(idleWorker)
	defer timer.Stop()
	for {
		f()
		timer.Reset(idleWorker)
		select {
		case f = <-t.idle:
		case <-timer.C:
			return
		}
	}
}

// RoundTrip serves req. It closes req.Body once the handler has returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	sreq := serverRequest(ctx, req)
	w := &responseWriter{header: http.Header{}, req: req, ctx: ctx, cancel: cancel, ready: make(chan result, 1)}
	t.run(func() { w.serve(t.Handler, sreq, req.Body) })
	select {
	case r := <-w.ready:
		return r.resp, r.err
	case <-req.Context().Done():
		// The handler sees its context end and finishes on its own; a
		// response it hands over now or later is dropped (a stream's writes
		// fail, its context having ended).
		select {
		case r := <-w.ready:
			if r.resp != nil {
				r.resp.Body.Close()
			}
		default:
		}
		return nil, req.Context().Err()
	}
}

// serverRequest is req as a server would have read it.
func serverRequest(ctx context.Context, req *http.Request) *http.Request {
	s := req.Clone(ctx)
	s.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	s.RequestURI = s.URL.RequestURI()
	s.Proto, s.ProtoMajor, s.ProtoMinor = "HTTP/1.1", 1, 1
	if s.Host == "" {
		s.Host = req.URL.Host
	}
	s.RemoteAddr = RemoteAddr
	s.Close = false
	if s.Body == nil {
		s.Body = http.NoBody
	}
	return s
}

type result struct {
	resp *http.Response
	err  error
}

// responseWriter collects the handler's response: in buf until the handler
// returns or flushes, then through a stream.
type responseWriter struct {
	req    *http.Request   // the client's
	ctx    context.Context // the handler's request's
	cancel context.CancelFunc
	ready  chan result // receives the response or an error, once

	header      http.Header
	status      int
	wroteHeader bool
	sentHeader  http.Header // header as of WriteHeader

	mu     sync.Mutex // buf and st: the handler may flush from another goroutine
	buf    bytes.Buffer
	st     *stream // nil until the response streams
	handed bool    // the response went to ready
}

func (w *responseWriter) serve(h http.Handler, sreq *http.Request, body io.ReadCloser) {
	defer func() {
		if body != nil {
			body.Close()
		}
		if v := recover(); v != nil {
			w.fail(fmt.Errorf("in-process handler for %s %s panicked: %v", sreq.Method, sreq.URL.Path, v))
			return
		}
		w.finish()
	}()
	h.ServeHTTP(w, sreq)
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		return // informational: a connection would send it ahead; the final status follows
	}
	w.wroteHeader, w.status = true, code
	w.sentHeader = w.header.Clone()
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK) // no-op once a status is written
	if w.req.Method == http.MethodHead {
		return len(p), nil // no body, as a connection would eat it
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.st != nil && w.buf.Len() >= streamChunk {
		if err := w.pushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush hands the response over if it has not been, and passes on what has
// been written.
func (w *responseWriter) Flush() {
	w.WriteHeader(http.StatusOK) // no-op once a status is written
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st == nil {
		w.st = newStream(w.ctx)
		w.handLocked(&body{r: w.st, close: w.cancel}, -1)
	}
	_ = w.pushLocked() // it fails only when the request's context ended; the handler sees that
}

func (w *responseWriter) pushLocked() error {
	if w.buf.Len() == 0 {
		return nil
	}
	err := w.st.write(w.buf.Bytes())
	w.buf.Reset()
	return err
}

// finish ends the response after the handler returned.
func (w *responseWriter) finish() {
	w.WriteHeader(http.StatusOK) // no-op once a status is written
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.st == nil {
		n := int64(w.buf.Len())
		var b io.Reader = bytes.NewReader(w.buf.Bytes())
		if w.req.Method == http.MethodHead {
			b, n = http.NoBody, -1
		}
		w.handLocked(&body{r: b, close: func() {}}, n)
		w.cancel() // the handler is done with its context
		return
	}
	_ = w.pushLocked()
	// The context lives on until the client has read the end (or closes
	// the body): ending it now could cut the stream short.
	w.st.end(nil)
}

// fail ends the exchange with err: as RoundTrip's error if the response
// was not handed over yet, else as the body's read error after what was
// written before it.
func (w *responseWriter) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.handed {
		w.handed = true
		w.ready <- result{err: err}
		w.cancel()
		return
	}
	_ = w.pushLocked()
	w.st.end(err)
}

func (w *responseWriter) handLocked(b io.ReadCloser, length int64) {
	if w.handed {
		return
	}
	w.handed = true
	w.ready <- result{resp: &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sentHeader,
		Body:          b,
		ContentLength: length,
		Request:       w.req,
	}}
}

// streamChunks is how many flushes a stream holds for a client that has
// not read them yet: the slack a connection's socket buffers would give,
// so that a watch does not wait on every event for its reader.
const streamChunks = 256

// stream carries a streaming response from the handler to the client.
type stream struct {
	ctx    context.Context // the request's: when it ends, writes fail
	chunks chan []byte
	err    error  // the read error after the last chunk (nil: EOF); set before chunks closes
	cur    []byte // the reader's current chunk
}

func newStream(ctx context.Context) *stream {
	return &stream{ctx: ctx, chunks: make(chan []byte, streamChunks)}
}

// write queues a copy of p; it waits while the stream is full, until the
// request's context ends.
func (s *stream) write(p []byte) error {
	if err := s.ctx.Err(); err != nil {
		return context.Cause(s.ctx)
	}
	c := append([]byte(nil), p...)
	select {
	case s.chunks <- c:
		return nil
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
}

// end closes the stream; the reader gets err (or EOF) after the last chunk.
func (s *stream) end(err error) {
	s.err = err
	close(s.chunks)
}

func (s *stream) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		c, ok := <-s.chunks
		if !ok {
			if s.err != nil {
				return 0, s.err
			}
			return 0, io.EOF
		}
		s.cur = c
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

// body is a response body. Closing it, or reading it to its end, ends the
// request's context (for a stream: how a handler learns that its client
// went away) as a connection's end would.
type body struct {
	r     io.Reader
	close context.CancelFunc
	once  sync.Once
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil {
		b.once.Do(b.close)
	}
	return n, err
}

func (b *body) Close() error {
	b.once.Do(b.close)
	return nil
}
