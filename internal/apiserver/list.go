package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
)

// selectors parses labelSelector and fieldSelector; a field the resource
// cannot select on is a 400, as in Kubernetes.
func selectors(r *resource, req *http.Request) (func(*watchcache.Entry) bool, error) {
	q := req.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, badRequest("invalid labelSelector: %v", err)
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil, badRequest("invalid fieldSelector: %v", err)
	}
	probe := r.fields(r.newObj())
	for _, req := range fs.Requirements() {
		if _, ok := probe[req.Field]; !ok {
			return nil, badRequest("field label not supported: %s (%s can be selected on %s)", req.Field, r.plural, fieldNames(probe))
		}
	}
	if ls.Empty() && fs.Empty() {
		return nil, nil
	}
	// Matched through pointers: a Set (a slice) put in the selectors'
	// interface parameters would be copied to the heap on every call, and a
	// watch event is matched against every watcher of its resource.
	return func(e *watchcache.Entry) bool {
		return ls.Matches(&e.Labels) && fs.Matches(&e.Fields)
	}, nil
}

func fieldNames(f fields.Set) string {
	var b bytes.Buffer
	first := true
	for k := range f {
		if !first {
			b.WriteString(", ")
		}
		b.WriteString(k)
		first = false
	}
	return b.String()
}

func (s *Server) list(r *resource) handlerFunc {
	return func(w http.ResponseWriter, req *http.Request) error {
		q := req.URL.Query()
		if b, _ := strconv.ParseBool(q.Get("watch")); b {
			return s.watch(r, w, req)
		}
		match, err := selectors(r, req)
		if err != nil {
			return err
		}
		ns := namespaceOf(r, req)
		limit, err := parseLimit(q.Get("limit"))
		if err != nil {
			return err
		}
		if limit > 0 || q.Get("continue") != "" {
			return s.listPaged(w, req, r, ns, match, limit, q.Get("continue"))
		}
		if q.Get("resourceVersion") != "0" {
			// A consistent list: wait until the cache has seen every write
			// etcd had when the request arrived.
			if err := s.cache.WaitFresh(req.Context()); err != nil {
				return err
			}
		}
		entries, rev, err := s.cache.List(r.keyPrefix(), r.nsPrefix(ns), match)
		if err != nil {
			return err
		}
		items := make([][]byte, len(entries))
		for i, e := range entries {
			items[i] = e.Data
		}
		writeList(w, r, rev, "", -1, items)
		return nil
	}
}

func parseLimit(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("limit must be a non-negative integer, not %q", v)
	}
	return n, nil
}

// writeList writes a list from pre-encoded items, without re-encoding them.
// remaining, when not negative, is the number of items after this page.
func writeList(w http.ResponseWriter, r *resource, rev int64, cont string, remaining int64, items [][]byte) {
	var b bytes.Buffer
	size := 128
	for _, it := range items {
		size += len(it) + 1
	}
	b.Grow(size)
	fmt.Fprintf(&b, `{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d"`, r.listKind, r.apiVersion(), rev)
	if cont != "" {
		fmt.Fprintf(&b, `,"continue":%q`, cont)
		if remaining >= 0 {
			fmt.Fprintf(&b, `,"remainingItemCount":%d`, remaining)
		}
	}
	b.WriteString(`},"items":[`)
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it)
	}
	b.WriteString("]}")
	writeRawJSON(w, http.StatusOK, b.Bytes())
}

// continueToken is the opaque state of a paged list: the revision all pages
// are read at and the key the next page starts after.
type continueToken struct {
	Rev   int64  `json:"rv"`
	After string `json:"start"`
}

// listPaged reads one page from etcd at a pinned revision. Selectors apply
// per page, so a page may hold fewer than limit items, as in Kubernetes.
func (s *Server) listPaged(w http.ResponseWriter, req *http.Request, r *resource, ns string, match func(*watchcache.Entry) bool, limit int64, cont string) error {
	var tok continueToken
	if cont != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cont)
		if err != nil || json.Unmarshal(raw, &tok) != nil || tok.Rev <= 0 {
			return badRequest("invalid continue token")
		}
	}
	if limit == 0 {
		limit = 500
	}
	prefix := r.nsPrefix(ns)
	if tok.After != "" && (len(tok.After) < len(prefix) || tok.After[:len(prefix)] != prefix) {
		return badRequest("the continue token belongs to another list")
	}
	var items [][]byte
	rev := tok.Rev
	after := tok.After
	more := false
	var remaining int64
	decode := s.decoderFor(r)
	for int64(len(items)) < limit {
		page, err := s.store.List(req.Context(), prefix, store.ListOptions{Limit: limit - int64(len(items)), After: after, Revision: rev})
		if err != nil {
			if rev > 0 && isCompacted(err) {
				return apierrors.NewResourceExpired("the continue token is too old: the list changed too much since the first page; list again without it")
			}
			return err
		}
		rev = page.Revision
		for _, kv := range page.Items {
			e, err := decode(kv.Key, kv.Value, kv.ModRevision)
			if err != nil {
				return err
			}
			after = kv.Key
			if match == nil || match(e) {
				items = append(items, e.Data)
			}
		}
		more, remaining = page.More, page.Remaining
		if !page.More {
			break
		}
	}
	next := ""
	if more {
		raw, _ := json.Marshal(continueToken{Rev: rev, After: after})
		next = base64.RawURLEncoding.EncodeToString(raw)
	}
	if match != nil {
		remaining = -1 // unknown: the selectors have not been applied to the rest
	}
	writeList(w, r, rev, next, remaining, items)
	return nil
}

func isCompacted(err error) bool { return errors.Is(err, store.ErrCompacted) }

// watch streams changes as newline-delimited JSON watch events.
//
// Where it starts, as in Kubernetes: from resourceVersion N, with every
// change after N; from none (or "0"), with the current objects as ADDED
// events, then the changes. With sendInitialEvents=true (client-go's
// watch-list, which reflectors use instead of a list), the current objects
// (at least as new as resourceVersion) come first as ADDED events, then a
// BOOKMARK annotated "k8s.io/initial-events-end" at the revision they
// reflect, then the changes. With sendInitialEvents=false and no
// resourceVersion, only changes from now on are sent.
func (s *Server) watch(r *resource, w http.ResponseWriter, req *http.Request) error {
	q := req.URL.Query()
	match, err := selectors(r, req)
	if err != nil {
		return err
	}
	var from int64
	rv := q.Get("resourceVersion")
	if rv != "" && rv != "0" {
		if from, err = strconv.ParseInt(rv, 10, 64); err != nil || from < 0 {
			return badRequest("resourceVersion must be a non-negative integer, not %q", rv)
		}
		if from > s.cache.Rev() {
			if err := s.cache.WaitRev(req.Context(), from); err != nil {
				return apierrors.NewTimeoutError(fmt.Sprintf("too large resource version: %d, current: %d", from, s.cache.Rev()), 1)
			}
		}
	}
	bookmarks, _ := strconv.ParseBool(q.Get("allowWatchBookmarks"))
	sendInitial, initialSet := false, q.Has("sendInitialEvents")
	if initialSet {
		if sendInitial, err = strconv.ParseBool(q.Get("sendInitialEvents")); err != nil {
			return badRequest("sendInitialEvents must be true or false, not %q", q.Get("sendInitialEvents"))
		}
	}
	switch m := q.Get("resourceVersionMatch"); {
	case m == "":
	case !initialSet:
		return badRequest("resourceVersionMatch is only allowed in a watch together with sendInitialEvents")
	case m != "NotOlderThan":
		return badRequest("resourceVersionMatch must be NotOlderThan in a watch, not %q", m)
	}
	if sendInitial && !bookmarks {
		return badRequest("sendInitialEvents=true requires allowWatchBookmarks=true")
	}
	switch {
	case sendInitial:
		// The current state, at least as new as resourceVersion.
		if from == 0 && rv != "0" {
			if err := s.cache.WaitFresh(req.Context()); err != nil {
				return err
			}
		}
		from = 0
	case initialSet && rv == "":
		from = s.cache.Rev() // changes from now on only
	case rv == "":
		// A consistent start: the initial objects include every write
		// acknowledged before the request.
		if err := s.cache.WaitFresh(req.Context()); err != nil {
			return err
		}
	}
	ctx := req.Context()
	if ts := q.Get("timeoutSeconds"); ts != "" {
		n, err := strconv.Atoi(ts)
		if err != nil || n < 0 {
			return badRequest("timeoutSeconds must be a non-negative integer")
		}
		if n > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(n)*time.Second)
			defer cancel()
		}
	}
	wt, err := s.cache.Watch(r.keyPrefix(), r.nsPrefix(namespaceOf(r, req)), from, match)
	if err != nil {
		return err
	}
	defer wt.Stop()
	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()

	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	var tick <-chan time.Time
	if bookmarks {
		t := time.NewTicker(s.cfg.BookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	var buf bytes.Buffer
	bookmark := func(rev int64, initialEnd bool) {
		ann := ""
		if initialEnd {
			ann = `,"annotations":{"k8s.io/initial-events-end":"true"}`
		}
		fmt.Fprintf(&buf, `{"type":"BOOKMARK","object":{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d"%s}}}`+"\n", r.kind, r.apiVersion(), rev, ann)
	}
	initialEndOwed := sendInitial
	for {
		buf.Reset()
		if initialEndOwed && !wt.InitialPending() {
			initialEndOwed = false
			bookmark(wt.StartRev(), true)
			if _, err := w.Write(buf.Bytes()); err != nil {
				return nil
			}
			if flusher != nil && !wt.Pending() {
				flusher.Flush()
			}
			continue
		}
		ev, ok, ticked := wt.Next(ctx, tick)
		if !ok {
			return nil
		}
		if ticked {
			if initialEndOwed {
				continue // no bookmark may come before the initial events' end
			}
			// Only a watcher that has written every event up to the
			// revision, and was not cut off meanwhile, may bookmark it.
			rev, caught := wt.Caught()
			if !caught {
				continue
			}
			bookmark(rev, false)
		} else {
			buf.WriteString(`{"type":"`)
			buf.WriteString(string(ev.Type))
			buf.WriteString(`","object":`)
			buf.Write(ev.Entry.Data)
			buf.WriteString("}\n")
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return nil
		}
		if flusher != nil && !wt.Pending() {
			flusher.Flush()
		}
	}
}
