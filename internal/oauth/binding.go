package oauth

import (
	"net/http"

	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/peer"
)

// bind decides, once the client is known, what the access token of a
// token request is bound to (req.Cnf): the DPoP key the request proved
// (RFC 9449 §5: token_type DPoP, cnf.jkt), and the certificate it came
// with when the client asks for certificate-bound tokens or the server
// binds every certificate-authenticated request's (RFC 8705 §3:
// cnf.x5t#S256). A client whose tokens must be bound is refused a token
// that would not be.
//
// Only the standard token endpoint binds tokens (constrain). The
// compatibility surfaces and the admin login issue Bearer tokens to
// clients that cannot send proofs, and refuse clients whose tokens must be
// sender-constrained rather than hand them a bearer token.
func (ep *Endpoint) bind(caller Caller, req *Request) *Error {
	c := caller.Client
	byCert := caller.Method == AuthTLSClient || caller.Method == AuthSelfSignedTLSClient
	if !ep.constrain {
		if c.DPoPBoundTokens || c.CertBoundTokens || byCert && ep.svc.policy.CertBoundTokens {
			return newError(http.StatusBadRequest, CodeUnauthorizedClient,
				"this client's tokens must be sender-constrained (DPoP or certificate-bound), which this endpoint does not issue: use the standard token endpoint")
		}
		return nil
	}
	var cnf issuer.Confirmation
	if req.DPoP != nil {
		cnf.JKT = req.DPoP.JKT
	} else if c.DPoPBoundTokens {
		return errDPoP("a DPoP proof is required for this client")
	}
	cert := req.Credentials.Cert
	switch {
	case cert != nil && (c.CertBoundTokens || byCert && ep.svc.policy.CertBoundTokens):
		cnf.X5tS256 = peer.Thumbprint(cert)
	case c.CertBoundTokens:
		return ErrInvalidRequest("this client's access tokens are bound to its TLS client certificate: send the request with one")
	}
	if cnf != (issuer.Confirmation{}) {
		bound := cnf // only a bound token's escapes
		req.Cnf = &bound
	}
	return nil
}
