// Package server assembles one `vigil server` process: the store (an
// embedded etcd member, or a client of an external cluster), the API server
// and its HTTP listener. It is the wiring shared by cmd/vigil and the tests
// that run a whole server in-process; like cmd/, it may import the store.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vigil-vm/vigil/internal/apiserver"
	"github.com/vigil-vm/vigil/internal/store"
)

// Config configures a server process.
type Config struct {
	// DataDir holds the embedded etcd's data (and, later, node state).
	DataDir string
	// Listen is the API's HOST:PORT (default 127.0.0.1:7070); port 0 picks one.
	Listen string
	// TLSCertFile and TLSKeyFile serve the API over TLS when both are set.
	TLSCertFile, TLSKeyFile string
	// Token, when set, is required from every client.
	Token string

	// EtcdEndpoints selects an external etcd cluster instead of the
	// embedded member; the TLS options secure the connection to it.
	EtcdEndpoints                         []string
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// EtcdUnsafeNoFsync turns fsync off in the embedded member (tests only).
	EtcdUnsafeNoFsync bool

	// CompactionInterval is how often etcd history is compacted (0: 1m).
	CompactionInterval time.Duration
	// ControllerFinalizers: new VMs get the VM controller's finalizer at
	// create (see apiserver.Config). Set it when the controllers run.
	ControllerFinalizers bool
	Version              string
	Log                  *slog.Logger
}

// Server is a running server process.
type Server struct {
	// URL is where the API is served, e.g. http://127.0.0.1:7070.
	URL string
	// API is the API server.
	API *apiserver.Server

	cfg      Config
	embedded *store.Embedded
	etcd     *clientv3.Client
	listener net.Listener
	http     *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	errc     chan error
}

// Start starts the store, the API server and its listener.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7070"
	}
	s := &Server{cfg: cfg, errc: make(chan error, 2)}
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.closeStore()
		}
	}()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	s.listener = l
	s.API = apiserver.New(apiserver.Config{
		Store: store.New(s.etcd), Log: cfg.Log, Token: cfg.Token, Version: cfg.Version,
		CompactionInterval: cfg.CompactionInterval, ControllerFinalizers: cfg.ControllerFinalizers,
		HeartbeatDigest: digestName(l.Addr().String(), cfg),
	})
	scheme := "http"
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			l.Close()
			return nil, errors.New("TLS needs both --tls-cert-file and --tls-key-file")
		}
		scheme = "https"
	}
	s.URL = scheme + "://" + l.Addr().String()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.API.Run(runCtx) }()
	if s.embedded != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case err, ok := <-s.embedded.Err():
				if ok && err != nil {
					s.errc <- fmt.Errorf("embedded etcd: %w", err)
				}
			case <-runCtx.Done():
			}
		}()
	}
	s.http = &http.Server{Handler: s.API.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var err error
		if scheme == "https" {
			err = s.http.ServeTLS(l, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			err = s.http.Serve(l)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("serving the API: %w", err)
		}
	}()
	select {
	case <-s.API.Ready():
	case <-time.After(30 * time.Second):
		s.Close()
		return nil, errors.New("the API server's watch cache did not load within 30s")
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	ok = true
	return s, nil
}

// openStore connects to the external etcd, or starts the embedded member.
// The connection check gives up when ctx ends, or after 10s.
func (s *Server) openStore(ctx context.Context) error {
	cfg := s.cfg
	if len(cfg.EtcdEndpoints) > 0 {
		tlsCfg, err := etcdTLS(cfg)
		if err != nil {
			return err
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second, TLS: tlsCfg,
			Logger: zap.NewNop(), DialKeepAliveTime: 5 * time.Second, DialKeepAliveTimeout: 3 * time.Second})
		if err != nil {
			return fmt.Errorf("connecting to etcd at %s: %w", strings.Join(cfg.EtcdEndpoints, ","), err)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.Get(ctx, "/vigil/probe"); err != nil {
			c.Close()
			return fmt.Errorf("etcd at %s does not answer: %w", strings.Join(cfg.EtcdEndpoints, ","), err)
		}
		s.etcd = c
		return nil
	}
	if cfg.DataDir == "" {
		return errors.New("a data directory is required for the embedded etcd: set --data-dir")
	}
	e, err := store.StartEmbedded(store.EmbeddedConfig{
		DataDir: filepath.Join(cfg.DataDir, "etcd"), UnsafeNoFsync: cfg.EtcdUnsafeNoFsync, LogLevel: "error",
	})
	if err != nil {
		return err
	}
	s.embedded, s.etcd = e, e.Client
	return nil
}

// digestName names this server's HeartbeatDigest after what tells it from
// every other server of the control plane and stays the same when it is
// started again: its host, listen address, data directory and etcd. A
// restarted server takes over its digest instead of leaving one behind.
func digestName(listen string, cfg Config) string {
	host, _ := os.Hostname()
	dir, _ := filepath.Abs(cfg.DataDir)
	sum := sha256.Sum256([]byte(strings.Join([]string{host, listen, dir, strings.Join(cfg.EtcdEndpoints, ",")}, "\x00")))
	return "apiserver-" + hex.EncodeToString(sum[:6])
}

func etcdTLS(cfg Config) (*tls.Config, error) {
	if cfg.EtcdCAFile == "" && cfg.EtcdCertFile == "" && cfg.EtcdKeyFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.EtcdCAFile != "" {
		pem, err := os.ReadFile(cfg.EtcdCAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA %s holds no PEM certificate", cfg.EtcdCAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.EtcdCertFile != "" || cfg.EtcdKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.EtcdCertFile, cfg.EtcdKeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Handler is the API's HTTP handler, for clients in this process
// (inproc.Transport): the same handler the listener serves.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Etcd returns the etcd client, for the controllers' leader election.
func (s *Server) Etcd() *clientv3.Client { return s.etcd }

// Err reports a fatal error after start (the listener or etcd failed).
func (s *Server) Err() <-chan error { return s.errc }

// Close stops serving, the background loops and the store.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel() // ends the watch cache, and with it every open watch
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
		_ = s.http.Close()
	}
	s.wg.Wait()
	s.closeStore()
}

func (s *Server) closeStore() {
	if s.embedded != nil {
		s.embedded.Close()
		s.embedded = nil
	} else if s.etcd != nil {
		s.etcd.Close()
	}
	s.etcd = nil
}
