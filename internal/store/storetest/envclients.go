package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// testEnvClientIsolation: clients (with their grants, secrets and
// tombstones), refresh tokens, revocations, token usage, console sessions
// and links, counts and expiring secrets live in one environment: another
// sees none of them, and may hold a client of the same id. Expiry
// clean-ups are deployment maintenance and cover every environment.
func testEnvClientIsolation(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	def := open()
	if err := def.CreateEnvironment(ctx, store.Environment{Name: "b", DisplayName: "B", Version: 1, CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	b := def.InEnv("b")

	// The same API identifier and client id in both, differently.
	const aud = "https://a.example"
	apiB := api(aud, "r", "w")
	apiB.ID, apiB.TokenLifetime = "api_b", 20*time.Minute
	if err := def.CreateAPI(ctx, api(aud, "r")); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateAPI(ctx, apiB); err != nil {
		t.Fatal(err)
	}
	cd := client("c1", store.Grant{Audience: aud, Scopes: []string{"r"}})
	cb := client("c1", store.Grant{Audience: aud, Scopes: []string{"w"}})
	cb.Name, cb.Secrets[0].ID, cb.Disabled = "client c1 in b", "sec_c1_b", true
	cb.Federation = []store.FederatedIdentity{{Policy: "p", Subject: "s"}}
	if err := def.CreateClient(ctx, cd); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateClient(ctx, cb); err != nil {
		t.Fatalf("the same client id in another environment: %v", err)
	}
	if err := b.CreateClient(ctx, client("onlyb")); err != nil {
		t.Fatal(err)
	}
	gotD, err := def.GetClient(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	gotB, err := b.GetClient(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if gotD.Name != "client c1" || len(gotD.Secrets) != 1 || gotD.Secrets[0].ID != cd.Secrets[0].ID ||
		!cmp.Equal(gotD.Grants, []store.Grant{{Audience: aud, Scopes: []string{"r"}, APITokenLifetime: 10 * time.Minute}}) {
		t.Errorf("default's c1: %+v", gotD)
	}
	if gotB.Name != "client c1 in b" || len(gotB.Secrets) != 1 || gotB.Secrets[0].ID != "sec_c1_b" ||
		!cmp.Equal(gotB.Grants, []store.Grant{{Audience: aud, Scopes: []string{"w"}, APITokenLifetime: 20 * time.Minute}}) {
		t.Errorf("b's c1: %+v", gotB)
	}
	if _, err := def.GetClient(ctx, "onlyb"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default gets b's client: %v", err)
	}
	ids := func(s store.Store) []string {
		t.Helper()
		var out []string
		if err := s.ClientIDs(ctx, func(id string) { out = append(out, id) }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if got := ids(def); !cmp.Equal(got, []string{"c1"}) {
		t.Errorf("default's client ids %v", got)
	}
	if got := ids(b); !cmp.Equal(got, []string{"c1", "onlyb"}) {
		t.Errorf("b's client ids %v", got)
	}
	listed, err := b.ListClients(ctx, store.ListOptions{Audience: aud})
	if err != nil || len(listed) != 1 || listed[0].Name != "client c1 in b" || len(listed[0].Secrets) != 1 || len(listed[0].Grants) != 1 || listed[0].Grants[0].APITokenLifetime != 20*time.Minute {
		t.Errorf("b's clients holding %s: %+v %v", aud, listed, err)
	}
	var holders []string
	if err := def.GrantHolderIDs(ctx, aud, func(id string) { holders = append(holders, id) }); err != nil || !cmp.Equal(holders, []string{"c1"}) {
		t.Errorf("default's holders %v %v", holders, err)
	}
	if fed, err := def.FederatedIdentities(ctx); err != nil || len(fed) != 0 {
		t.Errorf("default's federated identities %v %v", fed, err)
	}
	if fed, err := b.FederatedIdentities(ctx); err != nil || len(fed["c1"]) != 1 {
		t.Errorf("b's federated identities %v %v", fed, err)
	}
	if c, err := def.Counts(ctx); err != nil || c != (store.Counts{APIs: 1, Clients: 1}) {
		t.Errorf("default's counts %+v %v", c, err)
	}
	if c, err := b.Counts(ctx); err != nil || c != (store.Counts{APIs: 1, Clients: 2, DisabledClients: 1}) {
		t.Errorf("b's counts %+v %v", c, err)
	}
	if exp, err := b.ExpiringSecrets(ctx, t0, t0.Add(2*time.Hour), 10); err != nil || len(exp) != 2 || exp[0].ClientID != "c1" || exp[0].ClientName != "client c1 in b" {
		t.Errorf("b's expiring secrets %+v %v", exp, err)
	}

	// Updating and deleting one leaves the other alone; tombstones are
	// per environment.
	if _, err := b.UpdateClient(ctx, "c1", func(c *store.Client) error {
		c.Description = "changed"
		c.Grants = nil
		c.Secrets[0].ExpiresAt = t0.Add(2 * time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := def.TouchSecrets(ctx, map[string]time.Time{"sec_c1_b": t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := def.GetClient(ctx, "c1"); got.Description != "d" || len(got.Grants) != 1 || !got.Secrets[0].ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("b's update changed default's c1: %+v", got)
	}
	if got, _ := b.GetClient(ctx, "c1"); got.Description != "changed" || len(got.Grants) != 0 || !got.Secrets[0].LastUsedAt.IsZero() {
		t.Errorf("b's c1 after its update and default's touch: %+v", got)
	}
	if err := b.DeleteClient(ctx, "c1", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := def.GetClient(ctx, "c1"); err != nil {
		t.Errorf("deleting b's c1 deleted default's: %v", err)
	}
	if err := b.CreateClient(ctx, client("c1")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("b reuses its deleted client's id: %v", err)
	}
	if err := def.DeleteClient(ctx, "onlyb", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default deletes b's client: %v", err)
	}
	z := client("z")
	z.Secrets = nil
	if err := b.CreateClient(ctx, z); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteClient(ctx, "z", t0); err != nil {
		t.Fatal(err)
	}
	if err := def.CreateClient(ctx, z); err != nil {
		t.Errorf("default is refused the id of a client deleted in b: %v", err)
	}

	// Refresh tokens.
	if err := b.CreateRefreshToken(ctx, refreshToken("rb", "fb", "onlyb", t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := def.GetRefreshToken(ctx, "rb"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default gets b's refresh token: %v", err)
	}
	if _, err := def.RedeemRefreshToken(ctx, "rb", t0, successor("rb2", t0)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default redeems b's refresh token: %v", err)
	}
	if err := def.RevokeRefreshFamily(ctx, "fb", t0); err != nil {
		t.Fatal(err)
	}
	if err := def.RevokeClientRefreshTokens(ctx, "onlyb", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RedeemRefreshToken(ctx, "rb", t0, successor("rb2", t0)); err != nil {
		t.Fatalf("b redeems its token after default's revocations: %v", err)
	}
	if got, err := b.GetRefreshToken(ctx, "rb2"); err != nil || got.FamilyID != "fb" {
		t.Errorf("b's successor: %+v %v", got, err)
	}

	// Revocations.
	if err := b.RevokeToken(ctx, store.Revocation{JTI: "j", ClientID: "onlyb", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if ok, err := def.IsRevoked(ctx, "j"); ok || err != nil {
		t.Errorf("b's revocation revokes in default: %v %v", ok, err)
	}
	if err := def.RevokeToken(ctx, store.Revocation{JTI: "j", ClientID: "c1", ExpiresAt: t0.Add(2 * time.Hour), RevokedAt: t0}); err != nil {
		t.Fatalf("the same jti in another environment: %v", err)
	}
	if l, err := b.ListRevocations(ctx, t0, nil, 0); err != nil || len(l) != 1 || l[0].ClientID != "onlyb" {
		t.Errorf("b's revocations %+v %v", l, err)
	}

	// Token usage.
	if err := def.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "c1", Hour: t0.Truncate(time.Hour), Tokens: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddTokenUsage(ctx, []store.UsageCount{{ClientID: "c1", Hour: t0.Truncate(time.Hour), Tokens: 5}}); err != nil {
		t.Fatal(err)
	}
	if u, err := def.TokenUsage(ctx, t0.Add(-time.Hour), []string{"c1"}); err != nil || len(u) != 1 || u[0].Tokens != 1 {
		t.Errorf("default's usage %+v %v", u, err)
	}
	if u, err := b.TopTokenClients(ctx, t0.Add(-time.Hour), 10); err != nil || len(u) != 1 || u[0].Tokens != 5 {
		t.Errorf("b's top clients %+v %v", u, err)
	}
	if u, err := def.TokenUsageByHour(ctx, t0.Add(-time.Hour)); err != nil || len(u) != 1 || u[0].Tokens != 1 {
		t.Errorf("default's usage by hour %+v %v", u, err)
	}

	// Console sessions and links.
	const idle = 30 * time.Minute
	if err := b.CreateConsoleSession(ctx, store.ConsoleSession{IDHash: "hb", ClientID: "onlyb", CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := def.GetConsoleSession(ctx, "hb", t0, idle); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default gets b's console session: %v", err)
	}
	if err := def.DeleteConsoleSession(ctx, "hb"); err != nil {
		t.Fatal(err)
	}
	if err := def.SetConsoleSessionViewing(ctx, "hb", "default"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default switches b's console session: %v", err)
	}
	if cs, err := b.GetConsoleSession(ctx, "hb", t0, idle); err != nil || cs.Viewing != "" {
		t.Errorf("default deleted or switched b's console session: %+v %v", cs, err)
	}
	if err := b.CreateConsoleLink(ctx, "lb", "onlyb", "", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := def.UseConsoleLink(ctx, "lb", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("default uses b's console link: %v", err)
	}
	if id, _, err := b.UseConsoleLink(ctx, "lb", t0); err != nil || id != "onlyb" {
		t.Errorf("b's link: %q %v", id, err)
	}

	// Clean-ups from any environment cover every environment.
	later := t0.Add(3 * time.Hour)
	if err := b.CreateConsoleLink(ctx, "lb2", "onlyb", "", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for name, clean := range map[string]func() (int, error){
		"refresh tokens":   func() (int, error) { return def.DeleteExpiredRefreshTokens(ctx, later) },
		"revocations":      func() (int, error) { return def.DeleteExpiredRevocations(ctx, later) },
		"console sessions": func() (int, error) { return def.DeleteExpiredConsoleSessions(ctx, later, idle) },
		"console links":    func() (int, error) { return def.DeleteExpiredConsoleLinks(ctx, later) },
		"token usage":      func() (int, error) { return def.DeleteTokenUsage(ctx, later) },
	} {
		if n, err := clean(); err != nil || n < 1 {
			t.Errorf("clean-up of %s: %d %v", name, n, err)
		}
	}
	if _, err := b.GetRefreshToken(ctx, "rb2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b's expired refresh token survived the clean-up: %v", err)
	}
	if l, _ := b.ListRevocations(ctx, t0, nil, 0); len(l) != 0 {
		t.Errorf("b's expired revocations survived the clean-up: %+v", l)
	}
	if u, _ := b.TokenUsage(ctx, t0.Add(-time.Hour), []string{"c1"}); len(u) != 0 {
		t.Errorf("b's old usage survived the clean-up: %+v", u)
	}
}
