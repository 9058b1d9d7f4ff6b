package oauth

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// UsageRecorder collects, in memory, when each secret last authenticated
// and how many access tokens each client was issued per hour, so that the
// token endpoint never writes to the database; Flush writes what it
// collected in one batch.
type UsageRecorder struct {
	mu      sync.Mutex
	pending map[string]time.Time
	issued  map[usageKey]int64
}

// usageKey is a client and the hour (Unix seconds of its start) a count
// belongs to.
type usageKey struct {
	clientID string
	hour     int64
}

// NewUsageRecorder returns an empty recorder.
func NewUsageRecorder() *UsageRecorder {
	return &UsageRecorder{pending: map[string]time.Time{}, issued: map[usageKey]int64{}}
}

// Record notes that secretID authenticated at t.
func (u *UsageRecorder) Record(secretID string, t time.Time) {
	u.mu.Lock()
	if prev, ok := u.pending[secretID]; !ok || t.After(prev) {
		u.pending[secretID] = t
	}
	u.mu.Unlock()
}

// Issued notes that clientID was issued an access token at t. It costs no
// allocation once the client has a count in the current hour.
func (u *UsageRecorder) Issued(clientID string, t time.Time) {
	k := usageKey{clientID, t.Unix() - t.Unix()%3600}
	u.mu.Lock()
	u.issued[k]++
	u.mu.Unlock()
}

// usageStore stores last-use times and token counts.
type usageStore interface {
	TouchSecrets(ctx context.Context, lastUsed map[string]time.Time) error
	AddTokenUsage(ctx context.Context, counts []store.UsageCount) error
}

// Flush writes what was collected. On failure it is kept for the next
// flush (newer times win; counts add up), so nothing is lost. (A commit
// that succeeded but reported failure would count its batch twice: the
// counts are for people to read, not for billing.)
func (u *UsageRecorder) Flush(ctx context.Context, st usageStore) error {
	var batch map[string]time.Time
	var issued map[usageKey]int64
	u.mu.Lock()
	if len(u.pending) > 0 {
		batch, u.pending = u.pending, map[string]time.Time{}
	}
	if len(u.issued) > 0 {
		issued, u.issued = u.issued, make(map[usageKey]int64, len(u.issued))
	}
	u.mu.Unlock()
	var errs []error
	if len(batch) > 0 {
		if err := st.TouchSecrets(ctx, batch); err != nil {
			for id, t := range batch {
				u.Record(id, t)
			}
			errs = append(errs, err)
		}
	}
	if len(issued) > 0 {
		counts := make([]store.UsageCount, 0, len(issued))
		for k, n := range issued {
			counts = append(counts, store.UsageCount{ClientID: k.clientID, Hour: time.Unix(k.hour, 0).UTC(), Tokens: n})
		}
		if err := st.AddTokenUsage(ctx, counts); err != nil {
			u.mu.Lock()
			for k, n := range issued {
				u.issued[k] += n
			}
			u.mu.Unlock()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
