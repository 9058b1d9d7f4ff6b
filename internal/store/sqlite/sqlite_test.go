package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() store.Store {
		path := filepath.Join(t.TempDir(), "m2mauth.db")
		return func() store.Store {
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m2mauth.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := sqlite.Migrate(context.Background(), s.DB())
	if err != nil || n != 0 {
		t.Fatalf("second migrate: applied %d, err %v; want 0, nil", n, err)
	}
}

// A deleted client's tombstone records the instant the caller passed (the
// server's injected clock), not the machine's.
func TestTombstoneTime(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m2mauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.CreateClient(ctx, store.Client{ID: "c", Name: "c", Version: 1, CreatedAt: at, UpdatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteClient(ctx, "c", at); err != nil {
		t.Fatal(err)
	}
	var micros int64
	if err := s.DB().QueryRowContext(ctx, `SELECT deleted_at FROM client_tombstones WHERE id = 'c'`).Scan(&micros); err != nil {
		t.Fatal(err)
	}
	if got := time.UnixMicro(micros).UTC(); !got.Equal(at) {
		t.Errorf("tombstone at %v, want %v", got, at)
	}
}
