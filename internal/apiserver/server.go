package apiserver

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-vm/vigil/internal/apiserver/watchcache"
	"github.com/vigil-vm/vigil/internal/store"
)

// Config configures a Server.
type Config struct {
	Store *store.Store
	Log   *slog.Logger
	// Token, when set, is required as a bearer token on every request but
	// the health endpoints. Without it only loopback clients are served.
	Token string
	// Version is reported by /version.
	Version string
	// BookmarkInterval is how often watches that allow bookmarks get one
	// (default 1m, as kube-apiserver's watch cache: a bookmark per watch
	// every few seconds was a wake-up and a write per agent for nothing).
	BookmarkInterval time.Duration
	// CompactionInterval is how often etcd history is compacted (default 1m;
	// negative disables compaction, for servers sharing etcd with another
	// compactor).
	CompactionInterval time.Duration
	// Registry is where metrics are registered (default: a new registry).
	Registry *prometheus.Registry
	// Now is the clock (default time.Now); tests may fix it.
	Now func() time.Time
	// WatchHistory is how many recent events per resource the watch cache
	// keeps for watches that resume from a resourceVersion (default 10000);
	// an older resourceVersion is answered with 410 Gone.
	WatchHistory int
	// EventTTL is how long Events live (default 1h).
	EventTTL time.Duration
	// ControllerFinalizers: new VMs get the VM controller's finalizer at
	// create, as the controller's first pass would add it, saving a write
	// per VM. Set it when Vigil's controllers run against this etcd (vigil
	// server always runs them); without the controllers, a VM with the
	// finalizer could never finish deleting.
	ControllerFinalizers bool
	// GCSweepInterval is how often the garbage collector looks for
	// dependents whose owners are all gone (default 1m); deletions of owners
	// are acted on as they happen.
	GCSweepInterval time.Duration
	// HeartbeatDigest names this server's HeartbeatDigest, the object its
	// agents' heartbeats are committed in (default "apiserver"). Every
	// server sharing an etcd needs its own.
	HeartbeatDigest string
	// HeartbeatRetention is how long a node stays in the digest, its last
	// beat unchanged, after its last stream ended (default 1m).
	HeartbeatRetention time.Duration
}

// Server is the API server. Create it with New, start its background work
// with Run, and serve Handler.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     *store.Store
	cache     *watchcache.Cache
	resources []*resource
	byPath    map[string]*resource // "group/plural" -> resource
	mux       *http.ServeMux
	metrics   *metrics
	now       func() time.Time

	beats *heartbeats

	readyOnce sync.Once
	ready     chan struct{} // closed when the watch cache has loaded
}

// New builds a server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = time.Minute
	}
	if cfg.CompactionInterval == 0 {
		cfg.CompactionInterval = time.Minute
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GCSweepInterval <= 0 {
		cfg.GCSweepInterval = time.Minute
	}
	if cfg.EventTTL <= 0 {
		cfg.EventTTL = time.Hour
	}
	s := &Server{
		cfg: cfg, log: cfg.Log, store: cfg.Store, resources: resources(cfg.EventTTL), byPath: map[string]*resource{},
		mux: http.NewServeMux(), metrics: newMetrics(cfg.Registry), now: cfg.Now, ready: make(chan struct{}),
	}
	decoders, histories := map[string]watchcache.Decoder{}, map[string]int{}
	for _, r := range s.resources {
		s.byPath[r.group+"/"+r.plural] = r
		decoders[r.keyPrefix()] = s.decoderFor(r)
		if r.history > 0 {
			histories[r.keyPrefix()] = r.history
		}
	}
	s.cache = watchcache.New(watchcache.Config{Store: cfg.Store, Prefix: registryPrefix, Resources: decoders,
		History: cfg.WatchHistory, HistoryOf: histories, Log: cfg.Log})
	if cfg.HeartbeatDigest == "" {
		cfg.HeartbeatDigest = "apiserver"
	}
	if cfg.HeartbeatRetention <= 0 {
		cfg.HeartbeatRetention = time.Minute
	}
	s.beats = newHeartbeats(s, cfg.HeartbeatDigest, cfg.HeartbeatRetention)
	s.routes()
	return s
}

// Run runs the watch cache, the heartbeat digest's commits, the garbage
// collector and the compactor until ctx ends.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.cache.Run(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.beats.run(ctx) }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The first load of a large store may take longer than one wait.
		for ctx.Err() == nil {
			if err := s.cache.WaitRev(ctx, 1); err == nil {
				s.readyOnce.Do(func() { close(s.ready) })
				break
			}
		}
		s.collectGarbage(ctx)
	}()
	if s.cfg.CompactionInterval > 0 {
		c := &store.Compactor{Store: s.store, Interval: s.cfg.CompactionInterval, Log: s.log}
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	wg.Wait()
}

// Ready is closed once the server can answer lists and watches.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Handler returns the HTTP handler: authentication, metrics, then the routes.
func (s *Server) Handler() http.Handler {
	return s.authenticate(s.metrics.instrument(http.HandlerFunc(s.serveRoutes)))
}

// serveRoutes serves the routes. A path no route serves, or a method its
// routes do not allow, is answered with a Status too (404 or 405), since
// generic Kubernetes clients decode every error answer as one.
func (s *Server) serveRoutes(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	rec := &headerRecorder{header: w.Header()}
	h.ServeHTTP(rec, r) // the mux's own 404 or 405 (which sets Allow)
	if rec.code == http.StatusMethodNotAllowed {
		writeStatus(w, metav1.Status{Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
			Message: fmt.Sprintf("the server does not allow the method %s on %s", r.Method, r.URL.Path)})
		return
	}
	writeStatus(w, metav1.Status{Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: "the server could not find the requested resource", Details: &metav1.StatusDetails{}})
}

// headerRecorder records the code a handler answers with and discards its
// body; headers go to the real response.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.code = code }

// authenticate lets through requests with the configured bearer token, or,
// without a token, requests from loopback addresses only. Health, readiness
// and version answer everyone.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/livez", "/version":
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, heartbeatPrefix) {
			fullDuplex(w) // a refusal must not wait for the stream's end
		}
		if s.cfg.Token != "" {
			got := []byte(r.Header.Get("Authorization"))
			if subtle.ConstantTimeCompare(got, []byte("Bearer "+s.cfg.Token)) != 1 {
				writeStatus(w, unauthorized())
				return
			}
		} else if !isLoopback(r.RemoteAddr) {
			writeStatus(w, forbidden("this server has no token configured and serves loopback clients only; start it with --token-file to accept remote clients"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if strings.HasPrefix(host, "@") || host == "" { // unix socket peers
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
