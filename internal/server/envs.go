package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/clientcache"
	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/denylist"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/issuer"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/tokencache"
	"github.com/m2mauth/m2mauth/verify"
)

// envLoadTimeout bounds loading an environment (its keys and caches): the
// load is shared by every request that waits for it, so it does not run
// under any one request's context.
const envLoadTimeout = 10 * time.Second

// loadedEnv is an environment held in memory.
type loadedEnv struct {
	env  *env.Env
	used atomic.Int64 // Unix nanoseconds of its last request

	// scopes_supported of its discovery documents, kept briefly
	discoveryMu     sync.Mutex
	discoveryScopes []string
	discoveryUntil  time.Time
}

// environments holds the environments loaded in memory: the default one
// always, the others from their first request until they have been idle for
// the configured time or are the least recently used of too many.
type environments struct {
	s      *Server
	mu     sync.RWMutex
	loaded map[string]*loadedEnv
	// gen counts the unloads of each name (and of all, in genAll): a load
	// that began before an unload of its name is stale and is discarded.
	gen     map[string]uint64
	genAll  uint64
	loading singleflight.Group
	// missing remembers names that named no environment, briefly, so that
	// requests naming random environments cost no database query each.
	missing map[string]time.Time
	// cachesOn is whether caches may be used (false while the change
	// feed is down: other replicas' changes could be missed).
	cachesOn atomic.Bool
	// cachesGen counts the switches of cachesOn.
	cachesGen atomic.Uint64
}

func newEnvironments(s *Server) *environments {
	e := &environments{s: s, loaded: map[string]*loadedEnv{}, gen: map[string]uint64{}, missing: map[string]time.Time{}}
	e.cachesOn.Store(true)
	return e
}

// Env implements env.Resolver.
func (s *Server) Env(ctx context.Context, name string) (*env.Env, error) {
	l, err := s.envs.get(ctx, name)
	if err != nil {
		return nil, err
	}
	return l.env, nil
}

// get returns the loaded environment named, loading it if needed.
func (e *environments) get(ctx context.Context, name string) (*loadedEnv, error) {
	if name == "" {
		name = store.DefaultEnv
	}
	e.mu.RLock()
	l := e.loaded[name]
	missingUntil, missing := e.missing[name]
	e.mu.RUnlock()
	if l != nil {
		l.touch(e.s.now())
		return l, nil
	}
	if !env.ValidName(name) || (missing && e.s.now().Before(missingUntil)) {
		return nil, fmt.Errorf("environment %q: %w", name, store.ErrNotFound)
	}
	ch := e.loading.DoChan(name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), envLoadTimeout)
		defer cancel()
		return e.load(ctx, name)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*loadedEnv), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// touch records a request at now; the clock is written at most once a
// second, so that a busy environment's requests do not all write one
// cache line.
func (l *loadedEnv) touch(now time.Time) {
	n := now.UnixNano()
	if n-l.used.Load() > int64(time.Second) {
		l.used.Store(n)
	}
}

// missingFor is how long a name that named no environment is answered
// from memory (creating it here makes it known at once), and missingMax
// bounds how many such names are remembered.
const (
	missingFor = 5 * time.Second
	missingMax = 10_000
)

// peek returns the environment named if it is loaded.
func (e *environments) peek(name string) *loadedEnv {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.loaded[name]
}

// all returns the loaded environments.
func (e *environments) all() []*loadedEnv {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*loadedEnv, 0, len(e.loaded))
	for _, l := range e.loaded {
		out = append(out, l)
	}
	return out
}

// load builds and registers the environment named. If the name is
// unloaded meanwhile (the environment changed or was deleted), what it
// read may be stale: it starts again.
func (e *environments) load(ctx context.Context, name string) (*loadedEnv, error) {
	for attempt := 0; ; attempt++ {
		e.mu.RLock()
		l := e.loaded[name]
		gen, genAll := e.gen[name], e.genAll
		e.mu.RUnlock()
		if l != nil {
			return l, nil
		}
		rec, err := e.s.store.GetEnvironment(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			e.mu.Lock()
			if len(e.missing) >= missingMax {
				clear(e.missing)
			}
			e.missing[name] = e.s.now().Add(missingFor)
			e.mu.Unlock()
		}
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", name, err)
		}
		cachesGen := e.cachesGen.Load()
		en, err := e.s.buildEnv(ctx, rec)
		if err != nil {
			return nil, fmt.Errorf("environment %s: %w", name, err)
		}
		l = &loadedEnv{env: en}
		l.used.Store(e.s.now().UnixNano())
		e.mu.Lock()
		if e.gen[name] != gen || e.genAll != genAll {
			e.mu.Unlock()
			e.s.assertions.InvalidateTrust(en)
			if attempt < 3 {
				continue
			}
			return nil, fmt.Errorf("environment %s: changed while loading, repeatedly", name)
		}
		if len(e.loaded) >= e.s.cfg.EnvMaxLoaded+1 { // the default one does not count
			e.evictOldestLocked()
		}
		e.loaded[name] = l
		// The feed may have gone down or up while it loaded: then the
		// caches it loaded are not trusted (else they are kept: switching
		// them empties them, and nothing would load them again).
		if e.cachesGen.Load() != cachesGen {
			on := e.cachesOn.Load()
			en.Clients.SetEnabled(on)
			en.Denied.SetEnabled(on)
		}
		e.mu.Unlock()
		e.s.log.Debug("environment loaded", "env", name)
		return l, nil
	}
}

// forgetMissing drops what is remembered of a name that named no
// environment (it was just created here).
func (e *environments) forgetMissing(name string) {
	e.mu.Lock()
	delete(e.missing, name)
	e.mu.Unlock()
}

// unloadAll drops every environment but the default one (the change feed
// reconnected: what they cached may be stale).
func (e *environments) unloadAll() {
	e.mu.Lock()
	e.genAll++
	for n := range e.loaded {
		e.unloadLocked(n)
	}
	clear(e.missing)
	e.mu.Unlock()
}

// evictOldestLocked unloads the least recently used environment other than
// the default one; e.mu is held.
func (e *environments) evictOldestLocked() {
	var oldest *loadedEnv
	for n, l := range e.loaded {
		if n != store.DefaultEnv && (oldest == nil || l.used.Load() < oldest.used.Load()) {
			oldest = l
		}
	}
	if oldest != nil {
		e.unloadLocked(oldest.env.Name)
	}
}

// unload drops the environment named from memory (never the default one):
// its next request loads it afresh from the store.
func (e *environments) unload(name string) {
	e.mu.Lock()
	e.unloadLocked(name)
	e.mu.Unlock()
}

func (e *environments) unloadLocked(name string) {
	e.gen[name]++
	delete(e.missing, name)
	l := e.loaded[name]
	if l == nil || name == store.DefaultEnv {
		return
	}
	delete(e.loaded, name)
	e.s.assertions.InvalidateTrust(l.env)
}

// unloadIdle unloads the environments idle for longer than the configured
// time.
func (e *environments) unloadIdle() {
	cutoff := e.s.now().Add(-e.s.cfg.EnvIdle).UnixNano()
	e.mu.Lock()
	for n, l := range e.loaded {
		if l.used.Load() < cutoff {
			e.unloadLocked(n)
		}
	}
	e.mu.Unlock()
}

// setCaches switches every loaded environment's caches on or off.
func (e *environments) setCaches(on bool) {
	e.cachesOn.Store(on)
	e.cachesGen.Add(1)
	for _, l := range e.all() {
		l.env.Clients.SetEnabled(on)
		l.env.Denied.SetEnabled(on)
	}
}

// policyOf is the signing key policy of an environment: the deployment's,
// with the environment's own algorithm and rotation period where it sets
// them.
func (s *Server) policyOf(rec store.Environment) keys.Policy {
	p := keys.Policy{Alg: s.cfg.SigningAlg, RotationPeriod: s.cfg.KeyRotationPeriod, Prepublish: s.cfg.KeyPrepublish, Retention: s.cfg.KeyRetention()}
	if rec.SigningAlg != "" {
		p.Alg = rec.SigningAlg
	}
	if rec.KeyRotationPeriod > 0 {
		p.RotationPeriod = rec.KeyRotationPeriod
	}
	return p
}

// buildEnv builds an environment's keys, caches and verifiers.
func (s *Server) buildEnv(ctx context.Context, rec store.Environment) (*env.Env, error) {
	name := rec.Name
	st := s.store.InEnv(name)
	iss := s.cfg.EnvIssuer(name)
	log := s.log
	if name != store.DefaultEnv {
		log = s.log.With("env", name)
	}
	km := keys.NewManager(st, s.master, s.policyOf(rec), s.now, log)
	km.OnChange(s.audit.KeyChanges(name))
	km.Recorded(rec.KeyWorkAt)
	if err := km.Init(ctx); err != nil {
		return nil, err
	}
	if name != store.DefaultEnv {
		if err := s.ensureAdminAPI(ctx, st, iss, rec); err != nil {
			return nil, err
		}
	}
	adminVerifier, err := verify.New(verify.Config{Issuer: iss, Audience: iss + "/admin", Keys: localKeys{km}, Now: s.now})
	if err != nil {
		return nil, err
	}
	anyAudience, err := verify.New(verify.Config{Issuer: iss, AnyAudience: true, Keys: localKeys{km}, Now: s.now})
	if err != nil {
		return nil, err
	}
	en := &env.Env{
		Name: name, Issuer: iss, Store: st, Keys: km, Tokens: issuer.New(iss, km, s.now),
		Clients: clientcache.New(st, s.cfg.ClientCacheTTL, s.cfg.ClientCacheMB<<20/clientcache.EntryBytes, s.now),
		Denied:  denylist.New(st, denyListMax, s.now),
		Hasher:  s.hasher, Verifier: anyAudience, AdminVerifier: adminVerifier,
		Verified: tokencache.New(s.cfg.IntrospectionCache),
		Flush:    s.flushUsage,
	}
	en.Changed = invalidator{s, en}
	on := s.envs.cachesOn.Load()
	en.Clients.SetEnabled(on)
	en.Denied.SetEnabled(on)
	if on {
		s.loadClientIDs(ctx, en)
		s.loadDenyList(ctx, en)
	}
	return en, nil
}

// ensureAdminAPI creates an environment's built-in admin API when it lacks
// one (an environment created by a process that stopped before creating
// it).
func (s *Server) ensureAdminAPI(ctx context.Context, st store.Store, iss string, rec store.Environment) error {
	aud := iss + "/admin"
	if _, err := st.GetAPI(ctx, aud); err == nil || !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := s.now().UTC()
	api := admin.BuiltinAdminAPI(aud, rec.DisplayName, now)
	if err := st.CreateAPI(ctx, api); err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("create the admin API: %w", err)
	} else if err != nil {
		s.log.Warn("the environment's built-in admin API is registered under another identifier (the issuer changed?): its admin clients' grants name that one", "env", rec.Name, "admin_audience", aud)
	}
	return nil
}

// envChanged is told of a change to the environment named, made through
// this replica (the change feed tells the others): it is unloaded, and
// loaded afresh by its next request.
func (s *Server) envChanged(name string) {
	s.envs.unload(name)
	s.envs.forgetMissing(name)
	if name == store.DefaultEnv {
		return
	}
	// Created, or deleted: failure counts and known-good addresses of a
	// same-named environment's clients are not its clients'.
	s.limiter.ForgetEnv(name)
	// Its keys now: a new environment's first key is made here, by the
	// admin who created it, not by whichever request comes first; a changed
	// key policy is applied at once. (A deleted environment has none.)
	ctx, cancel := context.WithTimeout(context.Background(), changeWorkTimeout)
	defer cancel()
	if err := s.maintainEnvKeys(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("signing key maintenance of a changed environment; the background maintenance retries", "env", name, "error", err)
		if err := s.store.InEnv(name).SetKeyWorkAt(ctx, time.Time{}); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("schedule key maintenance", "env", name, "error", err)
		}
	}
}

// maintainKeys runs the signing key lifecycle of the environments whose
// keys are due for it (at most a batch per call), so that the work scales
// with the environments due, not with all of them.
func (s *Server) maintainKeys(ctx context.Context) {
	names, err := s.store.KeyWorkDue(ctx, s.now(), keyWorkBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("signing key maintenance: list environments due", "error", err)
		}
		return
	}
	for _, name := range names {
		err := s.maintainEnvKeys(ctx, name)
		if err == nil {
			s.logMismatch(nil)
		}
		if err != nil && ctx.Err() == nil {
			if errors.Is(err, keys.ErrMasterKeyMismatch) {
				s.logMismatch(err)
			} else {
				s.log.Error("signing key maintenance", "env", name, "error", err)
			}
			// Retried at the next pass, not at once.
			_ = s.store.InEnv(name).SetKeyWorkAt(ctx, s.now().Add(time.Minute))
		}
	}
}

// keyWorkBatch is how many environments one maintenance pass visits.
const keyWorkBatch = 200

func (s *Server) maintainEnvKeys(ctx context.Context, name string) error {
	if l := s.envs.peek(name); l != nil {
		if err := l.env.Keys.Maintain(ctx); err != nil {
			return err
		}
		return l.env.Keys.RecordWork(ctx)
	}
	// Not loaded here: a manager for this pass only.
	rec, err := s.store.GetEnvironment(ctx, name)
	if err != nil {
		return err
	}
	km := keys.NewManager(s.store.InEnv(name), s.master, s.policyOf(rec), s.now, s.log.With("env", name))
	km.OnChange(s.audit.KeyChanges(name))
	km.Recorded(rec.KeyWorkAt)
	return km.Init(ctx)
}

// logMismatch logs a master key mismatch once per distinct error.
func (s *Server) logMismatch(err error) {
	if err == nil {
		// Recovered: the next mismatch is news again.
		s.mismatchMu.Lock()
		s.mismatch = ""
		s.mismatchMu.Unlock()
		return
	}
	s.mismatchMu.Lock()
	defer s.mismatchMu.Unlock()
	if err.Error() == s.mismatch {
		return
	}
	s.mismatch = err.Error()
	s.log.Error("signing key maintenance stopped: the stored keys are sealed under another master key (re-sealed by 'm2mauth key rewrap' while this server runs?). "+
		"This server keeps signing with the keys it holds, but cannot rotate, revoke or activate any; restart it with the database's master key", "error", err)
}

// errNoSuchEnv is a request for an environment that does not exist.
var errNoSuchEnv = errors.New("no such environment")

// resolveEnv finds the environment r is served in and rewrites r's path to
// the environment's own (without /e/{name}): by path, /e/{name}/… names
// one; by host, {name}.<issuer host> (or {name}.<mTLS endpoint base host>,
// see hostEnv). Anything else is the default one.
func (s *Server) resolveEnv(r *http.Request) (*env.Env, error) {
	name := ""
	if s.cfg.EnvAddressing == config.EnvByHost {
		var ok bool
		if name, ok = s.hostEnv(r.Host); !ok {
			return nil, errNoSuchEnv
		}
	} else if rest, ok := strings.CutPrefix(r.URL.Path, config.EnvPathPrefix); ok {
		n, tail, _ := strings.Cut(rest, "/")
		// The path is rewritten first, also for a name that is no
		// environment's: its 404 is then written in the envelope of the
		// surface the rest of the path names (a problem for the admin
		// API, a page for the console).
		prefix := config.EnvPathPrefix + n
		r.URL.Path = "/" + tail
		// The prefix must be written as is: "/e%2Fname" or "/e/%6Eame"
		// names no environment.
		escaped := true
		if r.URL.RawPath != "" {
			r.URL.RawPath, escaped = strings.CutPrefix(r.URL.RawPath, prefix)
			// The separator after the name written as is, too.
			escaped = escaped && (r.URL.RawPath == "" || r.URL.RawPath[0] == '/')
		}
		if !escaped || !env.ValidName(n) || n == store.DefaultEnv {
			return nil, errNoSuchEnv
		}
		if isConsolePath(r) {
			// The console lives at the host's root only.
			return nil, errNoSuchEnv
		}
		name = n
	}
	if name == "" {
		return s.env, nil
	}
	l, err := s.envs.get(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSuchEnv
	}
	if err != nil {
		return nil, err
	}
	return l.env, nil
}

// hostEnv is the environment a Host header names by host: "" for the
// issuer's host and the mTLS endpoint base's (and any other host, such as
// an address a health check uses); {name}.<issuer host> and, as
// config.EnvMTLSEndpointBase advertises, {name}.<mTLS base host> are
// name's. ok is false for a name under either that can be no
// environment's (several labels, or "default", which is the base host).
// When one base host is under the other, the longer one decides, so that
// mtls.auth.example.com is an alias base, not an environment "mtls" under
// auth.example.com. A fully qualified name's trailing dot is ignored.
func (s *Server) hostEnv(host string) (name string, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	bases := []string{s.issuerHost}
	if s.mtlsHost != "" {
		bases = append(bases, s.mtlsHost)
		if len(s.mtlsHost) > len(s.issuerHost) {
			bases[0], bases[1] = bases[1], bases[0]
		}
	}
	for _, base := range bases {
		if host == base {
			return "", true
		}
	}
	for _, base := range bases {
		label, under := strings.CutSuffix(host, "."+base)
		if !under {
			continue
		}
		if !env.ValidName(label) || label == store.DefaultEnv {
			return "", false
		}
		return label, true
	}
	return "", true
}

// issuerHostOf is the host name of an issuer URL, without its port.
func issuerHostOf(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}
