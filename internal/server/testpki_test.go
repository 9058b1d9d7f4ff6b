package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A small PKI for tests: CAs and the certificates they issue, generated
// in Go (ECDSA P-256), never read from testdata that could expire.

// testCA is a certificate authority.
type testCA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte // the CA certificate
}

// testCert is an issued certificate with its key.
type testCert struct {
	TLS     tls.Certificate // leaf and key, for a tls.Config
	Cert    *x509.Certificate
	CertPEM []byte // the leaf (and nothing else)
	KeyPEM  []byte // PKCS #8
}

func newPKIKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// newTestCA returns a fresh root CA valid from an hour ago for a day.
func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key := newPKIKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          testSerial(t),
		Subject:               pkix.Name{CommonName: "m2mauth test CA", Organization: []string{"m2mauth tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool is a pool holding the CA alone.
func (ca *testCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// testLeafTemplate is the template of an issued certificate before tweaks:
// subject CN=test, SANs localhost, 127.0.0.1 and ::1, valid from an hour
// ago for a day, for both server and client authentication.
func testLeafTemplate(t testing.TB) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: testSerial(t),
		Subject:      pkix.Name{CommonName: "test"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

// issue returns a certificate the CA signed; tweak (if not nil) changes
// the template first (subject, SANs, validity, usages).
func (ca *testCA) issue(t testing.TB, tweak func(*x509.Certificate)) testCert {
	t.Helper()
	return makeTestCert(t, tweak, ca.Cert, ca.Key)
}

// newSelfSigned returns a self-signed certificate (as for
// self_signed_tls_client_auth); tweak as for issue.
func newSelfSigned(t testing.TB, tweak func(*x509.Certificate)) testCert {
	t.Helper()
	return makeTestCert(t, tweak, nil, nil)
}

func makeTestCert(t testing.TB, tweak func(*x509.Certificate), parent *x509.Certificate, parentKey *ecdsa.PrivateKey) testCert {
	t.Helper()
	key := newPKIKey(t)
	tmpl := testLeafTemplate(t)
	if tweak != nil {
		tweak(tmpl)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}
}

// writeTestFile writes data to dir/name (mode 0600) and returns its path.
func writeTestFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testTLSFiles writes a server certificate for the loopback addresses,
// issued by ca, and its key to dir: cert.pem and key.pem.
func testTLSFiles(t testing.TB, ca *testCA, dir string) (certFile, keyFile string, c testCert) {
	t.Helper()
	c = ca.issue(t, nil)
	return writeTestFile(t, dir, "cert.pem", c.CertPEM), writeTestFile(t, dir, "key.pem", c.KeyPEM), c
}
