package client

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// parseServers parses Config.Server: one URL, or several separated by
// commas. Every URL is http or https with a host, and all have the same
// path, since requests are built on the first and sent to any.
func parseServers(s string) ([]*url.URL, error) {
	var out []*url.URL
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: server %q is not an http(s) URL", part)
		}
		if len(out) > 0 && strings.TrimSuffix(u.Path, "/") != strings.TrimSuffix(out[0].Path, "/") {
			return nil, fmt.Errorf("client: servers %q and %q have different paths; the servers of one control plane serve the same paths", out[0], u)
		}
		out = append(out, u)
	}
	return out, nil
}

// failover is a transport over several API servers of one control plane.
// It sends every request to the current server; when that server cannot
// be reached it makes the next one current. A request that could not even
// connect is tried on each server in turn, since it never reached one; any
// other failure is returned (the server may have acted on the request), and
// the caller's retry goes to the next server.
type failover struct {
	servers []*url.URL
	cur     atomic.Int32
	next    http.RoundTripper
}

func (f *failover) current() *url.URL { return f.servers[f.cur.Load()] }

// NextServer moves the client to its next server, when it has several: for
// a caller that found the current one unusable in a way the transport
// cannot see (a stream that stalls, a server cut off from etcd).
func (c *Client) NextServer() {
	if f := c.servers; f != nil {
		i := f.cur.Load()
		f.cur.CompareAndSwap(i, (i+1)%int32(len(f.servers)))
	}
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	var err error
	for range f.servers {
		i := f.cur.Load()
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = f.servers[i].Scheme, f.servers[i].Host, ""
		if req.Body != nil && req.GetBody != nil {
			if r.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		var resp *http.Response
		resp, err = f.next.RoundTrip(r)
		if err == nil || req.Context().Err() != nil {
			return resp, err
		}
		f.cur.CompareAndSwap(i, (i+1)%int32(len(f.servers)))
		if !notConnected(err) || (req.Body != nil && req.GetBody == nil) {
			return nil, err
		}
	}
	return nil, err
}

// notConnected reports whether err means no connection was made, so the
// server never saw the request.
func notConnected(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
