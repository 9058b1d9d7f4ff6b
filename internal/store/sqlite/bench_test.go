package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/m2mauth/m2mauth/internal/store/sqlite"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
	"github.com/m2mauth/m2mauth/internal/store/storetest"
)

func openBench(b *testing.B) *sqlstore.Store {
	b.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "m2mauth.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkAuditAppend(b *testing.B) { storetest.BenchmarkAuditAppend(b, openBench(b)) }
func BenchmarkRecordUsage(b *testing.B) { storetest.BenchmarkRecordUsage(b, openBench(b)) }
