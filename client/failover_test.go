package client_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigil-vm/vigil/client"
)

// closedURL is the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// named is a server that answers every request with its name and records
// the bodies it was sent.
func named(t *testing.T, name string, bodies *[]string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*bodies = append(*bodies, string(b))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `"`+name+`"`)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestFailover: with several servers, a request that cannot connect to the
// current one goes to the next, body included, and the next becomes
// current; when it goes away in turn, the client moves on again.
func TestFailover(t *testing.T) {
	var aBodies, bBodies []string
	down := closedURL(t)
	a := named(t, "a", &aBodies)
	b := named(t, "b", &bBodies)
	c, err := client.New(client.Config{Server: down + ", " + a.URL + "," + b.URL})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Server(); got != down {
		t.Fatalf("current server before any request = %s, want the first, %s", got, down)
	}
	out, err := c.Raw(bg, http.MethodPost, "/x", []byte(`{"n":1}`), "")
	if err != nil {
		t.Fatalf("a request with the first server down: %v", err)
	}
	if string(out) != `"a"` || c.Server() != a.URL {
		t.Fatalf("answered by %s, current %s; want a (%s)", out, c.Server(), a.URL)
	}
	if len(aBodies) != 1 || aBodies[0] != `{"n":1}` {
		t.Fatalf("a received bodies %q, want the request's body once", aBodies)
	}
	// The current server stays current while it answers.
	for range 3 {
		if out, err := c.Raw(bg, http.MethodGet, "/x", nil, ""); err != nil || string(out) != `"a"` {
			t.Fatalf("request to a: %s, %v", out, err)
		}
	}
	a.Close()
	if out, err := c.Raw(bg, http.MethodGet, "/x", nil, ""); err != nil || string(out) != `"b"` {
		t.Fatalf("after a went away: %s, %v; want b", out, err)
	}
	if len(bBodies) != 1 {
		t.Errorf("b received %d requests, want 1", len(bBodies))
	}
}

// TestFailoverAllDown: when no server can be reached, the error says so
// and names the request.
func TestFailoverAllDown(t *testing.T) {
	c, err := client.New(client.Config{Server: closedURL(t) + "," + closedURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Raw(bg, http.MethodGet, "/healthz", nil, "")
	if err == nil || !strings.Contains(err.Error(), "/healthz") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("all servers down: %v", err)
	}
}

// TestBadServerLists: every malformed server list is refused with an error
// naming the culprit.
func TestBadServerLists(t *testing.T) {
	for _, tc := range []struct{ server, want string }{
		{"", "no server URL"},
		{"http://a:1,", `server "" is not an http(s) URL`},
		{"http://a:1,,http://b:1", `server "" is not an http(s) URL`},
		{"http://a:1,ftp://b:1", `server "ftp://b:1" is not an http(s) URL`},
		{"http://a:1,b:1", `server "b:1" is not an http(s) URL`},
		{"http://a:1/x,http://b:1/y", "different paths"},
	} {
		_, err := client.New(client.Config{Server: tc.server})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("server %q: error %v, want one containing %q", tc.server, err, tc.want)
		}
	}
}
