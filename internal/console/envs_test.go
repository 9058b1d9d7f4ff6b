package console_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/env"
)

// An environment admin signs in with the form's environment field, in
// that environment; its cookie names it, and the same cookie naming
// another environment is no session.
func TestConsoleEnvSignInAndCookie(t *testing.T) {
	h := newEnvHarness(t)
	id, sec := h.adminClient("staging", false)
	h.app("staging", "staging worker")
	h.app("default", "default worker")

	b := h.browser()
	// The field defaults to the entry environment.
	if _, page, _ := b.get("/console/sign-in"); inputValue(page, "environment") != "default" {
		t.Errorf("sign-in form's environment: %q", inputValue(page, "environment"))
	}
	// Checked in the environment named: not in the default one.
	if status, page, _ := b.signIn("default", id, sec); status != http.StatusUnauthorized || !strings.Contains(page, "The environment, client id or secret is wrong") {
		t.Fatalf("staging's admin signed in to default: %d", status)
	}
	if status, _, _ := b.signIn("nowhere", id, sec); status != http.StatusUnauthorized {
		t.Fatalf("unknown environment: %d, want 401 (said as wrong credentials)", status)
	}
	if status, page, _ := b.signIn("Not A Name", id, sec); status != http.StatusBadRequest || fieldError(page, "environment-err") == "" {
		t.Fatalf("malformed environment: %d", status)
	}
	status, page, at := b.signIn("staging", id, sec)
	if status != http.StatusOK || at != "/console/" || viewing(page) != "staging" || !strings.Contains(page, "Staging area") {
		t.Fatalf("sign-in to staging: %d at %s, viewing %q", status, at, viewing(page))
	}
	if got := h.signer.asked; !slices.Equal(got, []string{"default", "staging"}) {
		t.Errorf("the signer was asked in %v, want [default staging]", got)
	}
	ck := b.cookie()
	if !strings.HasPrefix(ck, "staging.m2mcs_") {
		t.Fatalf("cookie %q", ck)
	}
	_, page, _ = b.get("/console/apps")
	if !strings.Contains(page, "staging worker") || strings.Contains(page, "default worker") {
		t.Fatalf("staging's applications page: %s", page)
	}

	// The same random part under another environment's name (or none).
	rnd := strings.TrimPrefix(ck, "staging.")
	for _, forged := range []string{"default." + rnd, "nowhere." + rnd, rnd} {
		b.setCookie(forged)
		if _, _, at := b.get("/console/apps"); !strings.HasPrefix(at, "/console/sign-in") {
			t.Errorf("cookie %.20q…: at %s, want the sign-in page", forged, at)
		}
	}
	b.setCookie(ck)
	if _, _, at := b.get("/console/apps"); at != "/console/apps" {
		t.Errorf("the real cookie again: at %s", at)
	}
}

// An environment admin views its own environment only: no switcher, and a
// switch or an environments page is refused.
func TestConsoleEnvAdminCannotSwitch(t *testing.T) {
	h := newEnvHarness(t)
	id, sec := h.adminClient("staging", false)
	b := h.browser()
	if _, page, _ := b.signIn("staging", id, sec); strings.Contains(page, `id="env-switch"`) || strings.Contains(page, `href="/console/environments"`) {
		t.Fatal("an environment admin is offered the switcher")
	}
	status, page, _ := b.post("/console/environment", url.Values{"to": {"default"}})
	if status != http.StatusForbidden || !strings.Contains(page, "Only a deployment admin") {
		t.Fatalf("switch to default: %d", status)
	}
	if _, page, _ := b.get("/console/apps"); viewing(page) != "staging" {
		t.Errorf("after a refused switch: viewing %q", viewing(page))
	}
	for _, path := range []string{"/console/environments", "/console/environment/staging/delete"} {
		if status, _, _ := b.get(path); status != http.StatusForbidden {
			t.Errorf("GET %s: %d, want 403", path, status)
		}
	}
	if status, _, _ := b.post("/console/environments", url.Values{"name": {"qa"}}); status != http.StatusForbidden {
		t.Errorf("create an environment: %d, want 403", status)
	}
	if _, err := h.db.GetEnvironment(context.Background(), "qa"); err == nil {
		t.Error("an environment admin created an environment")
	}
}

// A deployment admin switches environments and sees the other one's
// applications; a form of a page shown before the switch is refused and
// changes nothing.
func TestConsoleDeploymentAdminSwitches(t *testing.T) {
	h := newEnvHarness(t)
	id, sec := h.adminClient("default", true)
	defApp := h.app("default", "default worker")
	h.app("staging", "staging worker")
	b := h.browser()
	_, page, _ := b.signIn("default", id, sec)
	if viewing(page) != "default" || !strings.Contains(page, `id="env-switch"`) || !strings.Contains(page, `<option value="staging">staging — Staging area</option>`) {
		t.Fatalf("deployment admin's header: %s", page)
	}
	// A page in default, kept open in a tab.
	_, appPage, _ := b.get("/console/app/" + defApp)
	if inputValue(appPage, "env") != "default" {
		t.Fatalf("the detail page's forms carry env %q", inputValue(appPage, "env"))
	}

	status, page, at := b.post("/console/environment", url.Values{"to": {"staging"}})
	if status != http.StatusOK || at != "/console/?done=env-switched" || viewing(page) != "staging" {
		t.Fatalf("switch: %d at %s, viewing %q", status, at, viewing(page))
	}
	_, page, _ = b.get("/console/apps")
	if !strings.Contains(page, "staging worker") || strings.Contains(page, "default worker") {
		t.Fatalf("staging's applications: %s", page)
	}

	// The old tab's disable form: refused, nothing disabled anywhere.
	status, page, _ = b.post("/console/app/"+defApp+"/disable", url.Values{"env": {"default"}})
	if status != http.StatusConflict || !strings.Contains(page, "Nothing was changed") || !strings.Contains(page, `href="/console/"`) {
		t.Fatalf("stale form: %d %s", status, page)
	}
	if cl, err := h.env("default").Store.GetClient(context.Background(), defApp); err != nil || cl.Disabled {
		t.Fatalf("the stale form disabled the application: %+v %v", cl, err)
	}
	// A form without the field is refused too.
	f := url.Values{"csrf": {b.csrf}}
	if status, _, _ := b.read(b.http.PostForm(h.url+"/console/app/"+defApp+"/disable", f)); status != http.StatusConflict {
		t.Errorf("form without env: %d", status)
	}

	// Back to default: the same form now works.
	if status, _, _ := b.post("/console/environment", url.Values{"to": {"default"}}); status != http.StatusOK {
		t.Fatal("switch back")
	}
	if status, _, at := b.post("/console/app/"+defApp+"/disable", url.Values{"env": {"default"}}); status != http.StatusOK || !strings.Contains(at, "done=app-disabled") {
		t.Fatalf("disable in the right environment: %d at %s", status, at)
	}
	if status, _, _ := b.post("/console/environment", url.Values{"to": {"nowhere"}}); status != http.StatusNotFound {
		t.Errorf("switch to an unknown environment: %d", status)
	}
}

// A session viewing an environment that is deleted falls back to its home
// with a notice; an environment admin's sessions end with its environment.
func TestConsoleViewedEnvDeleted(t *testing.T) {
	h := newEnvHarness(t)
	ctx := context.Background()
	id, sec := h.adminClient("default", true)
	sid, ssec := h.adminClient("staging", false)
	dep, stg := h.browser(), h.browser()
	dep.signIn("default", id, sec)
	stg.signIn("staging", sid, ssec)
	if status, _, _ := dep.post("/console/environment", url.Values{"to": {"staging"}}); status != http.StatusOK {
		t.Fatal("switch")
	}
	e, err := h.db.GetEnvironment(ctx, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.db.DeleteEnvironment(ctx, "staging", e.Version); err != nil {
		t.Fatal(err)
	}
	_, page, at := dep.get("/console/apps")
	if at != "/console/apps" || viewing(page) != "default" || !strings.Contains(page, "The environment staging you were viewing no longer exists") {
		t.Fatalf("after deletion: at %s viewing %q", at, viewing(page))
	}
	if _, page, _ := dep.get("/console/apps"); strings.Contains(page, "no longer exists") {
		t.Error("the notice is shown again")
	}
	if _, _, at := stg.get("/console/apps"); !strings.HasPrefix(at, "/console/sign-in") {
		t.Errorf("staging's admin after its environment was deleted: at %s", at)
	}
}

// A link made on an environment's admin API by a deployment admin signs
// it in (home: default) viewing that environment; an environment admin's
// link signs it in to its own.
func TestConsoleLinkViewsTheRequestEnv(t *testing.T) {
	h := newEnvHarness(t)
	ctx := context.Background()
	id, _ := h.adminClient("default", true)
	sid, _ := h.adminClient("staging", false)
	h.app("staging", "staging worker")
	onStaging := env.NewContext(ctx, h.env("staging"))
	cases := []struct {
		name, client, cookieEnv string
	}{
		{"deployment admin", id, "default"},
		{"environment admin", sid, "staging"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			link, _, err := h.console.NewLinkIn(onStaging, tc.client, tc.cookieEnv)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(link)
			token := u.Query().Get("token")
			if u.Scheme+"://"+u.Host != h.url || u.Path != "/console/link" || !strings.HasPrefix(token, tc.cookieEnv+".m2mcl_") {
				t.Fatalf("link %s", link)
			}
			// Under another environment's name the token is no link.
			b := h.browser()
			forged := "nowhere" + strings.TrimPrefix(token, tc.cookieEnv)
			if _, _, at := b.read(b.http.PostForm(h.url+"/console/link", url.Values{"token": {forged}})); !strings.Contains(at, "why=link") {
				t.Fatalf("forged link: at %s", at)
			}
			status, page, at := b.read(b.http.PostForm(h.url+"/console/link", url.Values{"token": {token}}))
			if status != http.StatusOK || at != "/console/" || viewing(page) != "staging" {
				t.Fatalf("link: %d at %s viewing %q", status, at, viewing(page))
			}
			if !strings.HasPrefix(b.cookie(), tc.cookieEnv+".m2mcs_") {
				t.Errorf("cookie %q", b.cookie())
			}
			if _, page, _ := b.get("/console/apps"); !strings.Contains(page, "staging worker") {
				t.Error("not acting in staging")
			}
		})
	}
}

// A deployment admin lists, creates and deletes environments (after a
// confirmation that says what goes with them).
func TestConsoleEnvironmentsPage(t *testing.T) {
	h := newEnvHarness(t)
	ctx := context.Background()
	id, sec := h.adminClient("default", true)
	b := h.browser()
	b.signIn("default", id, sec)
	status, page, at := b.post("/console/environments", url.Values{"name": {"qa"}, "display_name": {"QA"}})
	if status != http.StatusOK || !strings.Contains(at, "done=env-created") || !strings.Contains(page, "<code>qa</code>") {
		t.Fatalf("create: %d at %s", status, at)
	}
	for _, bad := range []string{"QA", "-x", "default", "qa"} {
		if status, _, _ := b.post("/console/environments", url.Values{"name": {bad}}); status != http.StatusBadRequest && status != http.StatusConflict {
			t.Errorf("create %q: %d", bad, status)
		}
	}
	if _, page, _ := b.get("/console/environments?q=stag"); !strings.Contains(page, "<code>staging</code>") || strings.Contains(page, "<code>qa</code>") {
		t.Error("search")
	}
	h.app("staging", "doomed")
	status, page, _ = b.get("/console/environment/staging/delete")
	if status != http.StatusOK || !strings.Contains(page, "1 application,") || !strings.Contains(page, "1 API ") || !strings.Contains(page, `id="confirm-delete"`) {
		t.Fatalf("confirmation: %d %s", status, page)
	}
	if _, err := h.db.GetEnvironment(ctx, "staging"); err != nil {
		t.Fatal("the confirmation page deleted it")
	}
	if status, _, _ := b.post("/console/environment/staging/delete", url.Values{"version": {"99"}}); status != http.StatusConflict {
		t.Errorf("stale version: %d", status)
	}
	status, _, at = b.post("/console/environment/staging/delete", url.Values{"version": {inputValue(page, "version")}})
	if status != http.StatusOK || !strings.Contains(at, "done=env-deleted") {
		t.Fatalf("delete: %d at %s", status, at)
	}
	if _, err := h.db.GetEnvironment(ctx, "staging"); err == nil {
		t.Error("staging still exists")
	}
	if status, _, _ := b.get("/console/environment/default/delete"); status != http.StatusConflict {
		t.Errorf("delete default: %d", status)
	}
}
