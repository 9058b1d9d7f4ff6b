package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/m2mauth/m2mauth/internal/store"
)

// testBulkClients: InsertClients stores clients exactly as CreateClient
// would (GetClient reads them back whole), refuses ids that exist or
// belonged to a deleted client, and keeps the batches before a failure.
func testBulkClients(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s := open()
	bulk, ok := s.(store.BulkClients)
	if !ok {
		t.Skip("the store has no bulk insert")
	}
	if err := s.CreateAPI(ctx, api("https://bulk.example", "read", "write")); err != nil {
		t.Fatal(err)
	}
	grant := store.Grant{Audience: "https://bulk.example", Scopes: []string{"read"}}
	var want []store.Client
	for i := range 7 {
		c := client(fmt.Sprintf("bulk-%02d", i), grant)
		c.Grants[0].APITokenLifetime = 10 * time.Minute // filled in on reads
		want = append(want, c)
	}
	n, err := bulk.InsertClients(ctx, slices.Values(want))
	if err != nil || n != len(want) {
		t.Fatalf("InsertClients = %d, %v; want %d, nil", n, err, len(want))
	}
	for _, w := range want {
		got, err := s.GetClient(ctx, w.ID)
		if err != nil {
			t.Fatalf("GetClient(%s): %v", w.ID, err)
		}
		if d := cmp.Diff(w, got); d != "" {
			t.Errorf("GetClient(%s) (-want +got):\n%s", w.ID, d)
		}
	}
	var ids []string
	if err := s.ClientIDs(ctx, func(id string) { ids = append(ids, id) }); err != nil || len(ids) != len(want) {
		t.Errorf("ClientIDs = %v, %v; want %d ids", ids, err, len(want))
	}
	// An id that exists: nothing of the batch is stored.
	again := []store.Client{client("bulk-new", grant), client("bulk-03", grant)}
	if _, err := bulk.InsertClients(ctx, slices.Values(again)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("InsertClients of an existing id: %v, want ErrConflict", err)
	}
	if _, err := s.GetClient(ctx, "bulk-new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed batch left bulk-new: %v", err)
	}
	// The id of a deleted client is never reused.
	if err := s.DeleteClient(ctx, "bulk-00", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := bulk.InsertClients(ctx, slices.Values([]store.Client{client("bulk-00", grant)})); !errors.Is(err, store.ErrConflict) {
		t.Errorf("InsertClients of a deleted client's id: %v, want ErrConflict", err)
	}
}

// testTouchSecretsConcurrent: two replicas flush last-use times of the
// same secrets at once, each many chunks of them, in the same or opposite
// orders of time: neither fails (no deadlock surfaces), and every secret
// ends at the latest time either wrote, never an earlier one.
func testTouchSecretsConcurrent(t *testing.T, open func() store.Store) {
	ctx := context.Background()
	s1, s2 := open(), open()
	bulk, ok := s1.(store.BulkClients)
	if !ok {
		t.Skip("the store has no bulk insert")
	}
	const n = 1200 // two chunks of a flush (sqlstore.TouchChunk)
	var secrets []string
	clients := func(yield func(store.Client) bool) {
		for i := range n {
			c := client(fmt.Sprintf("flush-%04d", i))
			secrets = append(secrets, c.Secrets[0].ID)
			if !yield(c) {
				return
			}
		}
	}
	if _, err := bulk.InsertClients(ctx, clients); err != nil {
		t.Fatal(err)
	}
	const rounds = 4
	flush := func(s store.Store, offset time.Duration, reverse bool) error {
		for r := range rounds {
			uses := make([]store.SecretUse, len(secrets))
			for i, id := range secrets {
				at := t0.Add(time.Duration(r)*time.Second + offset + time.Duration(i)*time.Microsecond)
				if reverse {
					at = t0.Add(time.Duration(rounds-r)*time.Second + offset + time.Duration(i)*time.Microsecond)
				}
				uses[i] = store.SecretUse{SecretID: id, At: at}
			}
			if err := s.RecordUsage(ctx, uses, nil); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make(chan error, 2)
	go func() { errs <- flush(s1, 0, false) }()
	go func() { errs <- flush(s2, time.Millisecond, true) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent flush: %v", err)
		}
	}
	// The latest of all: s2's first round (rounds seconds + 1 ms).
	for _, i := range []int{0, n / 2, n - 1} {
		c, err := s1.GetClient(ctx, fmt.Sprintf("flush-%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		want := t0.Add(rounds*time.Second + time.Millisecond + time.Duration(i)*time.Microsecond)
		if got := c.Secrets[0].LastUsedAt; !got.Equal(want) {
			t.Errorf("flush-%04d last used %v, want %v (the latest written)", i, got, want)
		}
	}
}
