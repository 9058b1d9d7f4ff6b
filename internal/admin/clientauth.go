package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/jws"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Client authentication methods (token_endpoint_auth_method, RFC 7591 §2).
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthSecretPost    = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	// AuthFederated: the client presents a token of a trusted external
	// issuer (workload identity) bound to it by its federation.
	AuthFederated = "federated"
	// AuthTLSClient (RFC 8705 §2.1): the client's TLS certificate chains
	// to a trusted CA and carries the subject the client registered.
	AuthTLSClient = "tls_client_auth"
	// AuthSelfSignedTLSClient (RFC 8705 §2.2): the client's TLS
	// certificate holds one of the public keys it registered (jwks or
	// jwks_uri, as a private_key_jwt client's).
	AuthSelfSignedTLSClient = "self_signed_tls_client_auth"
)

// AuthMethods are the methods a client may be registered with.
var AuthMethods = []string{AuthSecretBasic, AuthSecretPost, AuthPrivateKeyJWT, AuthFederated, AuthTLSClient, AuthSelfSignedTLSClient}

// Limits on client keys and federation.
const (
	// MaxClientKeys is the most public keys a private_key_jwt client may
	// register: the current one and a few during a rotation.
	MaxClientKeys  = 5
	maxJWKSBytes   = 16 << 10
	maxURLLen      = 2048
	maxFederation  = 20
	maxSubjectLen  = 512
	maxClaimRules  = 10
	maxClaimRuleLn = 256
)

// FederatedIdentityInput binds a federated client to the workload
// identities of a trust policy.
type FederatedIdentityInput struct {
	// Policy names the trust policy whose tokens are accepted.
	Policy string `json:"policy"`
	// Subject is the tokens' sub: exact, or a pattern where '*' matches
	// any run of characters (system:serviceaccount:payments:*).
	Subject string `json:"subject"`
	// Claims are further conditions: each named claim (a dotted path into
	// nested objects, e.g. kubernetes.io.namespace) must have this value.
	Claims map[string]string `json:"claims,omitempty"`
}

// IsSecretMethod reports whether method authenticates with secrets.
func IsSecretMethod(method string) bool {
	return method == "" || method == AuthSecretBasic || method == AuthSecretPost
}

// usesSecrets reports whether a client's secrets authenticate it.
func usesSecrets(c *store.Client) bool { return IsSecretMethod(c.AuthMethod) || c.AcceptSecrets }

// federation converts the input bindings.
func federation(in []FederatedIdentityInput) []store.FederatedIdentity {
	out := make([]store.FederatedIdentity, 0, len(in))
	for _, f := range in {
		out = append(out, store.FederatedIdentity{Policy: f.Policy, Subject: f.Subject, Claims: f.Claims})
	}
	return out
}

func federationInput(in []store.FederatedIdentity) []FederatedIdentityInput {
	out := make([]FederatedIdentityInput, 0, len(in))
	for _, f := range in {
		out = append(out, FederatedIdentityInput{Policy: f.Policy, Subject: f.Subject, Claims: f.Claims})
	}
	return out
}

// validateClientAuth checks a client's authentication settings in their
// final state, now being the instant its secrets' liveness is judged at.
func validateClientAuth(v *ValidationError, c *store.Client, now time.Time) {
	c.AuthMethod = c.Method()
	if !slices.Contains(AuthMethods, c.AuthMethod) {
		v.add("token_endpoint_auth_method", "must be one of %s", strings.Join(AuthMethods, ", "))
		return
	}
	if len(c.JWKS) > 0 {
		if len(c.JWKS) > maxJWKSBytes {
			v.add("jwks", "at most %d bytes", maxJWKSBytes)
		} else if keys, err := jws.ParseKeySet(c.JWKS, MaxClientKeys); err != nil {
			v.add("jwks", "is not a usable JWK Set of public keys: %v", err)
		} else if len(keys) == 0 {
			v.add("jwks", "holds no key")
		}
	}
	if c.JWKSURI != "" {
		checkKeyURL(v, "jwks_uri", c.JWKSURI)
	}
	if len(c.JWKS) > 0 && c.JWKSURI != "" {
		v.add("jwks_uri", "give the client's keys one way: jwks or jwks_uri, not both")
	}
	switch c.AuthMethod {
	case AuthPrivateKeyJWT, AuthSelfSignedTLSClient:
		if len(c.JWKS) == 0 && c.JWKSURI == "" {
			v.add("jwks", "a %s client needs its public keys: jwks or jwks_uri", c.AuthMethod)
		}
	case AuthFederated:
		if len(c.Federation) == 0 {
			v.add("federation", "a federated client needs at least one binding to a trust policy")
		}
	}
	// accept_secrets, accept_token_endpoint_audience, keys and federation
	// may be set whatever the method (ahead of a switch): only the
	// method's own credentials authenticate.
	if !IsSecretMethod(c.AuthMethod) && !c.AcceptSecrets && slices.ContainsFunc(c.Secrets, func(s store.Secret) bool { return s.Live(now) }) {
		v.add("accept_secrets", "the client still has live secrets: revoke them, or set accept_secrets while its deployments move to %s", c.AuthMethod)
	}
	checkTLSSubject(v, c)
	if len(c.Federation) > maxFederation {
		v.add("federation", "at most %d bindings", maxFederation)
	}
	for i, f := range c.Federation {
		field := fmt.Sprintf("federation[%d]", i)
		switch {
		case f.Subject == "" || len(f.Subject) > maxSubjectLen:
			v.add(field+".subject", "is required, at most %d characters", maxSubjectLen)
		case strings.Trim(f.Subject, "*") == "":
			v.add(field+".subject", "must name something: a pattern of nothing but '*' would accept every token of the issuer")
		}
		if len(f.Claims) > maxClaimRules {
			v.add(field+".claims", "at most %d conditions", maxClaimRules)
		}
		for name, val := range f.Claims {
			if name == "" || len(name)+len(val) > maxClaimRuleLn {
				v.add(field+".claims", "names must be non-empty and each condition at most %d characters", maxClaimRuleLn)
				break
			}
		}
	}
}

// checkKeyURL accepts an absolute https URL, or http on a loopback host
// (a development setup); keys fetched over plain http from elsewhere could
// be replaced on the way.
func checkKeyURL(v *ValidationError, field, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || len(raw) > maxURLLen || u.Host == "" || u.User != nil || u.Fragment != "":
		v.add(field, "must be an absolute URL without credentials or fragment, at most %d characters", maxURLLen)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		v.add(field, "must use https (http only on a loopback host)")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFederationPolicies checks that every binding names an existing
// trust policy of the store.
// Over maxFederation bindings it does nothing (validateClientAuth refuses
// the list), and it reads each named policy once: a body's worth of
// bindings costs no more than the cap's worth of lookups.
func (s *Service) checkFederationPolicies(ctx context.Context, v *ValidationError, in []FederatedIdentityInput) error {
	if len(in) > maxFederation {
		return nil
	}
	exists := map[string]bool{}
	for i, f := range in {
		found, seen := exists[f.Policy]
		if !seen {
			_, err := s.st(ctx).GetTrustPolicy(ctx, f.Policy)
			if err != nil && !isNotFound(err) {
				return err
			}
			found = err == nil
			exists[f.Policy] = found
		}
		if !found {
			v.add(fmt.Sprintf("federation[%d].policy", i), "no trust policy is named %q", f.Policy)
		}
	}
	return nil
}

// rawJWKS returns a JWK Set input as stored (absent, null and "": none;
// a merge patch's null arrives as "").
func rawJWKS(in json.RawMessage) []byte {
	if len(in) == 0 || string(in) == "null" || string(in) == `""` {
		return nil
	}
	return append([]byte(nil), in...)
}
