package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// A small PKI for the token pipeline's certificate tests, generated in Go
// (ECDSA P-256) so that nothing can expire in testdata.

type pipeCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func pipeKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pipeSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pipeCreate(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newPipeCA returns a root CA valid from an hour ago for a day.
func newPipeCA(t testing.TB) *pipeCA {
	t.Helper()
	key := pipeKey(t)
	tmpl := &x509.Certificate{SerialNumber: pipeSerial(t), Subject: pkix.Name{CommonName: "pipeline test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	return &pipeCA{cert: pipeCreate(t, tmpl, tmpl, &key.PublicKey, key), key: key}
}

func (ca *pipeCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// clientCert issues a client-authentication certificate, changed by tweak.
func (ca *pipeCA) clientCert(t testing.TB, tweak func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := pipeLeaf(t)
	if tweak != nil {
		tweak(tmpl)
	}
	return pipeCreate(t, tmpl, ca.cert, &pipeKey(t).PublicKey, ca.key)
}

func pipeLeaf(t testing.TB) *x509.Certificate {
	return &x509.Certificate{SerialNumber: pipeSerial(t), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

// selfSignedCert is a self-signed client certificate of key.
func selfSignedCert(t testing.TB, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := pipeLeaf(t)
	return pipeCreate(t, tmpl, tmpl, &key.PublicKey, key)
}

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
