package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/m2mauth/m2mauth/internal/store"
)

// noLimit stands for a window without a limit in the reservation's
// arithmetic: larger than any count.
const noLimit = int64(1) << 62

// reserveSQL is the one statement of ReserveQuota: an upsert whose update
// computes the grant from the row as it was (every SET expression of an
// UPDATE reads the old row, in PostgreSQL and SQLite alike), so that
// concurrent reservations (row-locked one after the other) never grant
// more than a window's room. A window never goes back: a replica whose
// clock lags counts into the window a faster one has started (rather than
// resetting it to an earlier one). Parameters: $1 env, $2 client, $3 want,
// $4–$6 the windows' starts, $7–$9 their limits, $10 tokens given back,
// $11–$13 the starts of the windows they were reserved in, $14 the grant
// of a first reservation (no row yet).
func reserveSQL(least, greatest string) string {
	cols := [3]string{"minute", "hour", "day"}
	var base [3]string
	for i, c := range cols {
		start, ret := fmt.Sprintf("$%d", 4+i), fmt.Sprintf("$%d", 11+i)
		// The count of the current window, less what is given back.
		base[i] = fmt.Sprintf("(CASE WHEN quota_counters.%[1]s_start >= %[2]s THEN %[4]s(quota_counters.%[1]s_used - CASE WHEN quota_counters.%[1]s_start = %[3]s THEN $10 ELSE 0 END, 0) ELSE 0 END)",
			c, start, ret, greatest)
	}
	grant := fmt.Sprintf("%s(%s($3, $7 - %s, $8 - %s, $9 - %s), 0)", greatest, least, base[0], base[1], base[2])
	var set strings.Builder
	for i, c := range cols {
		fmt.Fprintf(&set, "%[1]s_start = %[5]s(quota_counters.%[1]s_start, $%[2]d), %[1]s_used = %[3]s + %[4]s, ", c, 4+i, base[i], grant, greatest)
	}
	set.WriteString("granted = " + grant)
	return `INSERT INTO quota_counters (env, client_id, minute_start, minute_used, hour_start, hour_used, day_start, day_used, granted)
		VALUES ($1, $2, $4, $14, $5, $14, $6, $14, $14)
		ON CONFLICT (env, client_id) DO UPDATE SET ` + set.String() + `
		RETURNING granted, minute_used, hour_used, day_used`
}

var (
	reservePostgres = reserveSQL("LEAST", "GREATEST")
	reserveSQLite   = reserveSQL("MIN", "MAX") // SQLite's multi-argument scalar min and max
)

// ReserveQuota implements store.Store.
func (s *Store) ReserveQuota(ctx context.Context, r store.QuotaReservation) (granted int64, used [3]int64, err error) {
	q := reserveSQLite
	if s.f.Name == "postgres" {
		q = reservePostgres
	}
	limits := r.Limits
	first := max(r.Want, 0)
	for i, l := range limits {
		if l <= 0 {
			limits[i] = noLimit
		}
		first = min(first, limits[i])
	}
	err = s.db.QueryRowContext(ctx, q, s.env, r.ClientID, max(r.Want, 0),
		micros(r.Starts[0]), micros(r.Starts[1]), micros(r.Starts[2]),
		limits[0], limits[1], limits[2], max(r.Return, 0),
		micros(r.ReturnStarts[0]), micros(r.ReturnStarts[1]), micros(r.ReturnStarts[2]), first,
	).Scan(&granted, &used[0], &used[1], &used[2])
	if err != nil {
		return 0, used, s.mapErr("reserve quota", err)
	}
	return granted, used, nil
}
