package server

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/config"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
	"github.com/m2mauth/m2mauth/internal/store/postgres"
	"github.com/m2mauth/m2mauth/internal/store/postgres/pgtest"
	"github.com/m2mauth/m2mauth/internal/store/sqlstore"
)

// The database records its issuer on first start. A server started with
// another one refuses, naming both and the flag that changes it; with
// --change-issuer the admin API moves and tokens carry the new issuer; a
// database from before the issuer was recorded names it by its admin API.
func TestIssuerIsRecorded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Issuer = "https://auth-a.example"
	ts := startServer(t, cfg)
	ts.stop()

	start := func(issuer string, change bool) error {
		c := cfg
		c.Issuer, c.ChangeIssuer = issuer, change
		srv, err := New(context.Background(), c, NewLogger(io.Discard, "json", "error"), nil)
		if err == nil {
			srv.Close()
		}
		return err
	}
	err := start("https://auth-b.example", false)
	if !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("another issuer: %v", err)
	}
	for _, want := range []string{"https://auth-a.example", "https://auth-b.example", "--change-issuer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not name %s: %v", want, err)
		}
	}
	st, err := OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetAPI(context.Background(), "https://auth-a.example/admin"); err != nil {
		t.Errorf("the refused start moved the admin API: %v", err)
	}
	st.Close()

	cfg.Issuer, cfg.ChangeIssuer = "https://auth-b.example", true
	b := startServer(t, cfg)
	id, secret := setupOrders(b)
	if iss := b.verifyToken(b.mustToken(id, secret, url.Values{})).claims["iss"]; iss != "https://auth-b.example" {
		t.Errorf("iss %v after the change", iss)
	}
	b.stop()
	if err := start("https://auth-a.example", false); !errors.Is(err, ErrIssuerMismatch) {
		t.Errorf("the old issuer after the change: %v", err)
	}
	if err := start("https://auth-b.example", false); err != nil {
		t.Errorf("the new issuer without the flag: %v", err)
	}

	// A database from before the issuer was recorded (wave 1) names it by
	// its admin API, and gets it recorded on the next start.
	st, err = OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.(*sqlstore.Store).DB().Exec(`DELETE FROM meta WHERE k = 'issuer'`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := start("https://auth-a.example", false); !errors.Is(err, ErrIssuerMismatch) || !strings.Contains(err.Error(), "https://auth-b.example") {
		t.Errorf("another issuer than a wave-1 database's admin API: %v", err)
	}
	if err := start("https://auth-b.example", false); err != nil {
		t.Errorf("a wave-1 database's issuer: %v", err)
	}
	st, err = OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if iss, err := st.GetMeta(context.Background(), store.MetaIssuer); iss != "https://auth-b.example" || err != nil {
		t.Errorf("issuer recorded on upgrade: %q %v", iss, err)
	}
}

// Two replicas on one PostgreSQL database started with different issuers:
// the second refuses to start instead of moving the admin API under the
// first.
func TestReplicasWithDifferentIssuersPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	master := keys.GenerateMasterKeyText()
	base := config.Default()
	base.Database, base.MasterKey = dsn, master
	startWith := func(issuer string) error {
		c := base
		c.Issuer, c.DataDir = issuer, t.TempDir()
		srv, err := New(context.Background(), c, NewLogger(io.Discard, "json", "error"), nil)
		if err == nil {
			t.Cleanup(func() { srv.Close() })
		}
		return err
	}
	if err := startWith("https://one.example"); err != nil {
		t.Fatal(err)
	}
	if err := startWith("https://two.example"); !errors.Is(err, ErrIssuerMismatch) {
		t.Fatalf("second replica with another issuer: %v", err)
	}
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if iss, err := st.GetMeta(context.Background(), store.MetaIssuer); iss != "https://one.example" || err != nil {
		t.Errorf("recorded issuer %q %v", iss, err)
	}
}
