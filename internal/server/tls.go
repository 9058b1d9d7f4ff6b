package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// tlsReloadCheck is how often, at most, the TLS files are looked at for a
// change: a handshake costs a stat of each file at most once per period.
const tlsReloadCheck = time.Second

// fileStamp identifies a version of a file: a rotation (a rename over it,
// a Kubernetes secret's symlink swap, an edit in place) changes its
// modification time or size.
type fileStamp struct {
	mod    time.Time
	size   int64
	exists bool
}

func stampFiles(paths []string) []fileStamp {
	st := make([]fileStamp, len(paths))
	for i, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			st[i] = fileStamp{fi.ModTime(), fi.Size(), true}
		}
	}
	return st
}

// reloader holds what was loaded from files (a certificate, a CA pool) and
// loads it again when the files change, so that a rotated certificate is
// served without a restart. A version that fails to load (a certificate
// written before its key, a broken file) leaves the last good one in use;
// the failure is logged once per version of the files.
type reloader[T any] struct {
	what  string // what is loaded, for the log: "TLS certificate"
	files []string
	load  func() (T, error)
	now   func() time.Time
	log   *slog.Logger

	mu      sync.Mutex
	cur     T
	stamp   []fileStamp // of the files cur was loaded from
	failed  []fileStamp // of the files that last failed to load (logged)
	checked time.Time   // when the files were last looked at
}

// newReloader loads the files once: a failure is returned (a start with a
// broken certificate is an error, not a server without one).
func newReloader[T any](what string, files []string, load func() (T, error), now func() time.Time, log *slog.Logger) (*reloader[T], error) {
	r := &reloader[T]{what: what, files: files, load: load, now: now, log: log}
	r.stamp = stampFiles(files)
	v, err := load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	r.cur, r.checked = v, now()
	return r, nil
}

// get returns the current value, first reloading it when the files
// changed (looked at no more than once per tlsReloadCheck).
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if d := now.Sub(r.checked); d < tlsReloadCheck && d > -tlsReloadCheck {
		return r.cur
	}
	r.checked = now
	st := stampFiles(r.files)
	if slices.Equal(st, r.stamp) || slices.Equal(st, r.failed) {
		return r.cur
	}
	v, err := r.load()
	if err != nil {
		// The error names files and what is wrong with them, never their
		// content (crypto/tls's and crypto/x509's errors quote no key).
		r.failed = st
		r.log.Error("reload "+r.what+": the files changed but do not load; still serving the previous one", "files", r.files, "error", err)
		return r.cur
	}
	r.cur, r.stamp, r.failed = v, st, nil
	r.log.Info("reloaded "+r.what, "files", r.files)
	return r.cur
}

// loadCertificate reads a certificate chain and its private key.
func loadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// loadCertPool reads a PEM bundle of CA certificates; a file without one
// is an error (an empty pool would refuse every tls_client_auth client
// without saying why).
func loadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(file + ": no PEM certificate")
	}
	return pool, nil
}

// initTLS loads the listener's certificate and the client CAs (a failure
// is a startup error), setting clientCAs and tlsConfig.
func (s *Server) initTLS() error {
	switch {
	case s.clientCAs != nil:
		// Given through Options.ClientCAs (an embedding program, tests):
		// mutual TLS is on with those CAs.
		s.optCAs = true
	case s.cfg.TLSClientCA != "":
		cas, err := newReloader("TLS client CAs", []string{s.cfg.TLSClientCA}, func() (*x509.CertPool, error) {
			return loadCertPool(s.cfg.TLSClientCA)
		}, s.now, s.log)
		if err != nil {
			return err
		}
		s.clientCAs = cas.get
	default:
		s.clientCAs = func() *x509.CertPool { return nil }
	}
	if !s.cfg.TLS() {
		return nil
	}
	cert, err := newReloader("TLS certificate", []string{s.cfg.TLSCert, s.cfg.TLSKey}, func() (*tls.Certificate, error) {
		return loadCertificate(s.cfg.TLSCert, s.cfg.TLSKey)
	}, s.now, s.log)
	if err != nil {
		return err
	}
	s.tlsConfig = &tls.Config{
		// Go's default cipher suites and curves: only the floor is set.
		MinVersion: tls.VersionTLS12,
		// HTTP/2 first; http.Server serves h2 on a connection that
		// negotiated it.
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.get(), nil },
	}
	if s.cfg.TLSClientCA != "" {
		// Asked for, never required and not verified here: a
		// self_signed_tls_client_auth certificate chains to no CA, and a
		// request without a certificate (a browser at the console, curl
		// with a secret) must still work. Each client's authentication
		// method checks the certificate it gets (tls_client_auth chains it
		// to clientCAs). No CA names are sent either: a client that picks
		// its certificate by them would send no self-signed one.
		s.tlsConfig.ClientAuth = tls.RequestClientCert
	}
	return nil
}
