package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store"
)

// signingKeyRow is one signing key in the list.
type signingKeyRow struct {
	keys.KeyInfo
}

// Activation is when the key began signing, or is scheduled to.
func (k signingKeyRow) Activation() time.Time {
	if k.ActivatedAt.IsZero() {
		return k.ActivateAt
	}
	return k.ActivatedAt
}

// keysPage is the data of the key list.
type keysPage struct {
	Keys []signingKeyRow
	// Algs are the algorithms a rotation may choose.
	Algs []string
	// Scheduled is the next key of a scheduled rotation (nil: none).
	Scheduled *signingKeyRow
	Timeline  timeline
}

// keyRevokePage is the data of a key's revocation confirmation.
type keyRevokePage struct {
	Key signingKeyRow
	// Replacement is the next key that takes over when the active key is
	// revoked ("" when a new key is generated for it).
	Replacement string
	// LastKey: the key is active and no next key exists, so a new key of
	// the configured algorithm is made and signs at once.
	LastKey bool
}

// rotationRefused explains a refused rotation.
const rotationRefused = "A rotation is already scheduled: the next key below is published and takes over when its activation time comes. " +
	"Wait until it signs, then rotate again; or revoke the scheduled key first if it must not sign."

// masterKeyRefused explains a key change refused because the stored keys are
// sealed under another master key.
const masterKeyRefused = "The signing keys cannot be changed: the stored keys are sealed under another master key than this server's " +
	"(they were re-sealed by `m2mauth keys rewrap` while it ran). Restart the server with the new master key, then try again."

// keyList shows the signing keys and their timeline.
func (c *Console) keyList(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showKeys(w, r, s, http.StatusOK, &view{})
}

// showKeys renders the key list into v (which may carry an alert or a
// field error of the rotation form).
func (c *Console) showKeys(w http.ResponseWriter, r *http.Request, s *session, status int, v *view) error {
	infos, err := c.keys(r.Context()).List(r.Context(), c.cfg.MaxTokenLifetime)
	if err != nil {
		return err
	}
	p := &keysPage{Algs: keys.Algorithms, Timeline: keyTimeline(infos, c.now())}
	for _, k := range infos {
		p.Keys = append(p.Keys, signingKeyRow{k})
		if k.State == store.KeyNext && p.Scheduled == nil {
			p.Scheduled = &signingKeyRow{k}
		}
	}
	v.Title, v.Section, v.Data = "Signing keys", "keys", p
	return c.show(w, r, s, status, "key_list", v)
}

// keyRotate schedules a rotation to a new key of the chosen algorithm (""
// for the configured one), published now and signing after the
// pre-publication delay.
func (c *Console) keyRotate(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	alg := r.PostForm.Get("alg")
	form := url.Values{"alg": {alg}}
	if alg != "" && !keys.ValidAlg(alg) {
		return c.showKeys(w, r, s, http.StatusBadRequest, &view{Form: form,
			Errors: map[string]string{"alg": "Choose one of " + strings.Join(keys.Algorithms, ", ") + "."}})
	}
	k, err := c.keys(ctx).Rotate(ctx, alg)
	switch {
	case errors.Is(err, keys.ErrRotationScheduled):
		return c.showKeys(w, r, s, http.StatusConflict, &view{Form: form, Alert: rotationRefused})
	case errors.Is(err, keys.ErrMasterKeyMismatch):
		c.log.ErrorContext(ctx, "signing key operation refused: the stored keys are sealed under another master key", "error", err)
		return c.showKeys(w, r, s, http.StatusConflict, &view{Form: form, Alert: masterKeyRefused})
	case err != nil:
		return err
	}
	c.log.InfoContext(ctx, "signing key rotation scheduled", "kid", k.KID, "alg", k.Alg, "activate_at", k.ActivateAt)
	return done(w, r, "/console/keys", "key-rotated")
}

// keyRevokeConfirm explains what revoking a key does and asks for its id.
func (c *Console) keyRevokeConfirm(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showKeyRevoke(w, r, s, http.StatusOK, &view{})
}

func (c *Console) showKeyRevoke(w http.ResponseWriter, r *http.Request, s *session, status int, v *view) error {
	kid := r.PathValue("kid")
	infos, err := c.keys(r.Context()).List(r.Context(), c.cfg.MaxTokenLifetime)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(infos, func(k keys.KeyInfo) bool { return k.KID == kid })
	if i < 0 {
		return &pageError{http.StatusNotFound, "There is no signing key with this id. It may have been revoked or removed already."}
	}
	p := &keyRevokePage{Key: signingKeyRow{infos[i]}}
	if p.Key.State == store.KeyActive {
		p.LastKey = true
		for _, k := range infos {
			if k.State == store.KeyNext {
				p.Replacement, p.LastKey = k.KID, false
				break
			}
		}
	}
	v.Title, v.Section, v.Data = "Revoke signing key", "keys", p
	return c.show(w, r, s, status, "key_revoke", v)
}

// keyRevoke revokes a key at once, once its id was typed to confirm.
func (c *Console) keyRevoke(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	kid := r.PathValue("kid")
	typed := strings.TrimSpace(r.PostForm.Get("confirm"))
	if typed != kid {
		msg := "Type the key id exactly as shown to confirm."
		if typed == "" {
			msg = "Type the key id to confirm."
		}
		return c.showKeyRevoke(w, r, s, http.StatusBadRequest, &view{Form: url.Values{"confirm": {typed}},
			Errors: map[string]string{"confirm": msg}})
	}
	repl, err := c.keys(ctx).Revoke(ctx, kid)
	if errors.Is(err, keys.ErrMasterKeyMismatch) {
		c.log.ErrorContext(ctx, "signing key operation refused: the stored keys are sealed under another master key", "error", err)
		return c.showKeyRevoke(w, r, s, http.StatusConflict, &view{Alert: masterKeyRefused})
	}
	if errors.Is(err, store.ErrNotFound) {
		return &pageError{http.StatusNotFound, "There is no signing key with this id. It may have been revoked or removed already."}
	}
	if err != nil {
		return err
	}
	c.log.WarnContext(ctx, "signing key revoked", "kid", kid, "replacement", repl)
	if repl != "" {
		return done(w, r, "/console/keys", "key-revoked-replaced")
	}
	return done(w, r, "/console/keys", "key-revoked")
}

// timeline is the key lifecycle drawn as bars: one row per key on a common
// time axis, in SVG user units 0..timelineWidth.
type timeline struct {
	Rows       []timelineRow
	Start, End time.Time
	NowX       float64
}

type timelineRow struct {
	KID, Short, State string
	Segs              []timelineSeg
}

// timelineSeg is one span of a key's life: class "next" (published, not
// signing), "active" (signing) or "retired" (published, no longer signing).
type timelineSeg struct {
	Class, Title string
	X, W         float64
}

const timelineWidth = 1000.0

// keyTimeline lays the keys out on a time axis that covers every known
// instant of their lives and now, oldest key first.
func keyTimeline(infos []keys.KeyInfo, now time.Time) timeline {
	if len(infos) == 0 {
		return timeline{}
	}
	start, end := now, now
	// handover is when the active key stops signing: the earliest next
	// key's activation (zero: not scheduled).
	var handover time.Time
	for _, k := range infos {
		for _, t := range []time.Time{k.CreatedAt, k.ActivateAt, k.ActivatedAt, k.RetiredAt, k.RemoveAt, k.TokensLiveUntil} {
			if t.IsZero() {
				continue
			}
			if t.Before(start) {
				start = t
			}
			if t.After(end) {
				end = t
			}
		}
		if k.State == store.KeyNext && (handover.IsZero() || k.ActivateAt.Before(handover)) {
			handover = k.ActivateAt
		}
	}
	span := end.Sub(start)
	if span < time.Hour {
		span = time.Hour
	}
	end = start.Add(span + span/20) // room after the last instant
	tl := timeline{Start: start, End: end}
	x := func(t time.Time) float64 {
		return float64(t.Sub(start)) / float64(end.Sub(start)) * timelineWidth
	}
	tl.NowX = x(now)
	for i := len(infos) - 1; i >= 0; i-- { // List is newest first
		k := infos[i]
		row := timelineRow{KID: k.KID, Short: shortKID(k.KID), State: k.State}
		add := func(class string, from, to time.Time, title string) {
			if from.IsZero() || !to.After(from) {
				return
			}
			w := x(to) - x(from)
			if w < 2 {
				w = 2 // visible however short
			}
			row.Segs = append(row.Segs, timelineSeg{Class: class, X: x(from), W: w, Title: title})
		}
		published := "published, not signing: " + when(k.CreatedAt) + " to "
		switch k.State {
		case store.KeyNext:
			add("next", k.CreatedAt, k.ActivateAt, published+when(k.ActivateAt))
			add("active", k.ActivateAt, end, "signs from "+when(k.ActivateAt))
		case store.KeyActive:
			add("next", k.CreatedAt, k.ActivatedAt, published+when(k.ActivatedAt))
			until, title := end, "signing since "+when(k.ActivatedAt)
			if !handover.IsZero() {
				until, title = handover, "signs from "+when(k.ActivatedAt)+" to "+when(handover)
			}
			add("active", k.ActivatedAt, until, title)
		case store.KeyRetired:
			add("next", k.CreatedAt, k.ActivatedAt, published+when(k.ActivatedAt))
			add("active", k.ActivatedAt, k.RetiredAt, "signed from "+when(k.ActivatedAt)+" to "+when(k.RetiredAt))
			add("retired", k.RetiredAt, k.RemoveAt, "retired, still published until "+when(k.RemoveAt))
		}
		tl.Rows = append(tl.Rows, row)
	}
	return tl
}

// shortKID abbreviates a key id (a 43-character thumbprint) for a label.
func shortKID(kid string) string {
	if len(kid) <= 10 {
		return kid
	}
	return kid[:8] + "…"
}

// keys is the key manager of the environment the page acts in (the
// configured one when the context carries none).
func (c *Console) keys(ctx context.Context) keyManager {
	if e := env.FromContext(ctx); e != nil && e.Keys != nil {
		return e.Keys
	}
	return c.cfg.Keys
}
