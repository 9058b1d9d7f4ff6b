package oauth

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/dn"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/store"
)

// maxChain bounds the intermediates a certificate may come with: each is
// work for the chain check before the client is proven.
const maxChain = 8

// TLSAuth authenticates clients by their TLS client certificate (RFC 8705
// §2), both methods in one authenticator: the certificate reaches it the
// same way (package peer), and the client's registered method decides
// which check runs.
//
//   - tls_client_auth: the certificate chains to one of the configured CAs
//     (for client authentication, at the injected clock's time) and names
//     the client's registered subject exactly: its DN, or one DNS, URI, IP
//     or email SAN.
//   - self_signed_tls_client_auth: the certificate's public key is one the
//     client registered (jwks or jwks_uri, shared with private_key_jwt);
//     no chain: the client vouches for its own key.
//
// Every failure is the same invalid_client.
type TLSAuth struct {
	cas  func() *x509.CertPool
	keys *AssertionAuth
	now  func() time.Time
}

// NewTLSAuth returns a TLSAuth. cas returns the CAs tls_client_auth
// certificates chain to as now configured (nil: none, and tls_client_auth
// always fails); keys reads clients' registered keys.
func NewTLSAuth(cas func() *x509.CertPool, keys *AssertionAuth, now func() time.Time) *TLSAuth {
	if cas == nil {
		cas = func() *x509.CertPool { return nil }
	}
	return &TLSAuth{cas: cas, keys: keys, now: now}
}

// Methods implements Authenticator.
func (a *TLSAuth) Methods() []string { return []string{AuthTLSClient, AuthSelfSignedTLSClient} }

// refusedCert is invalid_client, whatever refused the certificate; reason
// tells the log which check did.
func refusedCert(known, reason string) *Error {
	e := errInvalidClient(known)
	e.reason = reason
	return e
}

// Authenticate implements Authenticator.
func (a *TLSAuth) Authenticate(ctx context.Context, creds Credentials) (Caller, *Error) {
	if creds.Cert == nil || creds.ClientID == "" || len(creds.ClientID) > maxCredentialLen {
		return Caller{}, refusedCert("", "certificate: no certificate or no client_id")
	}
	c, err := env.FromContext(ctx).Clients.GetClient(ctx, creds.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return Caller{}, refusedCert("", "certificate: no such client")
	}
	if err != nil {
		return Caller{}, ErrUnavailable(err)
	}
	switch c.AuthMethod {
	case AuthTLSClient:
		if !a.chains(creds) {
			return Caller{}, refusedCert(c.ID, "tls_client_auth: the certificate does not chain to a configured CA for client authentication")
		}
		if !subjectMatches(c.TLSSubject, creds.Cert) {
			return Caller{}, refusedCert(c.ID, "tls_client_auth: the certificate does not name the client's registered subject")
		}
	case AuthSelfSignedTLSClient:
		ok, e := a.registered(ctx, c, creds.Cert)
		if e != nil {
			e.client = c.ID
			return Caller{}, e
		}
		if !ok {
			return Caller{}, refusedCert(c.ID, "self_signed_tls_client_auth: the certificate's key is not one the client registered")
		}
	default:
		return Caller{}, refusedCert(c.ID, "certificate: the client authenticates another way")
	}
	if c.Disabled {
		e := newError(http.StatusUnauthorized, CodeInvalidClient, "the client is disabled")
		e.client = c.ID
		return Caller{}, e
	}
	return Caller{Client: c, Method: c.AuthMethod}, nil
}

// chains reports whether the certificate chains, through the intermediates
// sent with it, to a configured CA, for client authentication, now.
func (a *TLSAuth) chains(creds Credentials) bool {
	roots := a.cas()
	if roots == nil || len(creds.Chain) > maxChain || !endEntity(creds.Cert) {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range creds.Chain {
		inter.AddCert(c)
	}
	_, err := creds.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: a.now()})
	return err == nil
}

// endEntity reports whether a certificate may stand for a client: not a
// CA's (basic constraints CA:TRUE), and, when it says what its key is for,
// one whose key signs (digitalSignature: the TLS handshake's
// CertificateVerify). A CA's own certificate would otherwise pass as a
// client's that chains to itself.
func endEntity(c *x509.Certificate) bool {
	if c.IsCA {
		return false
	}
	return c.KeyUsage == 0 || c.KeyUsage&x509.KeyUsageDigitalSignature != 0
}

// registered reports whether the certificate's public key is one of the
// client's registered keys, compared by RFC 7638 thumbprint.
func (a *TLSAuth) registered(ctx context.Context, c store.Client, cert *x509.Certificate) (bool, *Error) {
	want, err := jws.Thumbprint(cert.PublicKey)
	if err != nil {
		return false, nil // a key type no client can register
	}
	keys, e := a.keys.clientKeys(ctx, c)
	if e != nil {
		return false, e
	}
	for _, k := range keys {
		if tp, err := jws.Thumbprint(k); err == nil && tp == want {
			return true, nil
		}
	}
	return false, nil
}

// subjectMatches reports whether the certificate names the registered
// subject (RFC 8705 §2.1.2): the DN attribute by attribute, a DNS name
// case-insensitively, a URI (a SPIFFE ID) and an email address exactly,
// an IP address as an address. A client without one matches nothing.
func subjectMatches(s store.TLSSubject, cert *x509.Certificate) bool {
	if s.Value == "" {
		return false
	}
	switch s.Kind {
	case store.TLSSubjectDN:
		return subjectIsDN(cert.RawSubject, s.Value)
	case store.TLSSubjectDNS:
		for _, n := range cert.DNSNames {
			if strings.EqualFold(n, s.Value) {
				return true
			}
		}
	case store.TLSSubjectURI:
		for _, u := range cert.URIs {
			if u.String() == s.Value {
				return true
			}
		}
	case store.TLSSubjectIP:
		want, err := netip.ParseAddr(s.Value)
		if err != nil {
			return false
		}
		for _, ip := range cert.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == want.Unmap() {
				return true
			}
		}
	case store.TLSSubjectEmail:
		for _, e := range cert.EmailAddresses {
			if e == s.Value {
				return true
			}
		}
	}
	return false
}

// subjectIsDN reports whether a certificate's raw subject is the
// registered distinguished name (an RFC 4514 string, read by package dn):
// the same RDNs in the same order, compared by dn.Equal. A subject that
// does not parse matches nothing.
func subjectIsDN(rawSubject []byte, registered string) bool {
	want, err := dn.Parse(registered)
	if err != nil {
		return false
	}
	var got pkix.RDNSequence
	if rest, err := asn1.Unmarshal(rawSubject, &got); err != nil || len(rest) > 0 {
		return false
	}
	return dn.Equal(want, got)
}
