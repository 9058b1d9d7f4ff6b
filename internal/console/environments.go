package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/m2mauth/m2mauth/internal/admin"
	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/store"
)

// deploymentScope is the scope on the default environment's admin API that
// makes an admin client a deployment admin, who may view and manage every
// environment.
const deploymentScope = admin.DeploymentScope

func validEnvName(name string) bool { return env.ValidName(name) }

// envName is e's name (an environment without one is the default one).
func envName(e *env.Env) string {
	if e == nil || e.Name == "" {
		return store.DefaultEnv
	}
	return e.Name
}

// isDeploymentAdmin reports whether cl, an admin client of home, is a
// deployment admin: a client of the default environment holding the
// scopes admin and deployment on its admin API.
func isDeploymentAdmin(cl store.Client, home *env.Env) bool {
	if envName(home) != store.DefaultEnv || cl.Disabled {
		return false
	}
	aud := home.AdminAudience()
	return slices.ContainsFunc(cl.Grants, func(g store.Grant) bool {
		return g.Audience == aud && slices.Contains(g.Scopes, admin.AdminScope) && slices.Contains(g.Scopes, deploymentScope)
	})
}

// envNamed returns the environment named (an error wrapping
// store.ErrNotFound when there is none). Without a resolver only the
// request's own environment is known.
func (c *Console) envNamed(ctx context.Context, name string) (*env.Env, error) {
	if !validEnvName(name) {
		return nil, fmt.Errorf("environment %q: %w", name, store.ErrNotFound)
	}
	if c.cfg.Envs != nil {
		return c.cfg.Envs.Env(ctx, name)
	}
	if e := env.FromContext(ctx); e != nil && envName(e) == name {
		return e, nil
	}
	return nil, fmt.Errorf("environment %q: %w", name, store.ErrNotFound)
}

// environments manages the deployment's environments: the server passes
// ServiceEnvironments; without it (tests), the default environment's store
// does the work.
type environments interface {
	ListEnvironments(ctx context.Context, opts store.ListOptions) ([]store.Environment, error)
	GetEnvironment(ctx context.Context, name string) (store.Environment, error)
	CreateEnvironment(ctx context.Context, e store.Environment) error
	DeleteEnvironment(ctx context.Context, name string, version int64) error
}

// envAdmin returns what manages environments.
func (c *Console) envAdmin(ctx context.Context) (environments, error) {
	if c.cfg.Environments != nil {
		return c.cfg.Environments, nil
	}
	d, err := c.envNamed(ctx, store.DefaultEnv)
	if err != nil {
		// Without a resolver, the request's environment's store holds the
		// (deployment-wide) table of environments.
		if e := env.FromContext(ctx); e != nil && errors.Is(err, store.ErrNotFound) {
			return e.Store, nil
		}
		return nil, err
	}
	return d.Store, nil
}

// switcherSize is how many environments the header's switcher lists; the
// environments page finds the others.
const switcherSize = 200

// envHeader fills what the layout shows of the environments: the one
// viewed (name, display name) and, for a deployment admin, the switcher's
// choices.
func (c *Console) envHeader(ctx context.Context, s *session) error {
	ea, err := c.envAdmin(ctx)
	if err != nil {
		return err
	}
	name := envName(s.viewing)
	s.header = envHeader{Name: name, Deployment: s.deployment}
	if e, err := ea.GetEnvironment(ctx, name); err == nil {
		s.header.DisplayName = e.DisplayName
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if !s.deployment {
		return nil
	}
	list, err := ea.ListEnvironments(ctx, store.ListOptions{Limit: switcherSize + 1})
	if err != nil {
		return err
	}
	if len(list) > switcherSize {
		list, s.header.More = list[:switcherSize], true
	}
	if !slices.ContainsFunc(list, func(e store.Environment) bool { return e.Name == name }) {
		list = append(list, store.Environment{Name: name, DisplayName: s.header.DisplayName})
	}
	s.header.Choices = list
	return nil
}

// envHeader is the layout's environment part.
type envHeader struct {
	Name, DisplayName string
	Deployment        bool
	Choices           []store.Environment // the switcher's (deployment admins)
	More              bool                // more environments than Choices
}

// switchEnv changes the environment the session views. An environment
// admin views its own only.
func (c *Console) switchEnv(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	to := strings.TrimSpace(r.PostForm.Get("to"))
	if to == envName(s.viewing) {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return nil
	}
	if !s.deployment && to != envName(s.home) {
		return &pageError{status: http.StatusForbidden, msg: "Only a deployment admin can view other environments: this admin client belongs to the environment " + envName(s.home) + "."}
	}
	if _, err := c.envNamed(ctx, to); errors.Is(err, store.ErrNotFound) {
		return &pageError{status: http.StatusNotFound, msg: "There is no environment named " + strconv.Quote(to) + ". It may have been deleted."}
	} else if err != nil {
		return err
	}
	viewing := to
	if to == envName(s.home) {
		viewing = ""
	}
	if err := s.home.Store.SetConsoleSessionViewing(ctx, s.hash, viewing); err != nil {
		return err
	}
	c.log.InfoContext(ctx, "console: environment switched", "client_id", s.clientID, "viewing", to)
	return done(w, r, Prefix, "env-switched")
}

// requireDeployment refuses a page to an environment admin.
func requireDeployment(s *session) error {
	if !s.deployment {
		return &pageError{status: http.StatusForbidden, msg: "Only a deployment admin (an admin client of the default environment with the deployment scope) manages environments."}
	}
	return nil
}

const envPageSize = 50

// envListData is the environments page's.
type envListData struct {
	Items []store.Environment
	Q     string
	Pager pager
}

func (c *Console) envList(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireDeployment(s); err != nil {
		return err
	}
	return c.showEnvList(w, r, s, http.StatusOK, &view{})
}

// showEnvList renders the environments page with v (a refilled create
// form and its errors, or nothing).
func (c *Console) showEnvList(w http.ResponseWriter, r *http.Request, s *session, status int, v *view) error {
	ctx := r.Context()
	ea, err := c.envAdmin(ctx)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	after := q.Get("after")
	d := &envListData{Q: strings.TrimSpace(q.Get("q"))}
	list, err := ea.ListEnvironments(ctx, store.ListOptions{Limit: envPageSize + 1, After: after, NameContains: d.Q})
	if err != nil {
		return err
	}
	next := ""
	if len(list) > envPageSize {
		list, next = list[:envPageSize], list[envPageSize-1].Name
	}
	d.Items = list
	keep := url.Values{}
	if d.Q != "" {
		keep.Set("q", d.Q)
	}
	d.Pager = pageLinks(Prefix+"environments", keep, after != "", next)
	v.Title, v.Section, v.Data = "Environments", "environments", d
	return c.show(w, r, s, status, "env_list", v)
}

// Limits of an environment's display name.
const maxEnvDisplayName = 100

func (c *Console) envCreate(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireDeployment(s); err != nil {
		return err
	}
	ctx := r.Context()
	f := r.PostForm
	name, display := strings.TrimSpace(f.Get("name")), strings.TrimSpace(f.Get("display_name"))
	v := &view{Form: url.Values{"name": {name}, "display_name": {display}}, Errors: map[string]string{}}
	if !validEnvName(name) {
		v.Errors["name"] = "A name is 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash (it is a host name label), such as staging."
	} else if name == store.DefaultEnv {
		v.Errors["name"] = "The default environment always exists."
	}
	if display == "" {
		display = name
	}
	if n := utf8.RuneCountInString(display); n > maxEnvDisplayName || !printable(display) {
		v.Errors["display_name"] = "A display name is up to 100 printable characters."
	}
	if len(v.Errors) > 0 {
		return c.showEnvList(w, r, s, http.StatusBadRequest, v)
	}
	ea, err := c.envAdmin(ctx)
	if err != nil {
		return err
	}
	now := c.now()
	err = ea.CreateEnvironment(ctx, store.Environment{Name: name, DisplayName: display, CreatedAt: now, UpdatedAt: now})
	if errors.Is(err, store.ErrConflict) {
		v.Errors["name"] = "There is already an environment named " + name + "."
		return c.showEnvList(w, r, s, http.StatusConflict, v)
	}
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "console: environment created", "client_id", s.clientID, "environment", name)
	return done(w, r, Prefix+"environments", "env-created")
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// envDeleteData is the deletion's confirmation page's: what will be
// deleted with the environment.
type envDeleteData struct {
	Env      store.Environment
	Counts   store.Counts
	Viewed   bool // the session views it
	Conflict bool // it changed since the confirmation was shown
}

// envToDelete loads an environment about to be deleted and what it holds.
func (c *Console) envToDelete(ctx context.Context, s *session, name string) (*envDeleteData, error) {
	if err := requireDeployment(s); err != nil {
		return nil, err
	}
	if name == store.DefaultEnv {
		return nil, &pageError{status: http.StatusConflict, msg: "The default environment cannot be deleted."}
	}
	ea, err := c.envAdmin(ctx)
	if err != nil {
		return nil, err
	}
	e, err := ea.GetEnvironment(ctx, name)
	if err != nil {
		return nil, err
	}
	d := &envDeleteData{Env: e, Viewed: name == envName(s.viewing)}
	// Counted through the database, without loading the environment (its
	// keys and caches) only to delete it.
	de, err := c.envNamed(ctx, store.DefaultEnv)
	if err != nil {
		return nil, err
	}
	st := de.Store.InEnv(name)
	if d.Counts, err = st.Counts(ctx); err != nil {
		return nil, err
	}
	// Its built-in admin API comes and goes with it: not counted.
	if iss := c.svc.EnvIssuer(name); iss != "" {
		if a, err := st.GetAPI(ctx, iss+"/admin"); err == nil && a.Builtin != "" {
			d.Counts.APIs--
		}
	}
	return d, nil
}

func (c *Console) envDeleteConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := c.envToDelete(r.Context(), s, r.PathValue("name"))
	if err != nil {
		return err
	}
	return c.show(w, r, s, http.StatusOK, "env_delete", &view{Title: "Delete environment " + d.Env.Name, Section: "environments", Data: d})
}

func (c *Console) envDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	name := r.PathValue("name")
	d, err := c.envToDelete(ctx, s, name)
	if err != nil {
		return err
	}
	version, _ := strconv.ParseInt(r.PostForm.Get("version"), 10, 64)
	ea, err := c.envAdmin(ctx)
	if err != nil {
		return err
	}
	if version != d.Env.Version {
		d.Conflict = true
		return c.show(w, r, s, http.StatusConflict, "env_delete", &view{Title: "Delete environment " + name, Section: "environments", Data: d})
	}
	err = ea.DeleteEnvironment(ctx, name, version)
	if errors.Is(err, store.ErrConflict) {
		if d, err = c.envToDelete(ctx, s, name); err != nil {
			return err
		}
		d.Conflict = true
		return c.show(w, r, s, http.StatusConflict, "env_delete", &view{Title: "Delete environment " + name, Section: "environments", Data: d})
	}
	if err != nil {
		return err
	}
	c.log.InfoContext(ctx, "console: environment deleted", "client_id", s.clientID, "environment", name)
	// The session was viewing it: back home (the next request would say
	// so; this was deliberate).
	if d.Viewed {
		if err := s.home.Store.SetConsoleSessionViewing(ctx, s.hash, ""); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return done(w, r, Prefix+"environments", "env-deleted")
}

// ServiceEnvironments manages environments through the admin service (its
// validation, the new environment's built-in admin API, the two-step
// deletion), telling changed (may be nil) of each change.
func ServiceEnvironments(svc *admin.Service, changed func(name string)) environments {
	if changed == nil {
		changed = func(string) {}
	}
	return serviceEnvironments{svc, changed}
}

type serviceEnvironments struct {
	svc     *admin.Service
	changed func(string)
}

func (s serviceEnvironments) ListEnvironments(ctx context.Context, opts store.ListOptions) ([]store.Environment, error) {
	p, err := s.svc.ListEnvironments(ctx, opts)
	return p.Items, err
}

func (s serviceEnvironments) GetEnvironment(ctx context.Context, name string) (store.Environment, error) {
	return s.svc.GetEnvironment(ctx, name)
}

func (s serviceEnvironments) CreateEnvironment(ctx context.Context, e store.Environment) error {
	if _, err := s.svc.CreateEnvironment(ctx, admin.EnvironmentInput{Name: e.Name, DisplayName: e.DisplayName}); err != nil {
		return err
	}
	s.changed(e.Name)
	return nil
}

// DeleteEnvironment deletes the environment if it is still at version (the
// one the confirmation page showed): the console's confirmation page is the
// first of the two steps.
func (s serviceEnvironments) DeleteEnvironment(ctx context.Context, name string, version int64) error {
	d, err := s.svc.PrepareEnvironmentDeletion(ctx, name)
	if err != nil {
		return err
	}
	if d.Environment.Version != version {
		return fmt.Errorf("environment %s changed since its deletion was confirmed: %w", name, store.ErrConflict)
	}
	if err := s.svc.DeleteEnvironment(ctx, name, d.Confirmation); err != nil {
		return err
	}
	s.changed(name)
	return nil
}
