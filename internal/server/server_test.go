package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vigil-vm/vigil/api/v1"
	"github.com/vigil-vm/vigil/client"
	"github.com/vigil-vm/vigil/internal/server"
	"github.com/vigil-vm/vigil/internal/store/etcdtest"
)

func quiet(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func vm(name string) *v1.VirtualMachine {
	rs := v1.RunStrategyHalted
	return &v1.VirtualMachine{
		TypeMeta:   v1.TypeMetaFor(v1.KindVirtualMachine),
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.VirtualMachineSpec{RunStrategy: &rs, Template: &v1.VirtualMachineInstanceTemplateSpec{Spec: v1.VirtualMachineInstanceSpec{
			Domain: v1.DomainSpec{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}},
		}}},
	}
}

func newClient(t *testing.T, url string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.Server = url
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEmbeddedRestart: a server on the embedded etcd serves the API, and a
// new server on the same data directory finds what the first one stored.
func TestEmbeddedRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: true, Version: "test", Log: quiet(t)}
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s.URL, client.Config{})
	if _, err := c.VirtualMachines("default").Create(context.Background(), vm("kept"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", err, resp)
	}
	resp.Body.Close()
	s.Close()
	if _, err := http.Get(s.URL + "/healthz"); err == nil {
		t.Error("the listener still answers after Close")
	}

	s2, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("restart on the same data directory: %v", err)
	}
	defer s2.Close()
	c2 := newClient(t, s2.URL, client.Config{})
	if _, err := c2.VirtualMachines("default").Get(context.Background(), "kept"); err != nil {
		t.Errorf("after a restart: %v", err)
	}
	select {
	case err := <-s2.Err():
		t.Errorf("server error: %v", err)
	default:
	}
}

// TestExternalEtcd: a server on an external etcd (here another process's
// view of an embedded member, over gRPC), and a second server sharing it
// sees the first one's writes.
func TestExternalEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	cfg := server.Config{EtcdEndpoints: []string{e.ClientURL}, Listen: "127.0.0.1:0", Log: quiet(t)}
	a, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ca, cb := newClient(t, a.URL, client.Config{}), newClient(t, b.URL, client.Config{})
	w, err := cb.VirtualMachines("default").Watch(context.Background(), client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := ca.VirtualMachines("default").Create(context.Background(), vm("shared"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.C:
		if ev.Type != client.Added || ev.Object.Name != "shared" {
			t.Errorf("the other server's watch saw %s %v", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other server's watch saw nothing")
	}
	if _, err := cb.VirtualMachines("default").Get(context.Background(), "shared"); err != nil {
		t.Error(err)
	}
}

// TestTokenAndTLS: with a token every request needs it; with a certificate
// the API is served over TLS.
func TestTokenAndTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	s, err := server.Start(context.Background(), server.Config{DataDir: dir, Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: true,
		Token: "tok", TLSCertFile: certFile, TLSKeyFile: keyFile, Log: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL[:8] != "https://" {
		t.Fatalf("URL %s", s.URL)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	anon := newClient(t, s.URL, client.Config{Transport: tr})
	if _, err := anon.VirtualMachines("default").List(context.Background(), client.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("no token: %v", err)
	}
	authed := newClient(t, s.URL, client.Config{Transport: tr, Token: "tok"})
	if _, err := authed.VirtualMachines("default").List(context.Background(), client.ListOptions{}); err != nil {
		t.Errorf("with the token: %v", err)
	}
}

// TestStartErrors: bad configurations fail cleanly and leave nothing
// behind (the data directory can be used again).
func TestStartErrors(t *testing.T) {
	if _, err := server.Start(context.Background(), server.Config{Listen: "127.0.0.1:0", Log: quiet(t)}); err == nil {
		t.Error("started without a data directory")
	}
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := server.Start(context.Background(), server.Config{DataDir: dir, Listen: busy.Addr().String(), EtcdUnsafeNoFsync: true, Log: quiet(t)}); err == nil {
		t.Error("started on a busy port")
	}
	if _, err := server.Start(context.Background(), server.Config{DataDir: dir, Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: true, TLSCertFile: "x", Log: quiet(t)}); err == nil {
		t.Error("started with a certificate but no key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := server.Start(ctx, server.Config{EtcdEndpoints: []string{"http://127.0.0.1:1"}, Listen: "127.0.0.1:0", Log: quiet(t)}); err == nil {
		t.Error("started on an unreachable etcd")
	}
	// The data directory was released by each failure.
	s, err := server.Start(context.Background(), server.Config{DataDir: dir, Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: true, Log: quiet(t)})
	if err != nil {
		t.Fatalf("starting after failed starts: %v", err)
	}
	s.Close()
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestCloseLeavesNoGoroutines: Close ends every goroutine the server
// started, open watches included.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", EtcdUnsafeNoFsync: true, Log: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s.URL, client.Config{})
	if _, err := c.VirtualMachines("default").Create(context.Background(), vm("a"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := c.VirtualMachines("default").Watch(context.Background(), client.ListOptions{AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	<-w.C
	s.Close()
	// The server ended the watch stream.
	select {
	case _, ok := <-w.C:
		if ok {
			t.Error("an event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close left a watch stream open")
	}
	w.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
