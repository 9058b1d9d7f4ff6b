package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetryDeadlocks(t *testing.T) {
	errDeadlock := errors.New("deadlock detected")
	errOther := errors.New("connection refused")
	isDeadlock := func(err error) bool { return errors.Is(err, errDeadlock) }
	tests := []struct {
		name       string
		isDeadlock func(error) bool
		fails      []error // what exec returns, call by call (then nil)
		wantCalls  int
		wantErr    error
		wantPauses int
	}{
		{"first try", isDeadlock, nil, 1, nil, 0},
		{"two deadlocks, then it commits", isDeadlock, []error{errDeadlock, errDeadlock}, 3, nil, 2},
		{"another error is not retried", isDeadlock, []error{errOther}, 1, errOther, 0},
		{"a deadlock, then another error", isDeadlock, []error{errDeadlock, errOther}, 2, errOther, 1},
		{"gives up after touchAttempts", isDeadlock, []error{errDeadlock, errDeadlock, errDeadlock, errDeadlock, errDeadlock, errDeadlock}, touchAttempts, errDeadlock, touchAttempts - 1},
		{"no deadlock test: never retried", nil, []error{errDeadlock}, 1, errDeadlock, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			var pauses []time.Duration
			sleep := func(_ context.Context, d time.Duration) error { pauses = append(pauses, d); return nil }
			err := retryDeadlocks(context.Background(), tc.isDeadlock, sleep, func() error {
				calls++
				if calls <= len(tc.fails) {
					return tc.fails[calls-1]
				}
				return nil
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if calls != tc.wantCalls || len(pauses) != tc.wantPauses {
				t.Errorf("%d calls and %d pauses, want %d and %d", calls, len(pauses), tc.wantCalls, tc.wantPauses)
			}
			for i, d := range pauses {
				if lo, hi := time.Duration(i+1)*5*time.Millisecond, time.Duration(i+1)*20*time.Millisecond; d < lo || d >= hi {
					t.Errorf("pause %d = %v, want in [%v, %v)", i, d, lo, hi)
				}
			}
		})
	}
	// A cancelled wait ends the retries with the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := retryDeadlocks(ctx, isDeadlock, sleepCtx, func() error { calls++; return errDeadlock })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("cancelled: %v after %d calls", err, calls)
	}
}
