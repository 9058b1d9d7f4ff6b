package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	if d.Counts, err = c.svc.Counts(ctx); err != nil {
		return err
	}
	if d.Keys, err = c.keys(ctx).List(ctx, c.cfg.MaxTokenLifetime); err != nil {
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
	if d.Expiring, err = c.svc.ExpiringSecrets(ctx, now.Add(-expiredShown), now.Add(expiryHorizon), expiringListed); err != nil {
		return err
	}
	if err := c.usage(ctx, e, now, &d); err != nil {
		return err
	}
	return c.show(w, r, s, http.StatusOK, "overview", &view{Title: "Overview", Section: "overview", Data: d})
}

// usage fills the token counts: totals per hour, and the applications
// that got the most tokens in the last day, aggregated by the database.
func (c *Console) usage(ctx context.Context, e *env.Env, now time.Time, d *overviewData) error {
	thisHour := now.Truncate(time.Hour)
	first := thisHour.Add(-(usageHours - 1) * time.Hour)
	rep, err := c.svc.TokenUsage(ctx, first, overviewTopN)
	if err != nil {
		return err
	}
	// hourIndex places an hour in the chart (false: outside it, e.g. a
	// replica's clock ahead of this one's).
	hourIndex := func(h time.Time) (int, bool) {
		i := int(h.Sub(first) / time.Hour)
		return i, i >= 0 && i < usageHours
	}
	var total [usageHours]int64
	for _, u := range rep.ByHour {
		if i, ok := hourIndex(u.Hour); ok {
			total[i] += u.Tokens
			d.Day += u.Tokens
		}
	}
	d.ThisHour = total[usageHours-1]
	d.Total = newSpark(total[:], 600, 80, "tokens issued per hour, last 24 hours")
	apps := make([]appUsage, len(rep.Top))
	byClient := make(map[string]*appUsage, len(rep.Top))
	for i, t := range rep.Top {
		apps[i] = appUsage{ClientID: t.ClientID}
		byClient[t.ClientID] = &apps[i]
	}
	for _, u := range rep.Hours {
		a, known := byClient[u.ClientID]
		if i, ok := hourIndex(u.Hour); ok && known {
			a.Hours[i] += u.Tokens
			a.Day += u.Tokens
		}
	}
	for i := range apps {
		a := &apps[i]
		a.ThisHour = a.Hours[usageHours-1]
		a.Spark = newSpark(a.Hours[:], 120, 28, "tokens per hour")
		cl, err := e.Clients.GetClient(ctx, a.ClientID)
		switch {
		case err == nil:
			a.Name = cl.Name
		case errors.Is(err, store.ErrNotFound):
			a.Missing = true
		default:
			return err
		}
	}
	d.Apps = apps
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
