package issuer

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/m2mauth/m2mauth/internal/keys"
	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

func issuerFor(t *testing.T, alg string) *Issuer {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, _ := keys.ParseMasterKey(keys.GenerateMasterKeyText())
	km := keys.NewManager(st, mk, keys.Policy{Alg: alg}, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := km.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return New("https://issuer", km, time.Now)
}

// RSA signatures wait for a free slot of the signing queue; EdDSA and
// ES256 ones never wait.
func TestSigningQueue(t *testing.T) {
	if cap(signingQueue) < 1 {
		t.Fatalf("signing queue of %d slots", cap(signingQueue))
	}
	for _, tc := range []struct {
		alg   string
		waits bool
	}{{keys.RS256, true}, {keys.PS256, true}, {keys.ES256, false}, {keys.EdDSA, false}} {
		t.Run(tc.alg, func(t *testing.T) {
			iss := issuerFor(t, tc.alg)
			synctest.Test(t, func(t *testing.T) {
				// A queue of one slot, taken as by a signature in progress.
				iss.signing = make(chan struct{}, 1)
				iss.signing <- struct{}{}
				done := make(chan error, 1)
				go func() {
					_, err := iss.Issue(Request{ClientID: "c", Audience: []string{"a"}, Lifetime: time.Minute})
					done <- err
				}()
				synctest.Wait()
				waiting := len(done) == 0
				<-iss.signing // the signature in progress ends
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if waiting != tc.waits {
					t.Errorf("waited for a slot: %v; want %v", waiting, tc.waits)
				}
				if len(iss.signing) != 0 {
					t.Error("the slot was not given back")
				}
			})
		})
	}
}
