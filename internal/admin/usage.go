package admin

import (
	"context"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// Counts counts the APIs and clients.
func (s *Service) Counts(ctx context.Context) (store.Counts, error) { return s.st(ctx).Counts(ctx) }

// ExpiringSecrets lists clients whose every secret expires after from and
// by to, soonest first, at most limit.
func (s *Service) ExpiringSecrets(ctx context.Context, from, to time.Time, limit int) ([]store.SecretExpiry, error) {
	return s.st(ctx).ExpiringSecrets(ctx, from, to, limit)
}

// UsageReport is the tokens issued since an hour: the totals per hour, and
// the clients issued the most with their hours.
type UsageReport struct {
	ByHour []store.UsageCount // ClientID empty
	Top    []store.UsageCount // per client, most first (Hour zero)
	Hours  []store.UsageCount // the hours of the Top clients
}

// TokenUsage reports the tokens issued in the hours starting at or after
// since, with the top clients. The database aggregates: the cost does not
// grow with the number of clients that got tokens.
func (s *Service) TokenUsage(ctx context.Context, since time.Time, top int) (UsageReport, error) {
	var r UsageReport
	var err error
	if r.ByHour, err = s.st(ctx).TokenUsageByHour(ctx, since); err != nil {
		return r, err
	}
	if r.Top, err = s.st(ctx).TopTokenClients(ctx, since, top); err != nil {
		return r, err
	}
	ids := make([]string, len(r.Top))
	for i, c := range r.Top {
		ids[i] = c.ClientID
	}
	r.Hours, err = s.st(ctx).TokenUsage(ctx, since, ids)
	return r, err
}

// GrantHolderIDs calls fn with the id of every client holding a grant for
// the API audience, by id, without loading the clients.
func (s *Service) GrantHolderIDs(ctx context.Context, audience string, fn func(id string)) error {
	return s.st(ctx).GrantHolderIDs(ctx, audience, fn)
}
