package audit

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// BenchmarkWriterSQLite is the writer's cost per token event, stored in
// SQLite in batches: the work the audit trail adds off the request path.
func BenchmarkWriterSQLite(b *testing.B) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "a.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := New(Config{Store: st, IssuanceSample: 1, QueueSize: 1 << 20})
	defer r.Close(context.Background())
	o := outcome(oauth.CodeOK, "m2mc_0123456789abcdefghijklmn")
	b.ReportAllocs()
	for b.Loop() {
		for range DefaultBatchSize {
			r.Observe(context.Background(), o)
		}
		if err := r.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBatchSize), "ns/event")
}
