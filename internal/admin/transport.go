package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/m2mauth/m2mauth/internal/audit"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/strictjson"
	"github.com/m2mauth/m2mauth/internal/telemetry"
	"github.com/m2mauth/m2mauth/verify"
)

// MaxBodyBytes caps an admin request body.
const MaxBodyBytes = 1 << 20

// tokenVerifier validates admin bearer tokens.
type tokenVerifier interface {
	Verify(ctx context.Context, token string) (*verify.Claims, error)
}

// accessChecker tells whether a verified token of this server is still
// active (not revoked, its client existing and enabled), from memory.
type accessChecker interface {
	Active(ctx context.Context, claims *verify.Claims) (store.Client, bool, error)
}

// pinger tells whether the database answers.
type pinger interface {
	Ping(ctx context.Context) error
}

type callerKey struct{}

// caller is the admin client a request acts as.
type caller struct {
	id string
	// deployment: a deployment admin (a client of the default environment
	// with the admin and deployment scopes), whichever environment the
	// request acts in.
	deployment bool
}

func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// CallerFromContext returns the id of the admin client that made the
// request whose context ctx is ("" outside the admin API). A deployment
// admin's id is that of a client of the default environment, whichever
// environment the request acts in (DeploymentCallerFromContext).
func CallerFromContext(ctx context.Context) string { return callerFrom(ctx).id }

// DeploymentCallerFromContext reports whether the caller of the request
// whose context ctx is is a deployment admin: a client of the default
// environment, acting in the request's environment (possibly another).
func DeploymentCallerFromContext(ctx context.Context) bool { return callerFrom(ctx).deployment }

// WithCaller returns ctx naming clientID as the admin client that makes
// the changes done with it (the console sets it for its session's client).
func WithCaller(ctx context.Context, clientID string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller{id: clientID})
}

// WithDeploymentCaller is WithCaller for a deployment admin: clientID is
// a client of the default environment.
func WithDeploymentCaller(ctx context.Context, clientID string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller{id: clientID, deployment: true})
}

// IsAdmin reports whether c may use the admin API: it is enabled and
// granted the admin scope on the admin API (audience adminAudience).
func IsAdmin(c store.Client, adminAudience string) bool {
	return !c.Disabled && holds(c, []string{adminAudience}, AdminScope)
}

// IsDeploymentAdmin reports whether c, a client of the default
// environment, is a deployment admin: enabled and granted the admin and
// deployment scopes on the default environment's admin API (audience
// adminAudience).
func IsDeploymentAdmin(c store.Client, adminAudience string) bool {
	return !c.Disabled && holds(c, []string{adminAudience}, AdminScope, DeploymentScope)
}

// holds reports whether one of c's grants for an API among audiences
// holds every scope of scopes.
func holds(c store.Client, audiences []string, scopes ...string) bool {
	return slices.ContainsFunc(c.Grants, func(g store.Grant) bool {
		if !slices.Contains(audiences, g.Audience) {
			return false
		}
		for _, sc := range scopes {
			if !slices.Contains(g.Scopes, sc) {
				return false
			}
		}
		return true
	})
}

// Handler serves the admin API.
type Handler struct {
	svc      *Service
	verifier tokenVerifier
	log      *slog.Logger
	flush    func(context.Context) error
	keys     keyManager
	maxToken time.Duration
	revoker  revoker
	access   accessChecker
	db       pinger
	links    linkMaker
	envs     env.Resolver
	// envChanged tells the server an environment was created, changed or
	// deleted.
	envChanged func(name string)
}

// linkMaker makes one-time sign-in links of the console.
type linkMaker interface {
	// NewLinkIn makes a link signing clientID of environment home in,
	// viewing the request's environment.
	NewLinkIn(ctx context.Context, clientID, home string) (url string, expires time.Time, err error)
}

// HandlerConfig holds a Handler's dependencies.
type HandlerConfig struct {
	Service *Service
	// Verifier must accept only tokens for the admin audience.
	Verifier tokenVerifier
	Log      *slog.Logger
	// Flush, when set, writes pending secret last-use times before reads,
	// so that reads show them.
	Flush func(context.Context) error
	// Keys manages the signing keys; MaxTokenLifetime tells how long the
	// tokens a key signed can live.
	Keys             keyManager
	MaxTokenLifetime time.Duration
	// Revoker revokes tokens whoever they belong to.
	Revoker revoker
	// Access checks that a verified admin token is still active.
	Access accessChecker
	// DB tells a failure of the database from other failures (503 vs 500).
	DB pinger
	// Links makes the console's one-time sign-in links (nil: the console
	// is off).
	Links linkMaker
	// Envs finds the default environment, whose deployment admins may use
	// every environment's admin API (nil: only the request environment's
	// own admins may).
	Envs env.Resolver
	// EnvChanged, when set, is told the name of an environment just
	// created, changed or deleted, so that the server loads, reloads or
	// unloads it.
	EnvChanged func(name string)
}

// NewHandler returns a Handler. The verifier, key manager and usage flush
// of the environment a request's context carries (env.FromContext) take
// the place of Verifier, Keys and Flush.
func NewHandler(c HandlerConfig) *Handler {
	return &Handler{svc: c.Service, verifier: c.Verifier, log: c.Log, flush: c.Flush, keys: c.Keys, maxToken: c.MaxTokenLifetime,
		revoker: c.Revoker, access: c.Access, db: c.DB, links: c.Links, envs: c.Envs, envChanged: c.EnvChanged}
}

// verifierFor is the admin token verifier of the request's environment.
func (h *Handler) verifierFor(ctx context.Context) tokenVerifier {
	if e := env.FromContext(ctx); e != nil && e.AdminVerifier != nil {
		return e.AdminVerifier
	}
	return h.verifier
}

// keysFor is the key manager of the request's environment.
func (h *Handler) keysFor(ctx context.Context) keyManager {
	if e := env.FromContext(ctx); e != nil && e.Keys != nil {
		return e.Keys
	}
	return h.keys
}

func (h *Handler) beforeRead(ctx context.Context) {
	flush := h.flush
	if e := env.FromContext(ctx); e != nil && e.Flush != nil {
		flush = e.Flush
	}
	if flush != nil {
		if err := flush(ctx); err != nil {
			h.log.WarnContext(ctx, "flush secret last-use times", "error", err)
		}
	}
}

// Route is one admin route.
type Route struct {
	Pattern string
	Handle  func(w http.ResponseWriter, r *http.Request) error
}

// Routes returns the admin routes (patterns in net/http ServeMux syntax).
func (h *Handler) Routes() []Route {
	return []Route{
		{"GET /admin/v1/apis", h.listAPIs},
		{"POST /admin/v1/apis", h.createAPI},
		{"GET /admin/v1/apis/{identifier}", h.getAPI},
		{"PATCH /admin/v1/apis/{identifier}", h.patchAPI},
		{"PUT /admin/v1/apis/{identifier}", h.putAPI},
		{"DELETE /admin/v1/apis/{identifier}", h.deleteAPI},
		{"GET /admin/v1/clients", h.listClients},
		{"POST /admin/v1/clients", h.createClient},
		{"GET /admin/v1/clients/{id}", h.getClient},
		{"PATCH /admin/v1/clients/{id}", h.patchClient},
		{"PUT /admin/v1/clients/{id}", h.putClient},
		{"DELETE /admin/v1/clients/{id}", h.deleteClient},
		{"POST /admin/v1/clients/{id}/secrets", h.rotateSecret},
		{"DELETE /admin/v1/clients/{id}/secrets/{secret_id}", h.revokeSecret},
		{"POST /admin/v1/clients/{id}/revoke-tokens", h.revokeClientTokens},
		{"GET /admin/v1/reports/token-caching", h.tokenCachingReport},
		{"GET /admin/v1/revocations", h.listRevocations},
		{"POST /admin/v1/revocations", h.revokeToken},
		{"GET /admin/v1/keys", h.listKeys},
		{"POST /admin/v1/keys/rotate", h.rotateKey},
		{"POST /admin/v1/keys/{kid}/revoke", h.revokeKey},
		{"GET /admin/v1/trust-policies", h.listTrustPolicies},
		{"POST /admin/v1/trust-policies", h.createTrustPolicy},
		{"GET /admin/v1/trust-policies/{name}", h.getTrustPolicy},
		{"PUT /admin/v1/trust-policies/{name}", h.putTrustPolicy},
		{"DELETE /admin/v1/trust-policies/{name}", h.deleteTrustPolicy},
		{"POST /admin/v1/console/links", h.createConsoleLink},
		{"GET /admin/v1/environments", h.deploymentOnly(h.listEnvironments)},
		{"POST /admin/v1/environments", h.deploymentOnly(h.createEnvironment)},
		{"GET /admin/v1/environments/{name}", h.deploymentOnly(h.getEnvironment)},
		{"PATCH /admin/v1/environments/{name}", h.deploymentOnly(h.patchEnvironment)},
		{"DELETE /admin/v1/environments/{name}", h.deploymentOnly(h.deleteEnvironment)},
		{"POST /admin/v1/environments/{name}/deletion", h.deploymentOnly(h.prepareEnvironmentDeletion)},
		{"GET /admin/v1/audit", h.listAudit},
	}
}

// Serve wraps an admin handler with authentication and error rendering.
// The handler runs with the caller's client id in its request's context
// (CallerFromContext).
func (h *Handler) Serve(fn func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		// In a traced request, the operation is a span of its own, named
		// by its route ("admin POST /admin/v1/clients"); its database
		// calls are its children.
		span := trace.SpanFromContext(r.Context())
		if span.IsRecording() {
			var ctx context.Context
			ctx, span = telemetry.Start(r.Context(), "admin "+r.Pattern)
			r = r.WithContext(ctx)
		}
		defer span.End() // not traced: an inert span
		c, err := h.authenticate(r)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("m2mauth.admin.caller", c.id))
		}
		ctx := context.WithValue(r.Context(), callerKey{}, c)
		r = r.WithContext(audit.WithActor(ctx, auditActor(ctx, c), r.RemoteAddr))
		if err := fn(w, r); err != nil {
			h.writeError(w, r, err)
		}
	}
}

// authError is an RFC 6750 §3 bearer-token failure.
type authError struct {
	status int
	code   string // "" when no credentials were sent
	detail string
	scope  string // insufficient_scope: the scopes needed (RFC 6750 §3)
}

func (e *authError) Error() string { return e.detail }

// authenticate checks the request's bearer token (RFC 6750): a token for
// the admin API of the request's environment with the admin scope, still
// active (not revoked by jti or by its client's cutoff; its client
// existing, enabled and still granted the admin scope): the caller is an
// admin of that environment. In another environment than the default
// one, a token of the default environment's admin API is accepted too,
// from a deployment admin: with the admin and deployment scopes, its
// client still granted both. It returns the caller.
func (h *Handler) authenticate(r *http.Request) (caller, error) {
	ctx := r.Context()
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return caller{}, &authError{status: http.StatusUnauthorized, detail: "a bearer token for the admin API is required"}
	}
	e := env.FromContext(ctx)
	if claims, err := h.verifierFor(ctx).Verify(ctx, token); err == nil {
		c, err := h.activeClient(ctx, claims)
		if err != nil {
			return caller{}, err
		}
		// The grant that counts is the one on this admin API, whatever
		// other audiences the token names.
		aud := h.adminAudience(ctx)
		if aud == nil {
			aud = claims.Audience
		}
		if !claims.HasScope(AdminScope) || !holds(c, aud, AdminScope) {
			return caller{}, &authError{http.StatusForbidden, "insufficient_scope", "the token lacks the admin scope", AdminScope}
		}
		// In the default environment its own admins with the deployment
		// scope are deployment admins.
		deployment := (e == nil || e.IsDefault()) && claims.HasScope(DeploymentScope) && holds(c, aud, AdminScope, DeploymentScope)
		return caller{id: c.ID, deployment: deployment}, nil
	}
	if e == nil || e.IsDefault() || h.envs == nil {
		return caller{}, errInvalidAdminToken
	}
	def, err := h.envs.Env(ctx, store.DefaultEnv)
	if err != nil {
		return caller{}, fmt.Errorf("admin authentication: the default environment: %w", err)
	}
	if def.AdminVerifier == nil {
		return caller{}, errInvalidAdminToken
	}
	claims, err := def.AdminVerifier.Verify(ctx, token)
	if err != nil {
		return caller{}, errInvalidAdminToken
	}
	// The client, its grants and the token's revocation live in the
	// default environment.
	c, err := h.activeClient(env.NewContext(ctx, def), claims)
	if err != nil {
		return caller{}, err
	}
	if !claims.HasScope(AdminScope) || !claims.HasScope(DeploymentScope) || !holds(c, []string{def.AdminAudience()}, AdminScope, DeploymentScope) {
		return caller{}, &authError{http.StatusForbidden, "insufficient_scope",
			"only deployment admins (scopes admin and deployment on the default environment's admin API) may use another environment's admin API",
			AdminScope + " " + DeploymentScope}
	}
	return caller{id: c.ID, deployment: true}, nil
}

// adminAudience is the audience of the admin API the request is for: its
// environment's (nil without one: the configured verifier has checked the
// token's).
func (h *Handler) adminAudience(ctx context.Context) []string {
	if e := env.FromContext(ctx); e != nil {
		return []string{e.AdminAudience()}
	}
	return nil
}

var errInvalidAdminToken = &authError{status: http.StatusUnauthorized, code: "invalid_token", detail: "the bearer token is not valid for the admin API"}

// activeClient returns the client of a verified token if the token is
// still active, in the environment ctx carries.
func (h *Handler) activeClient(ctx context.Context, claims *verify.Claims) (store.Client, error) {
	c, active, err := h.access.Active(ctx, claims)
	if err != nil {
		return store.Client{}, fmt.Errorf("admin authentication: %w", err)
	}
	if !active {
		return store.Client{}, &authError{status: http.StatusUnauthorized, code: "invalid_token", detail: "the bearer token was revoked, or its client is disabled or deleted"}
	}
	return c, nil
}

// deploymentOnly lets only deployment admins call fn, at the deployment's
// own admin API (that of the default environment).
func (h *Handler) deploymentOnly(fn func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !DeploymentCallerFromContext(r.Context()) {
			return &authError{http.StatusForbidden, "insufficient_scope",
				"only deployment admins (scopes admin and deployment on the default environment's admin API) may manage environments",
				AdminScope + " " + DeploymentScope}
		}
		if e := env.FromContext(r.Context()); e != nil && !e.IsDefault() {
			return &requestError{http.StatusNotFound, "environments are managed at the deployment's admin API (/admin/v1/environments), not at an environment's"}
		}
		return fn(w, r)
	}
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// writeError renders err as problem+json: the one place admin errors are
// written. Unexpected errors are logged and shown only as a generic 500.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := problem{Type: "about:blank"}
	var ae *authError
	var ve *ValidationError
	var syn *requestError
	var ce *ConflictError
	switch {
	case errors.As(err, &ae):
		p.Status, p.Detail = ae.status, ae.detail
		v := `Bearer realm="m2mauth-admin"`
		if ae.code != "" {
			v += `, error="` + ae.code + `"`
		}
		if ae.code == "insufficient_scope" {
			v += `, scope="` + ae.scope + `"`
		}
		w.Header().Set("WWW-Authenticate", v)
	case errors.As(err, &ve):
		p.Status, p.Detail, p.Errors = http.StatusBadRequest, "the request has invalid fields", ve.Fields
	case errors.As(err, &syn):
		p.Status, p.Detail = syn.status, syn.detail
	case errors.Is(err, ErrPreconditionFailed):
		p.Status, p.Detail = http.StatusPreconditionFailed, err.Error()
	case errors.Is(err, store.ErrNotFound):
		p.Status, p.Detail = http.StatusNotFound, "no such resource"
	case errors.As(err, &ce):
		p.Status, p.Detail = http.StatusConflict, ce.Detail
	case errors.Is(err, store.ErrConflict):
		p.Status, p.Detail = http.StatusConflict, "the change conflicts with the current state; reload and retry"
	case h.dbDown(r.Context()):
		h.log.ErrorContext(r.Context(), "admin request failed: the database is unreachable", "error", err)
		w.Header().Set("Retry-After", "1")
		p.Status, p.Detail = http.StatusServiceUnavailable, "the database is unreachable; retry shortly"
	default:
		h.log.ErrorContext(r.Context(), "admin request failed", "error", err)
		p.Status, p.Detail = http.StatusInternalServerError, "internal server error"
	}
	p.Title = http.StatusText(p.Status)
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		// The status alone: a detail may echo what the caller sent.
		span.SetStatus(codes.Error, p.Title)
		span.SetAttributes(attribute.Int("http.response.status_code", p.Status))
	}
	writeJSON(w, p.Status, "application/problem+json", p)
}

// WriteProblem writes an RFC 9457 problem for status with detail: the
// answers the router gives on admin paths (404, 405) look like the rest of
// the admin API's.
func WriteProblem(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, "application/problem+json", problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

// dbDown reports whether an unexpected error came with the database
// unreachable: the request then answers 503 with Retry-After, as the token
// endpoints do, instead of 500.
func (h *Handler) dbDown(ctx context.Context) bool {
	if h.db == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	return h.db.Ping(ctx) != nil
}

// requestError is a malformed request.
type requestError struct {
	status int
	detail string
}

func (e *requestError) Error() string { return e.detail }

// isJSON reports whether r declares a JSON body: application/json, or for
// PATCH also application/merge-patch+json (RFC 7396).
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || r.Method == http.MethodPatch && mt == "application/merge-patch+json")
}

var errNotJSON = &requestError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}

// readBody reads the body, which the server has capped.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, &requestError{http.StatusRequestEntityTooLarge, "the request body is too large"}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &requestError{http.StatusRequestTimeout, "the request body did not arrive in time"}
	case err != nil:
		return nil, &requestError{http.StatusBadRequest, "the request body could not be read"}
	}
	return body, nil
}

// decode reads a strict JSON body into v.
func decode(r *http.Request, v any) error {
	if !isJSON(r) {
		return errNotJSON
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeBytes(body, v)
}

// decodeOptional is decode for a body that may be empty (v is then left
// as it is).
func decodeOptional(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil || len(bytes.TrimSpace(body)) == 0 {
		return err
	}
	if !isJSON(r) {
		return errNotJSON
	}
	return decodeBytes(body, v)
}

// decodeBytes decodes body into v strictly: one JSON value, no member
// given twice at any depth (names compared ignoring case, as encoding/json
// matches them), no unknown member.
func decodeBytes(body []byte, v any) error {
	if err := strictjson.Check(body); err != nil {
		return &requestError{http.StatusBadRequest, err.Error()}
	}
	return decodeReader(bytes.NewReader(body), v)
}

// decodeReader decodes exactly one JSON value from body into v, strictly.
func decodeReader(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &requestError{http.StatusRequestEntityTooLarge, "the request body is too large"}
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &ValidationError{Fields: []FieldError{{typeErr.Field, "has the wrong type"}}}
		}
		if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &ValidationError{Fields: []FieldError{{strings.Trim(msg, `"`), "is not a known field"}}}
		}
		return &requestError{http.StatusBadRequest, "the body is not valid JSON"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &requestError{http.StatusBadRequest, "the body must hold exactly one JSON object"}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"title":"Internal Server Error","status":500}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
