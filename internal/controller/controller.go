// Package controller runs level-triggered reconcilers: event handlers only
// enqueue keys, and a reconcile function re-reads everything it needs for a
// key and makes the world match. It wraps client-go's rate-limited,
// de-duplicating work queue, which never hands one key to two workers at
// once.
//
// A reconcile has three outcomes (as in controller-runtime): success,
// optionally with RequeueAfter for a time-based wait (a crash-loop delay);
// an error, retried with per-key exponential backoff; or a Terminal error,
// recorded and not retried.
package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// Result asks for another pass after a delay.
type Result struct {
	RequeueAfter time.Duration
}

// ReconcileFunc reconciles one key.
type ReconcileFunc func(ctx context.Context, key string) (Result, error)

// terminalError is an error that retrying cannot fix.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// Terminal marks err as not worth retrying.
func Terminal(err error) error { return &terminalError{err: err} }

// IsTerminal reports whether err was marked with Terminal.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}

// Controller is a work queue and its workers.
type Controller struct {
	name      string
	reconcile ReconcileFunc
	workers   int
	log       *slog.Logger
	queue     workqueue.TypedRateLimitingInterface[string]
}

// Options tune a controller.
type Options struct {
	// Workers is the number of concurrent reconciles (default 4).
	Workers int
	// BaseDelay and MaxDelay bound the per-key retry backoff after errors
	// (default 5ms and 30s).
	BaseDelay, MaxDelay time.Duration
	Log                 *slog.Logger
}

// New returns a controller; feed it with Enqueue and start it with Run.
func New(name string, reconcile ReconcileFunc, o Options) *Controller {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 5 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](o.BaseDelay, o.MaxDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name},
	)
	return &Controller{name: name, reconcile: reconcile, workers: o.Workers, log: o.Log.With("controller", name), queue: q}
}

// Enqueue asks for a pass over key. Keys already queued are not queued twice.
func (c *Controller) Enqueue(key string) { c.queue.Add(key) }

// EnqueueAfter asks for a pass over key after d.
func (c *Controller) EnqueueAfter(key string, d time.Duration) { c.queue.AddAfter(key, d) }

// Len returns the number of queued keys.
func (c *Controller) Len() int { return c.queue.Len() }

// Run processes keys with the workers until ctx ends, then drains.
func (c *Controller) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	res, err := c.reconcile(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
		if res.RequeueAfter > 0 {
			c.queue.AddAfter(key, res.RequeueAfter)
		}
	case IsTerminal(err):
		c.queue.Forget(key)
		c.log.Error("reconcile failed and will not be retried", "key", key, "err", err)
	default:
		if ctx.Err() != nil {
			return true
		}
		if res.RequeueAfter > 0 {
			c.log.Warn("reconcile returned both a result and an error; the error wins", "key", key)
		}
		c.log.Debug("reconcile failed; retrying", "key", key, "err", err)
		c.queue.AddRateLimited(key)
	}
	return true
}
