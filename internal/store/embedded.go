package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// EmbeddedConfig configures an etcd member running inside the process.
type EmbeddedConfig struct {
	// DataDir holds the member's data; it is created if missing.
	DataDir string
	// Name is the member name (default "vigil").
	Name string
	// ClientURL and PeerURL are where other processes reach this member;
	// empty picks a free loopback port.
	ClientURL string
	PeerURL   string
	// InitialCluster lists name=peerURL pairs of all members; empty means a
	// single-member cluster. JoinExisting joins a running cluster.
	InitialCluster string
	JoinExisting   bool
	// UnsafeNoFsync turns fsync off. Tests only: a crash loses data.
	UnsafeNoFsync bool
	// QuotaBackendBytes caps the database (0: etcd's default, 2 GiB).
	QuotaBackendBytes int64
	// LogLevel is etcd's own log level (default "error").
	LogLevel string
	// StartTimeout bounds the wait for the member to be ready (default 60s).
	StartTimeout time.Duration
	// Logger receives etcd's own logs; nil logs to stderr at LogLevel.
	Logger *zap.Logger
}

// The Raft log the embedded member keeps in memory (see StartEmbedded).
const (
	snapshotCount          = 2000
	snapshotCatchUpEntries = 1000
)

// Embedded is a running in-process etcd member.
type Embedded struct {
	etcd *embed.Etcd
	// Client talks to the member in-process, without a network hop.
	Client *clientv3.Client
	// ClientURL is where other processes reach the member.
	ClientURL string
	// PeerURL is where other members reach it.
	PeerURL string

	closeOnce sync.Once
}

// StartEmbedded starts an etcd member and waits until it serves. Ports it
// picks itself (no ClientURL or PeerURL) may be taken by another process
// between the pick and etcd's listen: it then picks again, a few times.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	picked := cfg.ClientURL == "" || cfg.PeerURL == ""
	for attempt := 1; ; attempt++ {
		e, err := startEmbedded(cfg)
		if err == nil || !picked || attempt == 3 || !portTaken(err) {
			return e, err
		}
	}
}

// portTaken reports whether err is a listen on a port already in use.
func portTaken(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func startEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("embedded etcd: a data directory is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	if cfg.Name == "" {
		cfg.Name = "vigil"
	}
	var err error
	if cfg.ClientURL == "" {
		if cfg.ClientURL, err = freeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	if cfg.PeerURL == "" {
		if cfg.PeerURL, err = freeLoopbackURL(); err != nil {
			return nil, err
		}
	}
	curl, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URL %q: %w", cfg.ClientURL, err)
	}
	purl, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL %q: %w", cfg.PeerURL, err)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Name + "=" + cfg.PeerURL
	}
	if cfg.JoinExisting {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.QuotaBackendBytes = cfg.QuotaBackendBytes
	// etcd keeps the Raft log since its last snapshot in memory, plus the
	// catch-up entries kept for slow followers: 10,000 and 5,000 entries by
	// default, which at 10,000 VMs is tens of MiB of recent writes. A
	// snapshot is cheap (the data lives in the backend; the snapshot holds
	// only membership), so take one more often and keep a shorter tail; a
	// follower further behind gets a snapshot instead.
	ec.SnapshotCount = snapshotCount
	ec.SnapshotCatchUpEntries = snapshotCatchUpEntries
	ec.ExperimentalSnapshotCatchUpEntries = snapshotCatchUpEntries
	ec.LogLevel = cfg.LogLevel
	if ec.LogLevel == "" {
		ec.LogLevel = "error"
	}
	ec.LogOutputs = []string{"stderr"}
	logger := cfg.Logger
	if logger == nil {
		var level zapcore.Level
		if err := level.UnmarshalText([]byte(ec.LogLevel)); err != nil {
			return nil, fmt.Errorf("embedded etcd: log level %q: %w", ec.LogLevel, err)
		}
		zc := zap.NewProductionConfig()
		zc.Level = zap.NewAtomicLevelAt(level)
		zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
		l, err := zc.Build()
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: logger: %w", err)
		}
		logger = l
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&shutdownFilter{Core: logger.Core()}))
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(timeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready after %s", timeout)
	}
	return &Embedded{etcd: e, Client: v3client.New(e.Server), ClientURL: cfg.ClientURL, PeerURL: cfg.PeerURL}, nil
}

// Err reports a fatal error of the member after it started.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// IsLeader reports whether this member is its cluster's Raft leader now.
func (e *Embedded) IsLeader() bool {
	return e.etcd.Server.Leader() == e.etcd.Server.MemberID()
}

// Close stops the member. Closing it again does nothing.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		e.Client.Close()
		e.etcd.Close()
	})
}

// Wait blocks until the member stops or ctx ends.
func (e *Embedded) Wait(ctx context.Context) {
	select {
	case <-e.etcd.Server.StopNotify():
	case <-ctx.Done():
	}
}

func freeLoopbackURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("embedded etcd: finding a free port: %w", err)
	}
	defer l.Close()
	return "http://" + l.Addr().String(), nil
}

// shutdownFilter drops the errors etcd logs about its own listeners while it
// is being closed ("setting up serving from embedded etcd failed: ... server
// closed"), which are expected and would only alarm.
type shutdownFilter struct{ zapcore.Core }

func (f *shutdownFilter) With(fields []zapcore.Field) zapcore.Core {
	return &shutdownFilter{Core: f.Core.With(fields)}
}

func (f *shutdownFilter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Message == "setting up serving from embedded etcd failed." {
		return ce
	}
	return f.Core.Check(e, ce)
}
