package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/m2mauth/m2mauth/internal/report"
)

// WithReport lets the Service report clients that never cache tokens.
func WithReport(r *report.Reporter) ServiceOption {
	return func(s *Service) { s.report = r }
}

// errNoReport: the Service was built without a Reporter.
var errNoReport = errors.New("the token caching report is not configured")

// TokenCachingReport reports the clients of the request's environment
// that are issued far more tokens than their token lifetime needs.
func (s *Service) TokenCachingReport(ctx context.Context) (report.Report, error) {
	if s.report == nil {
		return report.Report{}, errNoReport
	}
	return s.report.Report(ctx, s.st(ctx))
}

// TokenCachingReport is the admin API's form of a report.Report.
type TokenCachingReport struct {
	GeneratedAt            time.Time             `json:"generated_at"`
	WindowSeconds          int64                 `json:"window_seconds"`
	TokensPerLifetimeLimit float64               `json:"tokens_per_lifetime_threshold"`
	MinTokens              int64                 `json:"min_tokens"`
	Clients                []TokenCachingFinding `json:"clients"`
}

// TokenCachingFinding is one flagged client.
type TokenCachingFinding struct {
	ClientID          string  `json:"client_id"`
	Name              string  `json:"name"`
	Tokens            int64   `json:"tokens"`
	WindowSeconds     int64   `json:"window_seconds"`
	LifetimeSeconds   int64   `json:"lifetime_seconds"`
	Audiences         int     `json:"audiences"`
	TokensPerLifetime float64 `json:"tokens_per_lifetime"`
	CachingTokens     int64   `json:"caching_tokens"`
}

// TokenCachingResource renders a report.
func TokenCachingResource(r report.Report) TokenCachingReport {
	out := TokenCachingReport{GeneratedAt: r.At, WindowSeconds: int64(r.Window / time.Second),
		TokensPerLifetimeLimit: r.TokensPerLifetime, MinTokens: r.MinTokens, Clients: make([]TokenCachingFinding, len(r.Findings))}
	for i, f := range r.Findings {
		out.Clients[i] = TokenCachingFinding{ClientID: f.ClientID, Name: f.Name, Tokens: f.Tokens, WindowSeconds: int64(f.Window / time.Second),
			LifetimeSeconds: int64(f.Lifetime / time.Second), Audiences: f.Audiences, TokensPerLifetime: f.TokensPerLifetime, CachingTokens: f.Needed}
	}
	return out
}

func (h *Handler) tokenCachingReport(w http.ResponseWriter, r *http.Request) error {
	h.beforeRead(r.Context())
	rep, err := h.svc.TokenCachingReport(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, "application/json", TokenCachingResource(rep))
	return nil
}
