package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
)

// Windows of the overview.
const (
	usageHours     = 24                  // the usage charts' span, in hours
	expiryHorizon  = 30 * 24 * time.Hour // secrets expiring within this are listed
	expiredShown   = 7 * 24 * time.Hour  // and those that expired this recently
	overviewTopN   = 10                  // applications in the usage table
	expiringListed = 10
)

// appUsage is one application's issued tokens over the last day.
type appUsage struct {
	ClientID, Name string
	Missing        bool // the client no longer exists
	ThisHour, Day  int64
	Hours          [usageHours]int64 // oldest first; the last is this hour
	Spark          spark
}

// spark is a small inline SVG chart of hourly counts.
type spark struct {
	Path  string // the line's d attribute
	Bars  []bar
	Max   int64
	Label string // what it shows, for screen readers
}

type bar struct{ X, Y, W, H float64 }

// overviewData is the overview page.
type overviewData struct {
	Counts        store.Counts
	Keys          []keys.KeyInfo
	Active        *keys.KeyInfo
	Next          *keys.KeyInfo
	ThisHour, Day int64
	Total         spark
	Apps          []appUsage
	Expiring      []store.SecretExpiry
	Now           time.Time
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	e := env.FromContext(ctx)
	if c.cfg.Flush != nil {
		if err := c.cfg.Flush(ctx); err != nil {
			c.log.WarnContext(ctx, "console: flush usage before the overview", "error", err)
		}
	}
	now := c.now().UTC()
	d := overviewData{Now: now}
	var err error
	if d.Counts, err = e.Store.Counts(ctx); err != nil {
		return err
	}
	if d.Keys, err = c.cfg.Keys.List(ctx, c.cfg.MaxTokenLifetime); err != nil {
		return err
	}
	for i := range d.Keys {
		switch d.Keys[i].State {
		case store.KeyActive:
			d.Active = &d.Keys[i]
		case store.KeyNext:
			d.Next = &d.Keys[i]
		}
	}
	if d.Expiring, err = e.Store.ExpiringSecrets(ctx, now.Add(-expiredShown), now.Add(expiryHorizon), expiringListed); err != nil {
		return err
	}
	if err := c.usage(ctx, e, now, &d); err != nil {
		return err
	}
	return c.show(w, r, s, http.StatusOK, "overview", &view{Title: "Overview", Section: "overview", Data: d})
}

// usage fills the token counts: totals, and the applications that got
// the most tokens in the last day.
func (c *Console) usage(ctx context.Context, e *env.Env, now time.Time, d *overviewData) error {
	thisHour := now.Truncate(time.Hour)
	first := thisHour.Add(-(usageHours - 1) * time.Hour)
	counts, err := e.Store.TokenUsage(ctx, first)
	if err != nil {
		return err
	}
	var total [usageHours]int64
	byClient := map[string]*appUsage{}
	var apps []*appUsage
	for _, u := range counts {
		i := int(u.Hour.Sub(first) / time.Hour)
		if i < 0 || i >= usageHours {
			continue // a replica's clock ahead of this one's
		}
		a := byClient[u.ClientID]
		if a == nil {
			a = &appUsage{ClientID: u.ClientID}
			byClient[u.ClientID] = a
			apps = append(apps, a)
		}
		a.Hours[i] += u.Tokens
		a.Day += u.Tokens
		total[i] += u.Tokens
		d.Day += u.Tokens
	}
	d.ThisHour = total[usageHours-1]
	d.Total = newSpark(total[:], 600, 80, "tokens issued per hour, last 24 hours")
	slices.SortFunc(apps, func(a, b *appUsage) int {
		if a.Day != b.Day {
			return int(b.Day - a.Day)
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
	for _, a := range apps[:min(len(apps), overviewTopN)] {
		a.ThisHour = a.Hours[usageHours-1]
		a.Spark = newSpark(a.Hours[:], 120, 28, "tokens per hour")
		cl, err := e.Clients.GetClient(ctx, a.ClientID)
		switch {
		case err == nil:
			a.Name = cl.Name
		case isNotFound(err):
			a.Missing = true
		default:
			return err
		}
		d.Apps = append(d.Apps, *a)
	}
	return nil
}

// newSpark draws counts (oldest first) into a width × height box: bars
// and a line over them.
func newSpark(counts []int64, width, height float64, label string) spark {
	sp := spark{Label: label}
	for _, n := range counts {
		sp.Max = max(sp.Max, n)
	}
	step := width / float64(len(counts))
	var path strings.Builder
	for i, n := range counts {
		h := 0.0
		if sp.Max > 0 {
			h = float64(n) / float64(sp.Max) * (height - 2)
		}
		x, y := float64(i)*step, height-h
		sp.Bars = append(sp.Bars, bar{X: x + step*0.1, Y: y, W: step * 0.8, H: h})
		cmd := "L"
		if i == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, x+step/2, y)
	}
	sp.Path = strings.TrimSpace(path.String())
	return sp
}
