package inproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func client(h http.Handler) *http.Client {
	return &http.Client{Transport: &Transport{Handler: h}}
}

// closeRecorder reports whether a request body was closed.
type closeRecorder struct {
	io.Reader
	closed chan struct{}
}

func (c *closeRecorder) Close() error { close(c.closed); return nil }

func TestRequestAndResponse(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", fmt.Sprintf("%s %s %s %s %s %q", r.Method, r.URL.Path, r.URL.RawQuery, r.RemoteAddr, r.Host, r.Header.Get("Authorization")))
		w.WriteHeader(http.StatusCreated)
		w.Header().Set("X-Late", "ignored") // after WriteHeader, as on a connection
		fmt.Fprintf(w, "got %s", b)
	})
	reqBody := &closeRecorder{Reader: strings.NewReader("hello"), closed: make(chan struct{})}
	req, _ := http.NewRequest(http.MethodPost, "http://vigil.local/apis/x/y?watch=1", reqBody)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := client(h).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || resp.Status != "201 Created" || string(b) != "got hello" || resp.ContentLength != int64(len(b)) {
		t.Fatalf("response %d %q %q (length %d)", resp.StatusCode, resp.Status, b, resp.ContentLength)
	}
	if got, want := resp.Header.Get("X-Seen"), `POST /apis/x/y watch=1 @in-process vigil.local "Bearer t"`; got != want {
		t.Fatalf("the handler saw %q, want %q", got, want)
	}
	if resp.Header.Get("X-Late") != "" {
		t.Fatal("a header set after WriteHeader reached the client")
	}
	select {
	case <-reqBody.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the request body was not closed")
	}
}

func TestNoBodyAndImplicitStatus(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil {
			panic("nil body")
		}
	})
	resp, err := client(h).Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 0 {
		t.Fatalf("got %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

// A flushed response streams: the client reads each flush while the
// handler runs, and closing the body ends the handler's context.
func TestStreaming(t *testing.T) {
	next := make(chan string)
	ended := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.(http.Flusher).Flush()
		for {
			select {
			case s := <-next:
				fmt.Fprintln(w, s)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				ended <- r.Context().Err()
				return
			}
		}
	})
	resp, err := client(h).Get("http://x/watch")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("length %d, header %v", resp.ContentLength, resp.Header)
	}
	lines := bufio.NewScanner(resp.Body)
	for _, s := range []string{"one", "two", "three"} {
		next <- s
		if !lines.Scan() || lines.Text() != s {
			t.Fatalf("read %q (%v), want %q", lines.Text(), lines.Err(), s)
		}
	}
	resp.Body.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the handler's context ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("closing the body did not end the handler")
	}
}

// A streaming handler that returns ends the stream cleanly: the client reads
// everything, then EOF.
func TestStreamEnds(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		io.WriteString(w, strings.Repeat("b", 3*streamChunk)) // passed on in chunks before the end
		io.WriteString(w, "c")
	})
	resp, err := client(h).Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "a"+strings.Repeat("b", 3*streamChunk)+"c" {
		t.Fatalf("read %d bytes, %v", len(b), err)
	}
}

// A client that gives up before the answer gets its context's error, and
// the handler, whose context ends too, is not left behind: not even one
// that streams to nobody.
func TestClientGivesUp(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			started, ended := make(chan struct{}), make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(ended)
				close(started)
				<-r.Context().Done()
				if flush { // a response nobody reads: the write must not wait forever
					io.WriteString(w, "late")
					w.(http.Flusher).Flush()
					io.WriteString(w, "later")
					w.(http.Flusher).Flush()
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-started; cancel() }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://x/", nil)
			resp, err := client(h).Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("no error for a request given up")
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
			select {
			case <-ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler did not end")
			}
		})
	}
}

func TestHandlerPanics(t *testing.T) {
	t.Run("before the answer", func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") })
		_, err := client(h).Get("http://x/p")
		if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "/p") {
			t.Fatalf("got %v, want the panic named", err)
		}
	})
	t.Run("while streaming", func(t *testing.T) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
			panic("boom")
		})
		resp, err := client(h).Get("http://x/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if string(b) != "part" || err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("read %q, %v; want the part and then the panic", b, err)
		}
	})
}

// A worker that served a request waits for the next one instead of ending.
func TestWorkerIsReused(t *testing.T) {
	tr := &Transport{}
	first := make(chan struct{})
	tr.run(func() { close(first) })
	<-first
	second := make(chan struct{})
	select {
	case tr.idle <- func() { close(second) }: // only a waiting worker takes it
	case <-time.After(10 * time.Second):
		t.Fatal("no idle worker took the second request")
	}
	<-second
}

// Informational codes are not the answer; HEAD answers carry no body.
func TestInformationalAndHead(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "body")
	})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, "http://x/", nil)
		resp, err := client(h).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "body"
		if method == http.MethodHead {
			want = ""
		}
		if resp.StatusCode != http.StatusCreated || string(b) != want {
			t.Errorf("%s: %d %q, want 201 %q", method, resp.StatusCode, b, want)
		}
	}
}

// A stream holds what the handler flushed while its client is not reading,
// as a connection's buffers would: the handler does not wait on each flush.
func TestStreamHasSlack(t *testing.T) {
	flushed := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 100 {
			fmt.Fprintln(w, i)
			w.(http.Flusher).Flush()
		}
		close(flushed)
	})
	resp, err := client(h).Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler waited for its reader")
	}
	lines := bufio.NewScanner(resp.Body)
	for i := range 100 {
		if !lines.Scan() || lines.Text() != fmt.Sprint(i) {
			t.Fatalf("line %d: %q (%v)", i, lines.Text(), lines.Err())
		}
	}
	if lines.Scan() {
		t.Fatalf("more after the end: %q", lines.Text())
	}
}

// Reading a stream to its end releases the handler's context, as the end
// of a response on a connection does, even if the body is never closed.
func TestStreamEndReleasesContext(t *testing.T) {
	ctxc := make(chan context.Context, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctxc <- r.Context()
		io.WriteString(w, "x")
		w.(http.Flusher).Flush()
	})
	resp, err := client(h).Get("http://x/")
	if err != nil {
		t.Fatal(err)
	}
	ctx := <-ctxc
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context lives on after the stream was read to its end")
	}
}
