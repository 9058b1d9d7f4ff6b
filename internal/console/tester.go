package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/secret"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/verify"
)

// testerPage shows the token tester's form.
func (c *Console) testerPage(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.show(w, r, s, http.StatusOK, "tester", &view{Title: "Token tester", Section: "tester"})
}

// testerResult is what the tester found out about a token.
type testerResult struct {
	Valid bool
	// Verdict is the one-line answer ("Valid…" or "Invalid…").
	Verdict string
	// Checks are the steps of the verification, in order.
	Checks []check
	// Header and Claims are the decoded parts, pretty-printed, whether or
	// not the token verifies ("" when they cannot be decoded; HeaderErr
	// and ClaimsErr say why).
	Header, Claims       string
	HeaderErr, ClaimsErr string
	// Facts are read from the decoded claims (unverified unless Valid or
	// Verified).
	Verified  bool // the signature checked out (the claims are the issuer's)
	ClientID  string
	Client    *store.Client
	KID, Alg  string
	Subject   string
	Audience  []string
	Scope     string
	JTI       string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
}

// check is one step of the verification: State "ok", "bad" or "skip" (not
// checked because an earlier step failed).
type check struct {
	Name, State, Detail string
}

// testerCheck verifies a pasted token with the server's own verifier and
// tells why it is refused, whether it is revoked and whether its client
// may still use it; it decodes the header and claims without trusting
// them. The token is never logged, and shown again only in its textarea.
func (c *Console) testerCheck(w http.ResponseWriter, r *http.Request, s *session) error {
	token := strings.TrimSpace(r.PostForm.Get("token"))
	v := &view{Title: "Token tester", Section: "tester", Errors: map[string]string{}}
	switch {
	case token == "":
		v.Errors["token"] = "Paste an access token to check."
	case len(token) > verify.MaxTokenSize:
		v.Errors["token"] = fmt.Sprintf("This is %d KiB, longer than any access token this server accepts (at most %d KiB). Check what was pasted.",
			len(token)>>10, verify.MaxTokenSize>>10)
	case strings.HasPrefix(token, secret.RefreshTokenPrefix):
		v.Form = url.Values{"token": {token}}
		v.Errors["token"] = "This is a refresh token: it is opaque, not a JWT, and is checked by the token endpoint when it is used. The tester checks access tokens."
	}
	if len(v.Errors) > 0 {
		return c.show(w, r, s, http.StatusBadRequest, "tester", v)
	}
	res, err := c.testToken(r.Context(), token)
	if err != nil {
		return err
	}
	v.Form, v.Data = url.Values{"token": {token}}, res
	return c.show(w, r, s, http.StatusOK, "tester", v)
}

// Steps of the verification, in the order verify.Verifier takes them.
const (
	stepFormat = iota
	stepAlg
	stepType
	stepKey
	stepSignature
	stepIssuer
	stepTime
	stepRevoked
	stepClient
	stepCount
)

var stepNames = [stepCount]string{
	stepFormat:    "Well-formed JWT",
	stepAlg:       "Algorithm",
	stepType:      "Access token (typ at+jwt)",
	stepKey:       "Signing key",
	stepSignature: "Signature",
	stepIssuer:    "Issuer",
	stepTime:      "Validity period",
	stepRevoked:   "Not revoked",
	stepClient:    "Application",
}

// testToken runs the checks. Only a failure to decide (the store) is an
// error.
func (c *Console) testToken(ctx context.Context, token string) (*testerResult, error) {
	e := env.FromContext(ctx)
	now := c.now()
	res := &testerResult{}
	res.decode(token)

	claims, verr := e.Verifier.VerifyBound(ctx, token)
	if verr != nil && !errors.Is(verr, verify.ErrInvalidToken) {
		return nil, verr
	}
	failed, reason := stepCount, ""
	if verr != nil {
		failed, reason = res.explain(verr, e.Issuer, now)
		// These are checked after the signature: the claims shown are the
		// issuer's.
		res.Verified = failed > stepSignature
	}
	if verr == nil {
		res.Verified = true
		res.ClientID, res.Subject, res.Audience, res.JTI = claims.ClientID, claims.Subject, claims.Audience, claims.JTI
		res.IssuedAt, res.NotBefore, res.ExpiresAt = claims.IssuedAt, claims.NotBefore, claims.ExpiresAt
		res.Scope = strings.Join(claims.Scopes, " ")
		// Signature and claims hold: is it still active? Revoked by its
		// id, or with every token of its application (disable, revoke all
		// tokens, a narrowed grant), and its application still there and
		// enabled.
		revoked, err := e.Denied.IsRevoked(ctx, claims.JTI)
		if err != nil {
			return nil, err
		}
		cl, err := e.Clients.GetClient(ctx, claims.ClientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		found := err == nil
		if found {
			res.Client = &cl
		}
		switch {
		case revoked:
			failed, reason = stepRevoked, "it was revoked (its id, jti "+claims.JTI+", is on the revocation list)"
		case found && cl.Disabled && claims.IssuedAt.Before(cl.TokensRevokedBefore):
			failed, reason = stepRevoked, "its application "+cl.Name+" is disabled, which revoked every token it held"
		case found && !cl.TokensRevokedBefore.IsZero() && claims.IssuedAt.Before(cl.TokensRevokedBefore):
			failed, reason = stepRevoked, "every token of its application "+cl.Name+" issued before "+when(cl.TokensRevokedBefore)+" was revoked"
		case !found:
			failed, reason = stepClient, "its application "+claims.ClientID+" no longer exists"
		case cl.Disabled:
			failed, reason = stepClient, "its application "+cl.Name+" is disabled"
		}
	}
	for i := range stepCount {
		ch := check{Name: stepNames[i], State: "ok"}
		switch {
		case i == failed:
			ch.State, ch.Detail = "bad", reason
		case i > failed:
			ch.State, ch.Detail = "skip", "not checked: an earlier check failed"
		}
		res.Checks = append(res.Checks, ch)
	}
	res.Valid = failed == stepCount
	switch {
	case res.Valid:
		res.Verdict = "Valid: signed by this server, unexpired, not revoked, and its application may use it. It expires " + relative(res.ExpiresAt, now) + "."
	case failed >= stepRevoked:
		res.Verdict = "Invalid: " + reason + ". Its signature and claims still check out, so a resource server that only verifies tokens locally accepts it until it expires " +
			relative(res.ExpiresAt, now) + "; introspection answers inactive."
	default:
		res.Verdict = "Invalid: " + reason + "."
	}
	return res, nil
}

// explain maps a verification error onto the step that failed and says
// why in words. It reads the decoded (untrusted) header and claims for
// the details.
func (res *testerResult) explain(err error, issuer string, now time.Time) (int, string) {
	switch {
	case errors.Is(err, verify.ErrExpired):
		if !res.ExpiresAt.IsZero() {
			return stepTime, "it expired " + relative(res.ExpiresAt, now) + " (" + when(res.ExpiresAt) + ")"
		}
		return stepTime, "it has expired"
	case errors.Is(err, verify.ErrNotYetValid):
		at := res.NotBefore
		if res.IssuedAt.After(at) {
			at = res.IssuedAt
		}
		if !at.IsZero() {
			return stepTime, "it is not valid yet: its nbf or iat is " + relative(at, now) + " (" + when(at) + "); the clocks may disagree"
		}
		return stepTime, "it is not valid yet"
	case errors.Is(err, verify.ErrIssuer):
		return stepIssuer, fmt.Sprintf("it was issued by %q, not by this server (%s)", res.issuer(), issuer)
	case errors.Is(err, verify.ErrAudience):
		return stepIssuer, "its audience is wrong"
	case errors.Is(err, verify.ErrUnknownKey):
		if res.KID == "" {
			return stepKey, "its header names no key (kid), so this server's keys cannot check it"
		}
		return stepKey, "it names a signing key (kid " + res.KID + ") this server does not publish: the key was revoked or removed, or the token comes from another server"
	case errors.Is(err, verify.ErrSignature):
		return stepSignature, "the signature does not match: the token was changed after it was signed, or it was signed by another key under this key's id"
	case errors.Is(err, verify.ErrType):
		return stepType, "it is not an access token: its typ header is " + quoteOrNone(res.headerString("typ")) + ", not at+jwt (an ID token or another kind of JWT?)"
	case errors.Is(err, verify.ErrAlgorithm):
		return stepAlg, "its algorithm " + quoteOrNone(res.Alg) + " is not accepted, or does not fit its key (accepted: " + strings.Join(verify.DefaultAlgorithms, ", ") + "; never none or HMAC)"
	case errors.Is(err, verify.ErrMalformed):
		detail := strings.TrimPrefix(err.Error(), verify.ErrMalformed.Error())
		detail = strings.TrimPrefix(detail, ": ")
		if detail == "" {
			return stepFormat, "it is malformed: a JWT is three base64url parts (header, claims, signature) separated by dots"
		}
		return stepFormat, "it is malformed: " + detail
	}
	return stepFormat, "it is not a valid token: " + strings.TrimPrefix(err.Error(), verify.ErrInvalidToken.Error()+": ")
}

func quoteOrNone(s string) string {
	if s == "" {
		return "missing"
	}
	return fmt.Sprintf("%q", s)
}

// decode reads the header and claims without checking anything, for
// display: pretty JSON where the parts are JSON, and the facts the page
// shows.
func (res *testerResult) decode(token string) {
	parts := strings.Split(token, ".")
	switch len(parts) {
	case 3:
	case 5:
		res.HeaderErr = "This is an encrypted token (JWE, five parts): its content cannot be read without the recipient's key."
		res.ClaimsErr = res.HeaderErr
		if h, err := decodePart(parts[0]); err == nil {
			res.Header, res.HeaderErr = h, ""
		}
		return
	default:
		res.HeaderErr = fmt.Sprintf("This is not a JWT: it has %d part(s) separated by dots, not 3.", len(parts))
		res.ClaimsErr = res.HeaderErr
		return
	}
	var err error
	if res.Header, err = decodePart(parts[0]); err != nil {
		res.HeaderErr = "The header cannot be decoded: " + err.Error() + "."
	}
	if res.Claims, err = decodePart(parts[1]); err != nil {
		res.ClaimsErr = "The claims cannot be decoded: " + err.Error() + "."
	}
	var h struct {
		Kid, Alg any
	}
	if json.Unmarshal([]byte(res.Header), &h) == nil {
		res.KID, res.Alg = asString(h.Kid), asString(h.Alg)
	}
	var cl map[string]any
	if json.Unmarshal([]byte(res.Claims), &cl) == nil {
		res.ClientID, res.Subject, res.JTI = asString(cl["client_id"]), asString(cl["sub"]), asString(cl["jti"])
		res.Scope = asString(cl["scope"])
		switch aud := cl["aud"].(type) {
		case string:
			res.Audience = []string{aud}
		case []any:
			for _, a := range aud {
				if s, ok := a.(string); ok {
					res.Audience = append(res.Audience, s)
				}
			}
		}
		res.ExpiresAt, res.NotBefore, res.IssuedAt = unixClaim(cl["exp"]), unixClaim(cl["nbf"]), unixClaim(cl["iat"])
	}
}

// headerString returns a string member of the decoded header.
func (res *testerResult) headerString(name string) string {
	var h map[string]any
	if json.Unmarshal([]byte(res.Header), &h) != nil {
		return ""
	}
	return asString(h[name])
}

// issuer returns the decoded iss claim.
func (res *testerResult) issuer() string {
	var cl map[string]any
	if json.Unmarshal([]byte(res.Claims), &cl) != nil {
		return ""
	}
	return asString(cl["iss"])
}

// decodePart decodes one base64url part (padded or not) and pretty-prints
// it when it is JSON.
func decodePart(p string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(p, "="))
	if err != nil {
		return "", errors.New("it is not base64url")
	}
	if !utf8.Valid(b) {
		return "", errors.New("it is not UTF-8 text")
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return "", errors.New("it is not JSON")
	}
	return out.String(), nil
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

// unixClaim reads a NumericDate claim (zero if absent or not a number).
func unixClaim(v any) time.Time {
	f, ok := v.(float64)
	if !ok || f < 0 || f > 1e11 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}
