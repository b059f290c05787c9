package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// Object is what every API object is: metadata plus deep copy.
type Object interface {
	metav1.Object
	runtime.Object
}

// Config configures a Client.
type Config struct {
	// Server is the API server's URL, e.g. http://127.0.0.1:7443, or
	// several servers of one control plane separated by commas: the client
	// talks to one at a time and moves to the next when it cannot reach it.
	Server string
	// Token is sent as a bearer token when set.
	Token string
	// UserAgent identifies the caller in the server's logs.
	UserAgent string
	// Timeout bounds every request but watches (default 30s).
	Timeout time.Duration
	// OnWarning receives the server's warnings (e.g. a deprecated field).
	OnWarning func(string)
	// Transport overrides the HTTP transport.
	Transport http.RoundTripper
}

// Client talks to a Vigil API server. It is safe for concurrent use.
type Client struct {
	base    *url.URL // the first server: requests are built on it
	servers *failover
	cfg     Config
	http    *http.Client // requests with a timeout
	streams *http.Client // watches: no overall timeout
}

// New returns a client for cfg.Server.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("client: no server URL: set --server or VIGIL_SERVER")
	}
	servers, err := parseServers(cfg.Server)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	if len(servers) > 1 {
		tr = &failover{servers: servers, next: tr}
	}
	c := &Client{
		base:    servers[0],
		cfg:     cfg,
		http:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
		streams: &http.Client{Transport: tr},
	}
	if f, ok := tr.(*failover); ok {
		c.servers = f
	}
	return c, nil
}

// Server returns the URL of the server the client talks to now.
func (c *Client) Server() string {
	if c.servers != nil {
		return c.servers.current().String()
	}
	return c.base.String()
}

// request is one API call.
type request struct {
	method      string
	path        string
	query       url.Values
	body        any
	contentType string
	out         any
}

func (c *Client) newHTTPRequest(ctx context.Context, rq request) (*http.Request, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + rq.path
	u.RawQuery = rq.query.Encode()
	var body io.Reader
	if rq.body != nil {
		var b []byte
		switch v := rq.body.(type) {
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return nil, fmt.Errorf("client: encoding the request: %w", err)
			}
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if rq.body != nil {
		ct := rq.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	if c.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	return req, nil
}

// do performs a request and decodes a 2xx answer into rq.out.
func (c *Client) do(ctx context.Context, rq request) error {
	req, err := c.newHTTPRequest(ctx, rq)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	c.warnings(resp)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", rq.method, rq.path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return statusError(resp.StatusCode, rq.method, b)
	}
	if rq.out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, rq.out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", rq.method, rq.path, err)
		}
	}
	return nil
}

func (c *Client) warnings(resp *http.Response) {
	if c.cfg.OnWarning == nil {
		return
	}
	for _, w := range resp.Header.Values("Warning") {
		// 299 - "message"
		if i := strings.Index(w, `"`); i >= 0 && strings.HasSuffix(w, `"`) && len(w) > i+1 {
			w = w[i+1 : len(w)-1]
		}
		c.cfg.OnWarning(w)
	}
}

// statusError turns an error answer into a StatusError.
func statusError(code int, method string, body []byte) error {
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err == nil && st.Kind == "Status" {
		if st.Code == 0 {
			st.Code = int32(code)
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	return apierrors.NewGenericServerResponse(code, method, schema.GroupResource{}, "", strings.TrimSpace(string(body)), 0, true)
}

// Raw performs a request against any API path and returns the answer body.
func (c *Client) Raw(ctx context.Context, method, path string, body []byte, contentType string) ([]byte, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: method, path: path, body: bodyOrNil(body), contentType: contentType, out: &out})
	return out, err
}

func bodyOrNil(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// Resource paths.
const (
	kubevirtBase = "/apis/" + v1.GroupName + "/" + v1.Version
	coreBase     = "/api/" + v1.Version
	leaseBase    = "/apis/" + v1.CoordinationGroupName + "/" + v1.Version
	vigilBase    = "/apis/" + v1.VigilGroupName + "/" + v1.Version
	subBase      = "/apis/" + v1.SubresourceGroupName + "/" + v1.Version
)

// VirtualMachines returns the client of VMs in namespace ns ("" for all
// namespaces, for lists and watches only).
func (c *Client) VirtualMachines(ns string) *VMs {
	return &VMs{Resource: newResource[*v1.VirtualMachine](c, kubevirtBase, "virtualmachines", ns, true)}
}

// VirtualMachineInstances returns the client of VMIs in namespace ns.
func (c *Client) VirtualMachineInstances(ns string) *VMIs {
	return &VMIs{Resource: newResource[*v1.VirtualMachineInstance](c, kubevirtBase, "virtualmachineinstances", ns, true)}
}

// Nodes returns the client of Nodes.
func (c *Client) Nodes() *Resource[*v1.Node] {
	return newResource[*v1.Node](c, coreBase, "nodes", "", false)
}

// Leases returns the client of Leases in namespace ns.
func (c *Client) Leases(ns string) *Resource[*v1.Lease] {
	return newResource[*v1.Lease](c, leaseBase, "leases", ns, true)
}

// Events returns the client of Events in namespace ns.
func (c *Client) Events(ns string) *Resource[*v1.Event] {
	return newResource[*v1.Event](c, coreBase, "events", ns, true)
}

func typesUID(s string) types.UID { return types.UID(s) }
