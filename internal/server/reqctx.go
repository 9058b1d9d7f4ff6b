package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
)

// requestCtx is a request's context: its id, its environment and its
// deadline, in one allocation. context.WithValue twice and
// context.WithTimeout cost seven allocations and a timer per request; a
// token request served from memory needs none of the timer: the deadline
// matters only to work that can block (a database call, an outgoing
// fetch), and such work waits on Done. So the timer is armed the first
// time anything asks for Done, and never otherwise.
//
// Contexts derived from it behave as from any context: Done arms the
// deadline first, and Value then answers with the armed context's own
// cancellation, so context.WithCancel and friends attach to it without a
// goroutine.
type requestCtx struct {
	context.Context // the connection's
	id              string
	env             *env.Env
	deadline        time.Time

	once  sync.Once
	state atomic.Pointer[armedCtx] // nil until armed or released
}

type armedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// released stands for a request that ended before anything waited on
// its context: Done is closed and Err is context.Canceled from then on.
var released = func() *armedCtx {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return &armedCtx{ctx: ctx}
}()

func newRequestCtx(parent context.Context, id string, e *env.Env, deadline time.Time) *requestCtx {
	return &requestCtx{Context: parent, id: id, env: e, deadline: deadline}
}

// arm starts the deadline's timer, once.
func (c *requestCtx) arm() *armedCtx {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.Context, c.deadline)
		c.state.Store(&armedCtx{ctx: ctx, cancel: cancel})
	})
	return c.state.Load()
}

// release ends the request: an armed timer is stopped, and an unarmed
// context is never armed.
func (c *requestCtx) release() {
	c.once.Do(func() { c.state.Store(released) })
	if a := c.state.Load(); a.cancel != nil {
		a.cancel()
	}
}

// Deadline is the earlier of the request's and the connection's.
func (c *requestCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *requestCtx) Done() <-chan struct{} { return c.arm().ctx.Done() }

// Err answers without arming: the connection's error, or
// DeadlineExceeded once the deadline has passed.
func (c *requestCtx) Err() error {
	if a := c.state.Load(); a != nil {
		return a.ctx.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *requestCtx) Value(key any) any {
	switch key {
	case requestIDKey{}:
		return c
	case env.ContextKey:
		return c.env
	}
	if a := c.state.Load(); a != nil && a.cancel != nil {
		return a.ctx.Value(key)
	}
	return c.Context.Value(key)
}
