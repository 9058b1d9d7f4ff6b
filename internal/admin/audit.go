package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

// auditor records audit events (audit.Recorder).
type auditor interface {
	Record(ctx context.Context, e store.AuditEvent)
	Flush(ctx context.Context) error
}

// WithAuditor makes the Service record every change it makes in the audit
// trail: the one place management events are made, whichever front end
// (admin API, console, apply) asked for the change.
func WithAuditor(a auditor) ServiceOption {
	return func(s *Service) { s.audit = a }
}

// Kinds of target of a management event.
const (
	targetClient      = "client"
	targetAPI         = "api"
	targetTrust       = "trust_policy"
	targetEnvironment = "environment"
	targetToken       = "token"
)

// record records a change the Service made (nothing without an auditor).
func (s *Service) record(ctx context.Context, action, targetType, targetID string, diff []byte) {
	if s.audit == nil {
		return
	}
	e := store.AuditEvent{Action: action, TargetType: targetType, TargetID: targetID, Diff: diff}
	switch targetType {
	case targetClient:
		e.ClientID = targetID
	case targetEnvironment:
		// Environments are the deployment's: their events belong to the
		// default environment, and outlive the environment.
		e.Env = store.DefaultEnv
	}
	s.audit.Record(context.WithoutCancel(ctx), e)
}

// RecordConsole records a console session event of an admin client of
// environment home: "console.sign_in" (method "secret" or "link"),
// "console.sign_out", or "console.link.create" (by the admin API's caller).
// The actor is the console's admin (console:<client id>) unless ctx already
// names one (the admin API's caller creating a link); remote is the
// caller's address. Nothing is recorded of the credentials.
func (s *Service) RecordConsole(ctx context.Context, action, home, clientID, method, remote string) {
	if s.audit == nil {
		return
	}
	if actor, _ := audit.ActorFrom(ctx); actor == "" || actor == audit.System {
		ctx = audit.WithActor(ctx, "console:"+clientID, remote)
	}
	f := audit.Fields{"environment": home}
	if method != "" {
		f["method"] = method
	}
	s.audit.Record(context.WithoutCancel(ctx), store.AuditEvent{Action: action, TargetType: "console_session", TargetID: clientID,
		ClientID: clientID, Diff: audit.Diff(nil, f)})
}

// RecordRevocation records an access token or refresh token family revoked
// by an administrator (by jti or family id; never the token).
func (s *Service) RecordRevocation(ctx context.Context, id, clientID string, refresh bool) {
	f := audit.Fields{"client_id": clientID}
	if refresh {
		f["refresh_family"] = id
	} else {
		f["jti"] = id
	}
	if s.audit == nil {
		return
	}
	s.audit.Record(context.WithoutCancel(ctx), store.AuditEvent{Action: "revocation.add", TargetType: targetToken, TargetID: id, ClientID: clientID, Diff: audit.Diff(nil, f)})
}

// The fields of each record that an audit diff may show: an allow-list,
// so that a field added later stays out until someone decides it is safe.
// Secrets appear by id and dates only (never a hash or hint); custom claims
// and metadata by their names only (their values are free text).

func clientFields(c store.Client) audit.Fields {
	grants := make([]string, 0, len(c.Grants))
	for _, g := range c.Grants {
		grants = append(grants, g.Audience+" "+strings.Join(g.Scopes, " "))
	}
	slices.Sort(grants)
	secrets := make([]string, 0, len(c.Secrets))
	for _, sec := range c.Secrets {
		d := sec.ID + " created " + sec.CreatedAt.UTC().Format(time.RFC3339)
		if !sec.ExpiresAt.IsZero() {
			d += " expires " + sec.ExpiresAt.UTC().Format(time.RFC3339)
		}
		secrets = append(secrets, d)
	}
	federation := make([]string, 0, len(c.Federation))
	for _, f := range c.Federation {
		federation = append(federation, f.Policy+" "+f.Subject)
	}
	f := audit.Fields{
		"name": c.Name, "description": c.Description, "default_audience": c.DefaultAudience,
		"token_lifetime_seconds": int64(c.TokenLifetime / time.Second), "disabled": c.Disabled, "refresh_tokens": c.RefreshTokens,
		"introspect": c.Introspect, "token_endpoint_auth_method": c.Method(), "jwks_uri": c.JWKSURI, "jwks_kids": jwksKIDs(c.JWKS),
		"accept_secrets": c.AcceptSecrets, "accept_token_endpoint_audience": c.AcceptTokenEndpointAudience,
		"federation": federation, "grants": grants, "secrets": secrets,
		"custom_claim_names": sortedKeys(c.CustomClaims), "metadata_keys": sortedKeys(c.Metadata),
		"quota_per_minute": c.Quota.PerMinute, "quota_per_hour": c.Quota.PerHour, "quota_per_day": c.Quota.PerDay,
		"token_reuse_min_remaining":                  c.TokenReuse,
		"tls_client_certificate_bound_access_tokens": c.CertBoundTokens, "dpop_bound_access_tokens": c.DPoPBoundTokens,
	}
	// The subject a certificate must carry is a name, not a secret.
	if name := TLSSubjectParam(c.TLSSubject.Kind); name != "" {
		f[name] = c.TLSSubject.Value
	}
	if !c.TokensRevokedBefore.IsZero() {
		f["tokens_revoked_before"] = c.TokensRevokedBefore.UTC()
	}
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// jwksKIDs lists the key ids of a public JWK Set.
func jwksKIDs(raw []byte) []string {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	out := []string{}
	if len(raw) == 0 || json.Unmarshal(raw, &set) != nil {
		return out
	}
	for _, k := range set.Keys {
		out = append(out, k.KID)
	}
	return out
}

func apiFields(a store.API) audit.Fields {
	return audit.Fields{
		"identifier": a.Identifier, "name": a.Name, "scopes": a.Scopes, "scope_descriptions": a.ScopeDescriptions,
		"token_lifetime_seconds": int64(a.TokenLifetime / time.Second), "discoverable": a.Discoverable,
	}
}

func trustFields(p store.TrustPolicy) audit.Fields {
	return audit.Fields{
		"name": p.Name, "kind": p.Kind, "issuer": p.Issuer, "description": p.Description, "jwks_uri": p.JWKSURI,
		"discovery": p.Discovery, "jwks_kids": jwksKIDs(p.JWKS), "algorithms": p.Algorithms, "audience": p.Audience,
		"max_token_age_seconds": int64(p.MaxTokenAge / time.Second), "max_token_lifetime_seconds": int64(p.MaxTokenLifetime / time.Second),
		"single_use": p.SingleUse, "require_jti": p.RequireJTI,
	}
}

func envFields(e store.Environment) audit.Fields {
	return audit.Fields{
		"name": e.Name, "display_name": e.DisplayName, "signing_alg": e.SigningAlg,
		"key_rotation_period_seconds": int64(e.KeyRotationPeriod / time.Second),
	}
}

// AuditFilter selects audit events to list (see store.AuditFilter).
type AuditFilter = store.AuditFilter

// ListAudit returns one page of the audit trail of the request's
// environment, newest first; the cursor is the last event's id. Events
// queued on this replica are written first.
func (s *Service) ListAudit(ctx context.Context, f AuditFilter) (Page[store.AuditEvent], error) {
	if s.audit != nil {
		// What the database did not take yet stays queued: the listing
		// shows what it holds.
		if err := s.audit.Flush(ctx); err != nil && ctx.Err() != nil {
			return Page[store.AuditEvent]{}, err
		}
	}
	// An environment lists its own trail: not that of a deleted
	// environment of the same name, whose events outlive it.
	if e := env.FromContext(ctx); e != nil && !e.IsDefault() {
		rec, err := s.store.GetEnvironment(ctx, e.Name)
		if err != nil {
			return Page[store.AuditEvent]{}, err
		}
		if f.Since.Before(rec.CreatedAt) {
			f.Since = rec.CreatedAt
		}
	}
	limit := clampLimit(f.Limit)
	f.Limit = limit + 1
	evs, err := s.st(ctx).ListAuditEvents(ctx, f)
	if err != nil {
		return Page[store.AuditEvent]{}, err
	}
	return pageOf(evs, limit, func(e store.AuditEvent) string { return e.ID }), nil
}

// AuditEventResource is an audit event as the admin API lists it.
type AuditEventResource = audit.Entry

func (h *Handler) listAudit(w http.ResponseWriter, r *http.Request) error {
	f, err := ParseAuditFilter(r.URL.Query().Get, h.svc.now())
	if err != nil {
		return err
	}
	page, err := h.svc.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := ListResponse[AuditEventResource]{Items: make([]AuditEventResource, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, e := range page.Items {
		out.Items = append(out.Items, audit.EntryOf(e))
	}
	writeJSON(w, http.StatusOK, "application/json", out)
	return nil
}

// ParseAuditFilter reads a listing's filters from the query parameters get
// returns: client, action (exact, or a prefix ending in "*": client.*),
// kind, actor, since and until (RFC 3339, or a duration before now: 1h,
// 30m), limit, and cursor (the next_cursor of the previous page) or after
// (an event id: the events after it, oldest first, to follow the trail).
func ParseAuditFilter(get func(string) string, now time.Time) (AuditFilter, error) {
	var f AuditFilter
	var v ValidationError
	text := func(field string) string {
		s := get(field)
		if len(s) > maxIdentifierLen || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			v.add(field, "must be at most %d printable characters", maxIdentifierLen)
			return ""
		}
		return s
	}
	f.ClientID, f.Actor = text("client"), text("actor")
	if a := get("action"); a != "" {
		body := strings.TrimSuffix(a, "*")
		if len(a) > 64 || strings.ContainsFunc(body, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '.' || r == '_') }) {
			v.add("action", "must be an action (client.create) or a prefix of one ending in * (client.*)")
		}
		f.Action = a
	}
	if k := get("kind"); k != "" {
		if !slices.Contains(audit.Kinds, k) {
			v.add("kind", "must be one of %s", strings.Join(audit.Kinds, ", "))
		}
		f.Kind = k
	}
	for _, p := range []struct {
		field string
		to    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		raw := get(p.field)
		if raw == "" {
			continue
		}
		t, err := ParseSince(raw, now)
		if err != nil {
			v.add(p.field, "%s", err.Error())
		}
		*p.to = t
	}
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxPageSize {
			v.add("limit", "must be a number from 1 to %d", MaxPageSize)
		}
		f.Limit = n
	}
	for _, p := range []struct {
		field string
		to    *string
	}{{"cursor", &f.Before}, {"after", &f.After}} {
		if c := get(p.field); c != "" {
			if !validAuditID(c) {
				v.add(p.field, "is not an event id this server returned")
			}
			*p.to = c
		}
	}
	if f.Before != "" && f.After != "" {
		v.add("after", "cannot be combined with cursor")
	}
	return f, v.err()
}

// ParseSince reads an instant: RFC 3339, or a duration before now (1h).
func ParseSince(raw string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(raw); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		return time.Time{}, errors.New("must be an RFC 3339 time (2026-11-28T10:00:00Z) or a duration before now (1h, 30m)")
	}
	return t, nil
}

// validAuditID: event ids are 32 lowercase hex digits.
func validAuditID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// auditActor names a caller in the audit trail: its client id, or
// "deployment:<id>" for a deployment admin acting in another environment
// than the default one (its client lives in the default environment, and
// the environment may hold a client with the same id).
func auditActor(ctx context.Context, c caller) string {
	if c.deployment {
		if e := env.FromContext(ctx); e != nil && !e.IsDefault() {
			return "deployment:" + c.id
		}
	}
	return c.id
}

// ConsoleActor names a console session's admin client in the audit trail.
func ConsoleActor(ctx context.Context, clientID string, deployment bool) string {
	if deployment {
		if e := env.FromContext(ctx); e != nil && !e.IsDefault() {
			return "console:deployment:" + clientID
		}
	}
	return "console:" + clientID
}
