package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
)

// Resource is the client of one resource in one namespace. T is the
// pointer type of its objects, e.g. *v1.VirtualMachine.
type Resource[T Object] struct {
	c          *Client
	base       string
	plural     string
	ns         string
	namespaced bool
}

func newResource[T Object](c *Client, base, plural, ns string, namespaced bool) *Resource[T] {
	return &Resource[T]{c: c, base: base, plural: plural, ns: ns, namespaced: namespaced}
}

// List is a page of objects.
type List[T Object] struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []T `json:"items"`
}

// ListOptions select objects of a list or watch.
type ListOptions struct {
	LabelSelector string
	FieldSelector string
	// Limit and Continue page a list.
	Limit    int64
	Continue string
	// ResourceVersion: for a watch, where to start ("" or "0": with the
	// current objects as ADDED); for a list, "0" accepts a possibly
	// stale answer.
	ResourceVersion     string
	TimeoutSeconds      int64
	AllowWatchBookmarks bool
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	if o.FieldSelector != "" {
		q.Set("fieldSelector", o.FieldSelector)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.FormatInt(o.Limit, 10))
	}
	if o.Continue != "" {
		q.Set("continue", o.Continue)
	}
	if o.ResourceVersion != "" {
		q.Set("resourceVersion", o.ResourceVersion)
	}
	if o.TimeoutSeconds > 0 {
		q.Set("timeoutSeconds", strconv.FormatInt(o.TimeoutSeconds, 10))
	}
	if o.AllowWatchBookmarks {
		q.Set("allowWatchBookmarks", "true")
	}
	return q
}

// WriteOptions apply to create, update, patch and delete.
type WriteOptions struct {
	// DryRun validates without persisting.
	DryRun bool
	// DiscardResult skips decoding the object the server answers with, for
	// callers that only need to know that the write succeeded (an event
	// recorder); the call returns the zero value instead.
	DiscardResult bool
}

// result is where the answer of a write goes: out, or nowhere.
func (o WriteOptions) result(out any) any {
	if o.DiscardResult {
		return nil
	}
	return out
}

func (o WriteOptions) query() url.Values {
	q := url.Values{}
	if o.DryRun {
		q.Set("dryRun", metav1.DryRunAll)
	}
	return q
}

func (r *Resource[T]) collectionPath() string {
	if r.namespaced && r.ns != "" {
		return r.base + "/namespaces/" + url.PathEscape(r.ns) + "/" + r.plural
	}
	return r.base + "/" + r.plural
}

func (r *Resource[T]) itemPath(name string) string {
	return r.collectionPath() + "/" + url.PathEscape(name)
}

// Get returns one object.
func (r *Resource[T]) Get(ctx context.Context, name string) (T, error) {
	var out T
	err := r.c.do(ctx, request{method: http.MethodGet, path: r.itemPath(name), out: &out})
	return out, err
}

// List returns the objects that match opts.
func (r *Resource[T]) List(ctx context.Context, opts ListOptions) (*List[T], error) {
	out := &List[T]{}
	err := r.c.do(ctx, request{method: http.MethodGet, path: r.collectionPath(), query: opts.query(), out: out})
	return out, err
}

// Create creates obj and returns it as stored.
func (r *Resource[T]) Create(ctx context.Context, obj T, opts WriteOptions) (T, error) {
	var out T
	err := r.c.do(ctx, request{method: http.MethodPost, path: r.collectionPath(), query: opts.query(), body: obj, out: opts.result(&out)})
	return out, err
}

// Update replaces obj (spec and metadata; never status). With a
// resourceVersion set, a stale object fails with a Conflict.
func (r *Resource[T]) Update(ctx context.Context, obj T, opts WriteOptions) (T, error) {
	var out T
	err := r.c.do(ctx, request{method: http.MethodPut, path: r.itemPath(obj.GetName()), query: opts.query(), body: obj, out: opts.result(&out)})
	return out, err
}

// UpdateStatus replaces obj's status.
func (r *Resource[T]) UpdateStatus(ctx context.Context, obj T, opts WriteOptions) (T, error) {
	var out T
	err := r.c.do(ctx, request{method: http.MethodPut, path: r.itemPath(obj.GetName()) + "/status", query: opts.query(), body: obj, out: opts.result(&out)})
	return out, err
}

// PatchType is the content type of a patch.
type PatchType string

// Patch types.
const (
	MergePatch PatchType = "application/merge-patch+json"
	JSONPatch  PatchType = "application/json-patch+json"
)

// Patch patches an object; subresource is "" or "status".
func (r *Resource[T]) Patch(ctx context.Context, name string, pt PatchType, data []byte, subresource string, opts WriteOptions) (T, error) {
	var out T
	path := r.itemPath(name)
	if subresource != "" {
		path += "/" + subresource
	}
	err := r.c.do(ctx, request{method: http.MethodPatch, path: path, query: opts.query(), body: data, contentType: string(pt), out: opts.result(&out)})
	return out, err
}

// DeleteOptions apply to a deletion.
type DeleteOptions struct {
	// GracePeriodSeconds overrides the object's grace period (VMIs).
	GracePeriodSeconds *int64
	// Preconditions fail the deletion with a Conflict when they do not hold.
	UID             string
	ResourceVersion string
	// Orphan leaves the object's dependents in place.
	Orphan bool
	DryRun bool
}

// Delete deletes an object (or marks it for deletion when it has
// finalizers) and returns its last state.
func (r *Resource[T]) Delete(ctx context.Context, name string, opts DeleteOptions) (T, error) {
	body := metav1.DeleteOptions{GracePeriodSeconds: opts.GracePeriodSeconds}
	if opts.UID != "" || opts.ResourceVersion != "" {
		body.Preconditions = &metav1.Preconditions{}
		if opts.UID != "" {
			uid := typesUID(opts.UID)
			body.Preconditions.UID = &uid
		}
		if opts.ResourceVersion != "" {
			body.Preconditions.ResourceVersion = &opts.ResourceVersion
		}
	}
	if opts.Orphan {
		p := metav1.DeletePropagationOrphan
		body.PropagationPolicy = &p
	}
	if opts.DryRun {
		body.DryRun = []string{metav1.DryRunAll}
	}
	var out T
	err := r.c.do(ctx, request{method: http.MethodDelete, path: r.itemPath(name), body: body, out: &out})
	return out, err
}

// EventType is the type of a watch event.
type EventType string

// Watch event types.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	Bookmark EventType = "BOOKMARK"
	Error    EventType = "ERROR"
)

// Event is one watch event. For a BOOKMARK only ResourceVersion is set;
// for an ERROR, Err.
type Event[T Object] struct {
	Type            EventType
	Object          T
	ResourceVersion string
	Err             error
}

// Watch is a running watch. Read its events from C; it is closed when the
// stream ends (the server closed it, the connection failed, Stop was called
// or ctx ended). Err then says why (nil for a clean end).
type Watch[T Object] struct {
	C      <-chan Event[T]
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Stop ends the watch and waits for its goroutine.
func (w *Watch[T]) Stop() {
	w.cancel()
	<-w.done
}

// Err returns why the stream ended, once C is closed.
func (w *Watch[T]) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Watch starts a watch. A resourceVersion the server no longer has fails
// with a 410 (apierrors.IsResourceExpired or IsGone): relist, then watch
// from the list's resourceVersion.
func (r *Resource[T]) Watch(ctx context.Context, opts ListOptions) (*Watch[T], error) {
	q := opts.query()
	q.Set("watch", "true")
	ctx, cancel := context.WithCancel(ctx)
	req, err := r.c.newHTTPRequest(ctx, request{method: http.MethodGet, path: r.collectionPath(), query: q})
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := r.c.streams.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", r.plural, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		defer cancel()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, statusError(resp.StatusCode, http.MethodGet, b)
	}
	ch := make(chan Event[T])
	w := &Watch[T]{C: ch, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			ev, err := decodeEvent[T](sc.Bytes())
			if err != nil {
				w.setErr(err)
				return
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			w.setErr(fmt.Errorf("watch %s: %w", r.plural, err))
		}
	}()
	return w, nil
}

func (w *Watch[T]) setErr(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

// decodeEvent decodes one line of a watch. The events a watch is made of,
// an object's change or a bookmark, decode in one pass, the object as T
// with the type; anything else (an error's Status, an unknown type, a
// malformed line) is decoded in two, the type first.
func decodeEvent[T Object](line []byte) (Event[T], error) {
	var raw struct {
		Type   EventType `json:"type"`
		Object T         `json:"object"`
	}
	if err := json.Unmarshal(line, &raw); err == nil && !isNil(raw.Object) {
		switch raw.Type {
		case Added, Modified, Deleted:
			return Event[T]{Type: raw.Type, Object: raw.Object, ResourceVersion: raw.Object.GetResourceVersion()}, nil
		case Bookmark:
			return Event[T]{Type: raw.Type, ResourceVersion: raw.Object.GetResourceVersion()}, nil
		}
	}
	return decodeEventSlow[T](line)
}

// isNil reports whether obj is a nil pointer (or nil).
func isNil[T Object](obj T) bool {
	v := reflect.ValueOf(obj)
	return !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil())
}

// decodeEventSlow decodes a watch line in two passes: the type, then the
// object as the type says.
func decodeEventSlow[T Object](line []byte) (Event[T], error) {
	var raw struct {
		Type   EventType       `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return Event[T]{}, fmt.Errorf("malformed watch event: %w", err)
	}
	ev := Event[T]{Type: raw.Type}
	switch raw.Type {
	case Bookmark:
		var m struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(raw.Object, &m); err != nil {
			return ev, fmt.Errorf("malformed bookmark: %w", err)
		}
		ev.ResourceVersion = m.Metadata.ResourceVersion
	case Error:
		var st metav1.Status
		if err := json.Unmarshal(raw.Object, &st); err != nil {
			return ev, fmt.Errorf("malformed watch error: %w", err)
		}
		ev.Err = &apierrors.StatusError{ErrStatus: st}
	case Added, Modified, Deleted:
		if err := json.Unmarshal(raw.Object, &ev.Object); err != nil {
			return ev, fmt.Errorf("malformed watch object: %w", err)
		}
		if isNil(ev.Object) {
			return ev, fmt.Errorf("malformed watch object: %s event without an object", raw.Type)
		}
		ev.ResourceVersion = ev.Object.GetResourceVersion()
	default:
		return ev, fmt.Errorf("unknown watch event type %q", raw.Type)
	}
	return ev, nil
}

// VMs is the client of VirtualMachines, with the lifecycle subresources.
type VMs struct{ *Resource[*v1.VirtualMachine] }

func (r *VMs) subresource(ctx context.Context, name, action string, body any) error {
	path := subBase + "/namespaces/" + url.PathEscape(r.ns) + "/virtualmachines/" + url.PathEscape(name) + "/" + action
	return r.c.do(ctx, request{method: http.MethodPut, path: path, body: body})
}

// Start asks a VM to start (202 Accepted, or the refusal as an error).
func (r *VMs) Start(ctx context.Context, name string, opts v1.StartOptions) error {
	return r.subresource(ctx, name, "start", opts)
}

// Stop asks a VM to stop.
func (r *VMs) Stop(ctx context.Context, name string, opts v1.StopOptions) error {
	return r.subresource(ctx, name, "stop", opts)
}

// Restart asks a VM to restart.
func (r *VMs) Restart(ctx context.Context, name string, opts v1.RestartOptions) error {
	return r.subresource(ctx, name, "restart", opts)
}

// VMIs is the client of VirtualMachineInstances, with the lifecycle subresources.
type VMIs struct {
	*Resource[*v1.VirtualMachineInstance]
}

func (r *VMIs) subresource(ctx context.Context, name, action string, body any) error {
	path := subBase + "/namespaces/" + url.PathEscape(r.ns) + "/virtualmachineinstances/" + url.PathEscape(name) + "/" + action
	return r.c.do(ctx, request{method: http.MethodPut, path: path, body: body})
}

// Pause pauses a running VMI.
func (r *VMIs) Pause(ctx context.Context, name string, opts v1.PauseOptions) error {
	return r.subresource(ctx, name, "pause", opts)
}

// Unpause resumes a paused VMI.
func (r *VMIs) Unpause(ctx context.Context, name string, opts v1.UnpauseOptions) error {
	return r.subresource(ctx, name, "unpause", opts)
}

// SoftReboot asks the guest of a VMI to reboot.
func (r *VMIs) SoftReboot(ctx context.Context, name string) error {
	return r.subresource(ctx, name, "softreboot", nil)
}

// CreateOnNode creates vmi already scheduled to node (the nodeName
// parameter), saving the scheduler's binding write. The node must exist.
func (r *VMIs) CreateOnNode(ctx context.Context, vmi *v1.VirtualMachineInstance, node string, opts WriteOptions) (*v1.VirtualMachineInstance, error) {
	q := opts.query()
	q.Set("nodeName", node)
	var out *v1.VirtualMachineInstance
	err := r.c.do(ctx, request{method: http.MethodPost, path: r.collectionPath(), query: q, body: vmi, out: opts.result(&out)})
	return out, err
}

// ConsolePath is the API path of a VMI's serial console (a websocket).
func (r *VMIs) ConsolePath(name string) string {
	return subBase + "/namespaces/" + url.PathEscape(r.ns) + "/virtualmachineinstances/" + url.PathEscape(name) + "/console"
}

// CreateRaw creates an object from its JSON document as given, so that the
// server's strict decoding sees every field the author wrote.
func (r *Resource[T]) CreateRaw(ctx context.Context, doc []byte, opts WriteOptions) (T, error) {
	var out T
	err := r.c.do(ctx, request{method: http.MethodPost, path: r.collectionPath(), query: opts.query(), body: doc, out: opts.result(&out)})
	return out, err
}

// UpdateRaw replaces an object with its JSON document as given.
func (r *Resource[T]) UpdateRaw(ctx context.Context, name string, doc []byte, opts WriteOptions) (T, error) {
	var out T
	err := r.c.do(ctx, request{method: http.MethodPut, path: r.itemPath(name), query: opts.query(), body: doc, out: opts.result(&out)})
	return out, err
}
