// Package record writes Kubernetes-style Events about objects, the way
// client-go's event recorder does: asynchronously (a controller never waits
// on an event), and aggregated, so that an event repeated about the same
// object increments the count of one Event instead of creating many.
package record

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
)

// Recorder records Events. Create it with New, run it with Run.
type Recorder struct {
	c         *client.Client
	component string
	host      string
	log       *slog.Logger

	// queue holds events not yet written. It is bounded: when the API is
	// slow, events beyond queueSize are dropped (and counted) rather than
	// slowing the controller that reports them.
	queue   chan *v1.Event
	mu      sync.Mutex // guards dropped
	dropped int
}

const queueSize = 1024

// New returns a recorder that reports as component (e.g. "vm-controller")
// from host (e.g. the node name).
func New(c *client.Client, component, host string, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	return &Recorder{c: c, component: component, host: host, log: log, queue: make(chan *v1.Event, queueSize)}
}

// Eventf records an event about obj. eventType is v1.EventTypeNormal or
// v1.EventTypeWarning.
func (r *Recorder) Eventf(obj client.Object, eventType, reason, format string, args ...any) {
	if r == nil {
		return
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	ref := v1.ObjectReference{
		Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
		UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
	}
	if ref.Kind == "" {
		ref.Kind, ref.APIVersion = kindOf(obj)
	}
	now := metav1.Now()
	msg := fmt.Sprintf(format, args...)
	ns := obj.GetNamespace()
	if ns == "" {
		ns = v1.DefaultNamespace // events about cluster-scoped objects (nodes)
	}
	ev := &v1.Event{
		TypeMeta: v1.TypeMetaFor(v1.KindEvent),
		ObjectMeta: metav1.ObjectMeta{
			Name:      eventName(ref, eventType, reason, msg, r.component),
			Namespace: ns,
		},
		InvolvedObject: ref, Reason: reason, Message: msg, Type: eventType,
		Source:         v1.EventSource{Component: r.component, Host: r.host},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "vigil.dev/" + r.component, ReportingInstance: r.host,
	}
	select {
	case r.queue <- ev:
	default:
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
	}
}

func kindOf(obj client.Object) (string, string) {
	switch obj.(type) {
	case *v1.VirtualMachine:
		return v1.KindVirtualMachine, v1.KubeVirtAPIVersion
	case *v1.VirtualMachineInstance:
		return v1.KindVirtualMachineInstance, v1.KubeVirtAPIVersion
	case *v1.Node:
		return v1.KindNode, v1.CoreAPIVersion
	}
	return "", ""
}

// eventName is the same for repeats of one event about one object, so that
// repeats aggregate into one Event.
func eventName(ref v1.ObjectReference, eventType, reason, msg, component string) string {
	h := sha256.Sum256([]byte(strings.Join([]string{string(ref.UID), ref.Kind, eventType, reason, msg, component}, "\x00")))
	name := ref.Name
	if len(name) > 200 {
		name = name[:200]
	}
	return name + "." + hex.EncodeToString(h[:8])
}

// writers is how many events a recorder writes at once. The API server
// commits events in batches, so one write waits for its batch; several in
// flight keep a busy controller's events from queueing up behind each other.
const writers = 64

// Run writes queued events until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-r.queue:
					r.write(ctx, ev)
				}
			}
		}()
	}
	wg.Wait()
}

// Dropped returns how many events were dropped because the queue was full.
func (r *Recorder) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

func (r *Recorder) write(ctx context.Context, ev *v1.Event) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	events := r.c.Events(ev.Namespace)
	_, err := events.Create(ctx, ev, client.WriteOptions{DiscardResult: true}) // nobody reads the stored Event
	if err == nil || !apierrors.IsAlreadyExists(err) {
		if err != nil && ctx.Err() == nil {
			r.log.Debug("recording an event failed", "reason", ev.Reason, "object", ev.InvolvedObject.Name, "err", err)
		}
		return
	}
	// A repeat: count it on the existing event.
	for range 3 {
		cur, err := events.Get(ctx, ev.Name)
		if err != nil {
			return
		}
		cur.Count++
		cur.LastTimestamp = ev.LastTimestamp
		if _, err := events.Update(ctx, cur, client.WriteOptions{}); !apierrors.IsConflict(err) {
			return
		}
	}
}
