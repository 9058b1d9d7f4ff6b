package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listen follows the change feed (LISTEN on Channel) until ctx is done.
// onChange receives each change (see sqlstore.ChangeClientPrefix);
// onState(true, nil) is called each time the feed is (re)connected and
// onState(false, err) each time it is lost, so that a cache can empty itself
// and stop caching while notifications may be missed. Connection failures are
// retried with backoff (up to 2 s apart).
func (s *Store) Listen(ctx context.Context, onChange func(change string), onState func(connected bool, err error)) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, onChange, onState, &backoff)
		if ctx.Err() != nil {
			return
		}
		onState(false, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, onChange func(string), onState func(bool, error), backoff *time.Duration) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	onState(true, nil)
	*backoff = 50 * time.Millisecond
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		onChange(n.Payload)
	}
}
