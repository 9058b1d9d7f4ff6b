package oauth

import (
	"context"
	"sync"
	"time"
)

// UsageRecorder collects when each secret last authenticated, in memory, so
// that the token endpoint never writes to the database; Flush writes the
// collected times in one batch.
type UsageRecorder struct {
	mu      sync.Mutex
	pending map[string]time.Time
}

// NewUsageRecorder returns an empty recorder.
func NewUsageRecorder() *UsageRecorder {
	return &UsageRecorder{pending: map[string]time.Time{}}
}

// Record notes that secretID authenticated at t.
func (u *UsageRecorder) Record(secretID string, t time.Time) {
	u.mu.Lock()
	if prev, ok := u.pending[secretID]; !ok || t.After(prev) {
		u.pending[secretID] = t
	}
	u.mu.Unlock()
}

// toucher stores last-use times.
type toucher interface {
	TouchSecrets(ctx context.Context, lastUsed map[string]time.Time) error
}

// Flush writes the pending times. On failure they are kept for the next
// flush (newer times win).
func (u *UsageRecorder) Flush(ctx context.Context, st toucher) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = map[string]time.Time{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := st.TouchSecrets(ctx, batch); err != nil {
		for id, t := range batch {
			u.Record(id, t)
		}
		return err
	}
	return nil
}
