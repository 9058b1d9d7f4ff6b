package oauth

import (
	"context"
	"sync"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// UsageRecorder collects, in memory, when each secret last authenticated
// and how many access tokens each client was issued per minute, in every
// environment, so that the token endpoint never writes to the database;
// Flush writes what it collected in one batch per environment.
type UsageRecorder struct {
	mu      sync.Mutex
	pending map[secretKey]time.Time
	issued  map[usageKey]int64
}

// secretKey is a secret of an environment.
type secretKey struct{ env, secretID string }

// usageKey is a client of an environment and the minute (Unix seconds of
// its start) a count belongs to.
type usageKey struct {
	env, clientID string
	minute        int64
}

// NewUsageRecorder returns an empty recorder.
func NewUsageRecorder() *UsageRecorder {
	return &UsageRecorder{pending: map[secretKey]time.Time{}, issued: map[usageKey]int64{}}
}

// Record notes that secretID of environment env authenticated at t.
func (u *UsageRecorder) Record(env, secretID string, t time.Time) {
	k := secretKey{env, secretID}
	u.mu.Lock()
	if prev, ok := u.pending[k]; !ok || t.After(prev) {
		u.pending[k] = t
	}
	u.mu.Unlock()
}

// Issued notes that clientID of environment env was issued an access token
// at t. It costs no allocation once the client has a count in the current
// minute.
func (u *UsageRecorder) Issued(env, clientID string, t time.Time) {
	k := usageKey{env, clientID, t.Unix() - t.Unix()%60}
	u.mu.Lock()
	u.issued[k]++
	u.mu.Unlock()
}

// minuteCountsKept is how long (seconds) counts kept for a failed flush
// stay per minute: the report of clients that never cache tokens reads
// the last hour of minutes.
const minuteCountsKept = 2 * 3600

// UsageStore stores last-use times and token counts of any environments.
type UsageStore interface {
	RecordUsage(ctx context.Context, uses []store.SecretUse, counts []store.UsageCount) error
}

// Flush writes what was collected, for every environment at once. On
// failure it is kept for the next flush (newer times win; counts add up),
// so nothing is lost. (A commit that succeeded but reported failure would
// count its batch twice: the counts are for people to read, not for
// billing.)
func (u *UsageRecorder) Flush(ctx context.Context, st UsageStore) error {
	var batch map[secretKey]time.Time
	var issued map[usageKey]int64
	u.mu.Lock()
	if len(u.pending) > 0 {
		batch, u.pending = u.pending, map[secretKey]time.Time{}
	}
	if len(u.issued) > 0 {
		issued, u.issued = u.issued, make(map[usageKey]int64, len(u.issued))
	}
	u.mu.Unlock()
	if len(batch) == 0 && len(issued) == 0 {
		return nil
	}
	uses := make([]store.SecretUse, 0, len(batch))
	for k, t := range batch {
		uses = append(uses, store.SecretUse{Env: k.env, SecretID: k.secretID, At: t})
	}
	counts := make([]store.UsageCount, 0, len(issued))
	for k, n := range issued {
		counts = append(counts, store.UsageCount{Env: k.env, ClientID: k.clientID,
			Hour: time.Unix(k.minute-k.minute%3600, 0).UTC(), Minute: time.Unix(k.minute, 0).UTC(), Tokens: n})
	}
	if err := st.RecordUsage(ctx, uses, counts); err != nil {
		for k, t := range batch {
			u.Record(k.env, k.secretID, t)
		}
		// Kept per minute only as long as the report reads minutes:
		// older counts fold into their hour, so that an outage of the
		// database grows this by an entry per client and hour, not per
		// minute.
		var newest int64
		for k := range issued {
			newest = max(newest, k.minute)
		}
		u.mu.Lock()
		for k, n := range issued {
			if k.minute < newest-minuteCountsKept {
				k.minute -= k.minute % 3600
			}
			u.issued[k] += n
		}
		u.mu.Unlock()
		return err
	}
	return nil
}
