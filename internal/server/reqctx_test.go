package server

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/m2mauth/m2mauth/internal/env"
)

type (
	parentKey  struct{}
	derivedKey struct{}
)

func TestRequestContext(t *testing.T) {
	e := &env.Env{Issuer: "https://auth.example.com"}
	parentWith := func() context.Context { return context.WithValue(context.Background(), parentKey{}, "p") }
	values := func(t *testing.T, ctx context.Context) {
		t.Helper()
		if RequestID(ctx) != "0123456789abcdef" || env.FromContext(ctx) != e || ctx.Value(parentKey{}) != "p" {
			t.Errorf("values: id %q env %v parent %v", RequestID(ctx), env.FromContext(ctx), ctx.Value(parentKey{}))
		}
	}

	t.Run("served without waiting: never armed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newRequestCtx(parentWith(), "0123456789abcdef", e, time.Now().Add(20*time.Second))
			derived := context.WithValue(c, derivedKey{}, 1)
			values(t, derived)
			if err := c.Err(); err != nil {
				t.Errorf("Err before the deadline: %v", err)
			}
			if d, ok := c.Deadline(); !ok || !d.Equal(time.Now().Add(20*time.Second)) {
				t.Errorf("Deadline: %v %v", d, ok)
			}
			if c.state.Load() != nil {
				t.Fatal("reading values and Err armed the timer")
			}
			c.release()
			if c.state.Load() != released || !errors.Is(c.Err(), context.Canceled) {
				t.Errorf("after release: state %v, Err %v", c.state.Load(), c.Err())
			}
			select {
			case <-c.Done():
			default:
				t.Error("Done open after release")
			}
			values(t, derived)
		})
	})

	t.Run("Done closes at the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			c := newRequestCtx(parentWith(), "0123456789abcdef", e, start.Add(20*time.Second))
			defer c.release()
			<-c.Done()
			if waited := time.Since(start); waited != 20*time.Second || !errors.Is(c.Err(), context.DeadlineExceeded) {
				t.Errorf("Done after %v with %v, want 20s and DeadlineExceeded", waited, c.Err())
			}
			values(t, c)
		})
	})

	t.Run("a derived context ends at the deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			c := newRequestCtx(parentWith(), "0123456789abcdef", e, start.Add(20*time.Second))
			defer c.release()
			derived, cancel := context.WithTimeout(c, time.Minute)
			defer cancel()
			<-derived.Done()
			if waited := time.Since(start); waited != 20*time.Second || !errors.Is(derived.Err(), context.DeadlineExceeded) {
				t.Errorf("derived Done after %v with %v", waited, derived.Err())
			}
		})
	})

	t.Run("the connection's cancellation reaches it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithCancel(parentWith())
			c := newRequestCtx(parent, "0123456789abcdef", e, time.Now().Add(20*time.Second))
			defer c.release()
			cancel()
			if !errors.Is(c.Err(), context.Canceled) {
				t.Errorf("Err before arming: %v", c.Err())
			}
			<-c.Done()
			if !errors.Is(c.Err(), context.Canceled) {
				t.Errorf("Err after arming: %v", c.Err())
			}
		})
	})

	t.Run("past the deadline, Err says so without arming", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newRequestCtx(parentWith(), "0123456789abcdef", e, time.Now().Add(20*time.Second))
			defer c.release()
			time.Sleep(21 * time.Second)
			if !errors.Is(c.Err(), context.DeadlineExceeded) || c.state.Load() != nil {
				t.Errorf("Err %v, armed %v", c.Err(), c.state.Load() != nil)
			}
		})
	})

	t.Run("the connection's earlier deadline wins", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			parent, cancel := context.WithTimeout(parentWith(), 5*time.Second)
			defer cancel()
			c := newRequestCtx(parent, "0123456789abcdef", e, time.Now().Add(20*time.Second))
			defer c.release()
			if d, _ := c.Deadline(); !d.Equal(time.Now().Add(5 * time.Second)) {
				t.Errorf("Deadline %v", d)
			}
			start := time.Now()
			<-c.Done()
			if time.Since(start) != 5*time.Second {
				t.Errorf("Done after %v, want 5s", time.Since(start))
			}
		})
	})
}
