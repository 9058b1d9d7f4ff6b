// Package audit is the audit trail: who changed what in the management of
// an environment, which tokens were issued and which client
// authentications failed. A Recorder takes events from the request paths
// without blocking them (token events are a small value on a bounded
// queue; a full queue drops and counts), writes them to the database in
// batches from one goroutine, and streams them as JSON lines to sinks
// (stdout, a file, an HTTP webhook), each behind its own bounded queue so
// that a slow sink never holds up the database writer or a request.
//
// Events carry no secret, token, hash or private key: token events name
// only the client (oauth.Outcome.ClientID, an existing client's id), and
// management events carry a diff of allow-listed fields (Diff).
package audit

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"slices"
	"time"

	"github.com/m2mauth/m2mauth/internal/store"
)

// System is the actor of work nobody asked for: scheduled key rotation and
// the rest of the signing key lifecycle.
const System = "system"

type actorKey struct{}

type actor struct{ id, ip string }

// WithActor returns ctx naming who acts in the changes made with it (an
// admin client id, "console:<client id>") and from where: remoteAddr is
// the request's RemoteAddr, of which only the host is kept.
func WithActor(ctx context.Context, id, remoteAddr string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor{id: id, ip: hostOf(remoteAddr)})
}

// ActorFrom returns the actor and source IP ctx carries; without one, the
// actor is System.
func ActorFrom(ctx context.Context) (id, ip string) {
	a, ok := ctx.Value(actorKey{}).(actor)
	if !ok || a.id == "" {
		return System, a.ip
	}
	return a.id, a.ip
}

// hostOf is the host part of a host:port address (the whole of anything
// else).
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// Fields are the allow-listed fields of a record, as they appear in a
// diff: only what is neither a secret, a hash nor a private key.
type Fields map[string]any

// Change is one field's value before and after a change (absent on
// creation or deletion).
type Change struct {
	Before any `json:"before,omitempty"`
	After  any `json:"after,omitempty"`
}

// Diff returns the JSON object of the fields that differ between before and
// after (nil before: a creation, every field of after; nil after: a
// deletion, every field of before), or nil when none does.
func Diff(before, after Fields) []byte {
	out := map[string]Change{}
	for k, b := range before {
		a, ok := after[k]
		if after != nil && ok && equal(a, b) {
			continue
		}
		c := Change{Before: b}
		if ok {
			c.After = a
		}
		out[k] = c
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			out[k] = Change{After: a}
		}
	}
	if len(out) == 0 {
		return nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	return b
}

// equal compares field values by their JSON form, so that nil and empty
// collections of one kind compare as they read.
func equal(a, b any) bool {
	if reflect.DeepEqual(a, b) || empty(a) && empty(b) {
		return true
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// empty reports whether v is a nil or empty slice or map.
func empty(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map:
		return rv.Len() == 0
	}
	return false
}

// Entry is an audit event as the admin API lists it and the sinks stream
// it (one JSON object per line).
type Entry struct {
	ID       string          `json:"id"`
	Time     time.Time       `json:"time"`
	Env      string          `json:"env"`
	Kind     string          `json:"kind"`
	Actor    string          `json:"actor"`
	SourceIP string          `json:"source_ip,omitempty"`
	Action   string          `json:"action"`
	Target   *Target         `json:"target,omitempty"`
	Diff     json.RawMessage `json:"diff,omitempty"`
	ClientID string          `json:"client_id,omitempty"`
	Surface  string          `json:"surface,omitempty"`
	Grant    string          `json:"grant_type,omitempty"`
	Outcome  string          `json:"outcome,omitempty"`
}

// Target is what an event changed.
type Target struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// EntryOf returns the listed form of a stored event.
func EntryOf(e store.AuditEvent) Entry {
	out := Entry{ID: e.ID, Time: e.Time, Env: e.Env, Kind: e.Kind, Actor: e.Actor, SourceIP: e.SourceIP, Action: e.Action,
		ClientID: e.ClientID, Surface: e.Surface, Grant: e.Grant, Outcome: e.Outcome}
	if e.TargetType != "" || e.TargetID != "" {
		out.Target = &Target{Type: e.TargetType, ID: e.TargetID}
	}
	if len(e.Diff) > 0 && json.Valid(e.Diff) {
		out.Diff = slices.Clone(e.Diff)
	}
	return out
}

// Kinds lists the kinds of event, for validating filters.
var Kinds = []string{store.AuditAdmin, store.AuditTokenIssued, store.AuditAuthFailed, store.AuditTokenRefused}
