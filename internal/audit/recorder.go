package audit

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
	"github.com/m2mauth/m2mauth/internal/jsonappend"
	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/oauth"
	"github.com/m2mauth/m2mauth/internal/store"
)

// appender stores batches of events.
type appender interface {
	AppendAuditEvents(ctx context.Context, events []store.AuditEvent) error
}

// Defaults of a Recorder's Config.
const (
	DefaultQueueSize     = 16384
	DefaultBatchSize     = 2000
	DefaultFlushInterval = time.Second
	DefaultSinkQueueSize = 8192
	// adminQueueSize bounds the management events waiting; a full queue
	// makes the change wait (management is never the hot path, and its
	// events are never dropped to make room).
	adminQueueSize = 256
	// dbWriteTimeout bounds one batch insert; after maxWriteAttempts
	// failed writes in a row (about a minute), the backlog is dropped
	// (and counted): a batch the database refuses for good must not stop
	// the trail.
	dbWriteTimeout   = 10 * time.Second
	maxWriteAttempts = 60
)

// Config configures a Recorder.
type Config struct {
	// Store receives the events in batches (nil: no database; sinks
	// only, for tests).
	Store appender
	// Sinks stream every event as a JSON line.
	Sinks []Sink
	// IssuanceSample is the fraction (0 to 1) of successful token
	// issuances recorded; failed authentications are always recorded.
	IssuanceSample float64
	// QueueSize bounds the token events waiting for the writer; BatchSize
	// and FlushInterval say when it writes (whichever comes first);
	// SinkQueueSize bounds each sink's own queue of lines. Zero: the
	// defaults.
	QueueSize     int
	BatchSize     int
	FlushInterval time.Duration
	SinkQueueSize int
	Log           *slog.Logger
	Now           func() time.Time
}

// tokenItem is what the token path queues: a few strings and a time,
// copied into the queue, never allocated.
type tokenItem struct {
	at                                          time.Time
	env, endpoint, client, surface, grant, code string
	remote                                      string
	failed, refused                             bool
	// The issued token: its jti, audience and scopes, and whether it was
	// handed out again (token reuse).
	jti              string
	audience, scopes []string
	reused           bool
	// binding is what the token is bound to: "dpop", "x5t", both joined
	// by "+", or "" for a bearer token (never the thumbprints).
	binding string
}

// Recorder records audit events. Its methods are safe for concurrent use.
type Recorder struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	tokens   chan tokenItem
	admin    chan store.AuditEvent
	flushReq chan chan error
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	sample   sampler
	sinks    []*sinkRunner
	// node tells this process's event ids from other replicas'; seq
	// numbers them (the writer goroutine only).
	node uint32
	seq  uint32
	// failures counts the writes failed in a row (the writer only); while
	// it is not zero, a full batch waits for the next tick instead of
	// retrying at once.
	failures int
	// dropped counts token events refused by a full queue; dbDropped,
	// events the database would not take while the backlog was full.
	dropped, dbDropped atomic.Uint64
}

// New returns a Recorder and starts its writer; Close stops it.
func New(cfg Config) *Recorder {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.SinkQueueSize <= 0 {
		cfg.SinkQueueSize = DefaultSinkQueueSize
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &Recorder{
		cfg: cfg, log: cfg.Log, now: cfg.Now,
		tokens: make(chan tokenItem, cfg.QueueSize), admin: make(chan store.AuditEvent, adminQueueSize),
		flushReq: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{}),
		node: binary.BigEndian.Uint32(b[:]),
	}
	r.sample.init(cfg.IssuanceSample)
	for _, s := range cfg.Sinks {
		r.sinks = append(r.sinks, startSink(s, cfg.SinkQueueSize, cfg.BatchSize, r.log))
	}
	go r.run()
	return r
}

// Observe implements oauth.Observer: a successful issuance (sampled) or a
// failed client authentication becomes a token event. It never blocks:
// when the queue is full the event is dropped and counted.
func (r *Recorder) Observe(_ context.Context, o oauth.Outcome) {
	// A failed authentication is always recorded. An issuance, and a
	// refusal of a proven client over its quota (a client hammering its
	// quota makes one per request), are sampled.
	refused := o.QuotaExceeded
	failed := !refused && authFailure(o.Code)
	if !failed && (!refused && (o.Code != oauth.CodeOK || o.Endpoint != "token") || !r.sample.keep()) {
		return
	}
	it := tokenItem{at: o.Start, env: o.Env, endpoint: o.Endpoint, client: o.ClientID, surface: o.Surface, grant: grantOf(o.GrantType),
		code: o.Code, remote: o.Remote, failed: failed, refused: refused}
	if t := o.Token; t != nil {
		it.jti, it.audience, it.scopes, it.reused = t.JTI, t.Audience, t.Scopes, t.Reused
		if c := t.Cnf; c != nil {
			switch {
			case c.JKT != "" && c.X5tS256 != "":
				it.binding = "dpop+x5t"
			case c.JKT != "":
				it.binding = "dpop"
			default:
				it.binding = "x5t"
			}
		}
	}
	select {
	case r.tokens <- it:
	default:
		r.dropped.Add(1)
	}
}

// grantOf is the grant type as recorded: one the server knows, or
// "other" (what a caller typed is never recorded).
func grantOf(g string) string {
	switch g {
	case "", oauth.GrantClientCredentials, oauth.GrantRefreshToken:
		return g
	}
	return "other"
}

// authFailure tells the error codes of a failed client authentication (or
// of a refusal to let a client authenticate).
func authFailure(code string) bool {
	switch code {
	case oauth.CodeInvalidClient, oauth.CodeUnauthorizedClient, oauth.CodeInvalidGrant:
		// Not too_many_requests: the failed-request limit's 429 comes
		// before any credential is checked, and recording each would let
		// an unauthenticated flood write a row per request (the failures
		// that tripped the limit are recorded; the rest are counted in
		// m2mauth_auth_failure_limited_total).
		return true
	}
	return false
}

// Record records a management event. The Recorder fills in what e leaves
// empty: the time, the kind (admin), the environment (ctx's), the actor
// and source IP (ctx's, see WithActor; System without one). It waits while
// the management queue is full, until ctx is done.
func (r *Recorder) Record(ctx context.Context, e store.AuditEvent) {
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Kind == "" {
		e.Kind = store.AuditAdmin
	}
	if e.Env == "" {
		if en := env.FromContext(ctx); en != nil {
			e.Env = en.Name
		} else {
			e.Env = store.DefaultEnv
		}
	}
	if e.Actor == "" {
		e.Actor, e.SourceIP = ActorFrom(ctx)
	}
	select {
	case <-r.stop:
		// Closing: the writer may have drained the queue for the last
		// time, so an event queued now could be lost unseen.
		r.dropped.Add(1)
		r.log.Error("audit event lost: the audit trail is closed", "action", e.Action, "target", e.TargetID)
		return
	default:
	}
	select {
	case r.admin <- e:
	case <-ctx.Done():
		r.dropped.Add(1)
		r.log.Error("audit event lost: the request ended while the audit queue was full", "action", e.Action, "target", e.TargetID)
	case <-r.done:
		r.dropped.Add(1)
		r.log.Error("audit event lost: the audit trail is closed", "action", e.Action, "target", e.TargetID)
	}
}

// KeyChanges returns the hook that records the signing key changes of the
// environment named (keys.Manager.OnChange): the lifecycle's own steps are
// the System's, the others the actor's of their context.
func (r *Recorder) KeyChanges(envName string) func(context.Context, keys.Change) {
	if r == nil {
		return nil
	}
	return func(ctx context.Context, c keys.Change) {
		e := store.AuditEvent{Env: envName, Action: c.Action, TargetType: "key", TargetID: c.KID}
		if c.Scheduled {
			e.Actor = System
		}
		f := Fields{"kid": c.KID, "alg": c.Alg}
		if !c.ActivateAt.IsZero() {
			f["activate_at"] = c.ActivateAt.UTC()
		}
		if c.Replacement != "" {
			f["replacement"] = c.Replacement
		}
		e.Diff = Diff(nil, f)
		r.Record(context.WithoutCancel(ctx), e)
	}
}

// Flush writes the events queued so far to the database (sinks get them
// as they are queued), so that a listing shows them.
func (r *Recorder) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case r.flushReq <- reply:
	case <-r.done:
		return errors.New("audit trail closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued, stops the writer and the sinks (each sink
// delivers what it holds until ctx is done).
func (r *Recorder) Close(ctx context.Context) error {
	r.once.Do(func() { close(r.stop) })
	var errs []error
	select {
	case <-r.done:
	case <-ctx.Done():
		// The writer is still at a write: stop the sinks all the same (a
		// webhook would retry on after the process meant to be done).
		errs = append(errs, ctx.Err())
	}
	for _, s := range r.sinks {
		errs = append(errs, s.close(ctx))
	}
	return errors.Join(errs...)
}

// Dropped returns the events dropped so far: "queue" (token events refused
// by a full queue), "db" (events the database would not take while the
// backlog was full), and "sink:<name>" for each sink (lines its full
// queue refused or it failed to deliver).
func (r *Recorder) Dropped() map[string]uint64 {
	out := map[string]uint64{"queue": r.dropped.Load(), "db": r.dbDropped.Load()}
	for _, s := range r.sinks {
		out["sink:"+s.sink.Name()] = s.dropped.Load()
	}
	return out
}

// run is the writer: it takes events off the queues, streams them to the
// sinks and stores them in batches.
func (r *Recorder) run() {
	defer close(r.done)
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	var batch []store.AuditEvent
	for {
		select {
		case it := <-r.tokens:
			batch = r.add(batch, r.tokenEvent(it))
		case e := <-r.admin:
			batch = r.add(batch, e)
		case <-t.C:
			batch, _ = r.write(batch)
		case reply := <-r.flushReq:
			batch = r.drain(batch)
			var err error
			batch, err = r.write(batch)
			reply <- err
		case <-r.stop:
			batch = r.drain(batch)
			if _, err := r.write(batch); err != nil {
				r.log.Error("audit events lost at shutdown: the database did not take them", "count", len(batch), "error", err)
			}
			for _, s := range r.sinks {
				close(s.ch)
			}
			return
		}
		switch {
		case r.failures > 0:
			batch = r.trim(batch)
		case len(batch) >= r.cfg.BatchSize:
			batch, _ = r.write(batch)
		}
	}
}

// trim drops the oldest events of a backlog the database has not taken
// beyond QueueSize (counted).
func (r *Recorder) trim(batch []store.AuditEvent) []store.AuditEvent {
	if over := len(batch) - r.cfg.QueueSize; over > 0 {
		r.dbDropped.Add(uint64(over))
		batch = append(batch[:0], batch[over:]...)
	}
	return batch
}

// drain adds every event queued now, writing full batches as it goes.
func (r *Recorder) drain(batch []store.AuditEvent) []store.AuditEvent {
	for {
		select {
		case it := <-r.tokens:
			batch = r.add(batch, r.tokenEvent(it))
		case e := <-r.admin:
			batch = r.add(batch, e)
		default:
			return batch
		}
		if len(batch) >= r.cfg.BatchSize {
			var err error
			if batch, err = r.write(batch); err != nil {
				return r.trim(batch)
			}
		}
	}
}

func (r *Recorder) tokenEvent(it tokenItem) store.AuditEvent {
	e := store.AuditEvent{Time: it.at, Env: it.env, Actor: it.client, SourceIP: hostOf(it.remote), ClientID: it.client,
		Surface: it.surface, Grant: it.grant, Outcome: it.code}
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Env == "" {
		e.Env = store.DefaultEnv
	}
	if e.Actor == "" {
		e.Actor = "unknown"
	}
	switch {
	case it.failed:
		e.Kind, e.Action = store.AuditAuthFailed, it.endpoint+".auth_failed"
	case it.refused:
		e.Kind, e.Action = store.AuditTokenRefused, "token.quota_exceeded"
	default:
		e.Kind, e.Action = store.AuditTokenIssued, "token.issue"
		if it.jti != "" {
			e.TargetType, e.TargetID = "token", it.jti
			// What the token grants, as the diff's "after" (there is
			// no before): its audience and scopes, and whether it was
			// handed out again rather than signed.
			e.Diff = it.appendDiff(make([]byte, 0, 128))
		}
	}
	return e
}

// appendDiff appends an issuance's diff: what the token grants, as the
// "after" of each member (there is no before), in the order and form
// json.Marshal writes a map of them (one is built for every token):
// {"audience":{"after":[…]},"binding":{"after":"dpop"},"reused":{"after":false},"scopes":{"after":[…]}}.
func (it *tokenItem) appendDiff(b []byte) []byte {
	b = append(b, `{"audience":{"after":`...)
	b = jsonappend.Strings(b, it.audience)
	if it.binding != "" {
		// How the token is sender-constrained (RFC 9449, RFC 8705), not
		// to what: the kind only.
		b = append(b, `},"binding":{"after":`...)
		b = jsonappend.String(b, it.binding)
	}
	b = append(b, `},"reused":{"after":`...)
	b = jsonappend.Bool(b, it.reused)
	b = append(b, `},"scopes":{"after":`...)
	b = jsonappend.Strings(b, it.scopes)
	return append(b, "}}"...)
}

// add gives the event its id, streams it to the sinks and adds it to the
// batch.
func (r *Recorder) add(batch []store.AuditEvent, e store.AuditEvent) []store.AuditEvent {
	r.seq++
	// The database keeps microseconds: the sinks get the same time.
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.ID = eventID(e.Time, r.node, r.seq)
	if len(r.sinks) > 0 {
		line, err := json.Marshal(EntryOf(e))
		if err == nil {
			line = append(line, '\n')
			for _, s := range r.sinks {
				s.offer(line)
			}
		}
	}
	return append(batch, e)
}

// eventID is an event's id: its time (Unix µs), the writer's node and
// sequence number, in fixed-width lowercase hex, so that ids sort as
// times do and never collide across replicas.
func eventID(t time.Time, node, seq uint32) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(t.UnixMicro()))
	binary.BigEndian.PutUint32(raw[8:12], node)
	binary.BigEndian.PutUint32(raw[12:], seq)
	var out [32]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}

// write stores the batch. On failure the batch is kept for the next
// write, up to QueueSize events (the oldest beyond it are dropped and
// counted); it returns what is left to write.
func (r *Recorder) write(batch []store.AuditEvent) ([]store.AuditEvent, error) {
	if len(batch) == 0 || r.cfg.Store == nil {
		return batch[:0], nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbWriteTimeout)
	defer cancel()
	err := r.cfg.Store.AppendAuditEvents(ctx, batch)
	if err == nil {
		r.failures = 0
		return batch[:0], nil
	}
	r.failures++
	if r.failures >= maxWriteAttempts {
		// A batch the database keeps refusing must not stop the trail.
		r.log.Error("audit events lost: the database refused them repeatedly", "count", len(batch), "error", err)
		r.dbDropped.Add(uint64(len(batch)))
		r.failures = 0
		return batch[:0], err
	}
	r.log.Warn("write audit events; retrying in a second", "count", len(batch), "error", err)
	return r.trim(batch), err
}

// sampler keeps a fraction of the calls to keep, evenly spread, with one
// atomic add: a fixed-point accumulator keeps a call when it crosses an
// integer.
type sampler struct {
	all, none bool
	step      uint64
	acc       atomic.Uint64
}

func (s *sampler) init(p float64) {
	switch {
	case p >= 1 || p != p: // NaN: record everything
		s.all = true
	case p <= 0:
		s.none = true
	default:
		s.step = uint64(math.Ceil(p * (1 << 32)))
	}
}

func (s *sampler) keep() bool {
	if s.all {
		return true
	}
	if s.none {
		return false
	}
	n := s.acc.Add(s.step)
	return n>>32 != (n-s.step)>>32
}
