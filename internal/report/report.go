// Package report finds clients that never cache their access tokens: those
// issued far more tokens than their token lifetime needs. It reads the
// per-minute issuance counts every replica adds to the database
// (store.RecentTokenUsage), so it sees the whole deployment, not a replica.
//
// For each client issued at least MinTokens tokens in the last Window, the
// window counted is from the start of its first minute with tokens in that
// hour (a client that started a minute ago is judged on that minute), and
// a caching client would need, per granted API, one token per lifetime
// started in the window: ceil(window / lifetime), at least one. The client
// is flagged when it was issued more than TokensPerLifetime times that.
package report

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Window is how far back the report looks.
const Window = time.Hour

// Defaults of Config.
const (
	DefaultTokensPerLifetime = 10
	DefaultMinTokens         = 30
)

// Config holds the report's thresholds and the server's lifetime rules.
type Config struct {
	// TokensPerLifetime flags a client issued more tokens than this many
	// times what a caching client needs (0: DefaultTokensPerLifetime).
	TokensPerLifetime float64
	// MinTokens: clients issued fewer tokens in the window are never
	// flagged, so that a restart burst is not (0: DefaultMinTokens).
	MinTokens int64
	// DefaultLifetime and MaxLifetime are the server's token lifetime
	// rules (oauth.Policy).
	DefaultLifetime, MaxLifetime time.Duration
	Now                          func() time.Time
	// AdminAudience is the admin API's identifier in ctx's environment
	// (nil: none). A client granted nothing else is never flagged: the
	// CLI and the console sign in for each command by design.
	AdminAudience func(ctx context.Context) string
}

// Source is the store of one environment.
type Source interface {
	RecentTokenUsage(ctx context.Context, since time.Time, min int64) ([]store.UsageCount, error)
	GetClient(ctx context.Context, id string) (store.Client, error)
}

// Finding is a client issued far more tokens than it needs.
type Finding struct {
	ClientID string
	Name     string
	// Tokens were issued to the client in the Window before At.
	Tokens int64
	Window time.Duration
	// Lifetime is the shortest effective token lifetime of its grants.
	Lifetime time.Duration
	// Audiences is how many APIs the client is granted.
	Audiences int
	// Needed is how many tokens a caching client would have needed: per
	// audience, one per lifetime started in the window.
	Needed int64
	// TokensPerLifetime is Tokens / Needed.
	TokensPerLifetime float64
}

// Report is the clients of one environment that never cache tokens, most
// wasteful first, with the thresholds that flagged them.
type Report struct {
	At                time.Time
	Window            time.Duration
	TokensPerLifetime float64
	MinTokens         int64
	Findings          []Finding
}

// Reporter makes reports. It is safe for concurrent use.
type Reporter struct{ cfg Config }

// New returns a Reporter with cfg (zero thresholds take the defaults).
func New(cfg Config) *Reporter {
	if cfg.TokensPerLifetime <= 0 {
		cfg.TokensPerLifetime = DefaultTokensPerLifetime
	}
	if cfg.MinTokens <= 0 {
		cfg.MinTokens = DefaultMinTokens
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reporter{cfg: cfg}
}

// Report reports the clients of src's environment that never cache tokens.
func (r *Reporter) Report(ctx context.Context, src Source) (Report, error) {
	now := r.cfg.Now().UTC()
	rep := Report{At: now, Window: Window, TokensPerLifetime: r.cfg.TokensPerLifetime, MinTokens: r.cfg.MinTokens, Findings: []Finding{}}
	since := now.Add(-Window).Truncate(time.Minute)
	usage, err := src.RecentTokenUsage(ctx, since, r.cfg.MinTokens)
	if err != nil {
		return rep, err
	}
	adminAPI := ""
	if r.cfg.AdminAudience != nil {
		adminAPI = r.cfg.AdminAudience(ctx)
	}
	for _, u := range usage {
		c, err := src.GetClient(ctx, u.ClientID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since
		}
		if err != nil {
			return rep, err
		}
		if adminAPI != "" && len(c.Grants) > 0 && !slices.ContainsFunc(c.Grants, func(g store.Grant) bool { return g.Audience != adminAPI }) {
			continue // an admin client: the CLI signs in per command
		}
		start := since
		if u.Minute.After(since) {
			start = u.Minute
		}
		if f, ok := r.judge(c, u, start, now); ok {
			rep.Findings = append(rep.Findings, f)
		}
	}
	slices.SortFunc(rep.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.TokensPerLifetime, a.TokensPerLifetime), cmp.Compare(a.ClientID, b.ClientID))
	})
	return rep, nil
}

// Count is how many clients of src's environment never cache tokens.
func (r *Reporter) Count(ctx context.Context, src Source) (int, error) {
	rep, err := r.Report(ctx, src)
	return len(rep.Findings), err
}

// judge decides whether c, issued u.Tokens since start, is flagged.
func (r *Reporter) judge(c store.Client, u store.UsageCount, start, now time.Time) (Finding, bool) {
	window := max(now.Sub(start), time.Minute)
	f := Finding{ClientID: c.ID, Name: c.Name, Tokens: u.Tokens, Window: window, Audiences: len(c.Grants)}
	for _, g := range c.Grants {
		l := r.lifetime(c, g)
		if f.Lifetime == 0 || l < f.Lifetime {
			f.Lifetime = l
		}
		f.Needed += int64(math.Ceil(float64(window) / float64(l)))
	}
	if f.Needed == 0 {
		// No grant left: any token was once needed, none is now.
		f.Lifetime, f.Needed = r.lifetime(c, store.Grant{}), 1
	}
	f.TokensPerLifetime = float64(f.Tokens) / float64(f.Needed)
	return f, u.Tokens >= r.cfg.MinTokens && f.TokensPerLifetime > r.cfg.TokensPerLifetime
}

// lifetime is the lifetime of the client's tokens for the API of grant g,
// by the token endpoint's rules: the client's, else the API's, else the
// server default, capped by the server maximum.
func (r *Reporter) lifetime(c store.Client, g store.Grant) time.Duration {
	l := c.TokenLifetime
	if l <= 0 {
		l = g.APITokenLifetime
	}
	if l <= 0 {
		l = r.cfg.DefaultLifetime
	}
	if r.cfg.MaxLifetime > 0 && l > r.cfg.MaxLifetime {
		l = r.cfg.MaxLifetime
	}
	return max(l, time.Second)
}
