package sqlite_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mauth/m2mauth/internal/store/sqlite"
)

// One holder at a time; the refused one learns who holds the lock; the lock
// is free again once released.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m2mauth.db")
	l, err := sqlite.Lock(path, sqlite.HolderServe)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		holder string
		want   string
	}{
		{sqlite.HolderServe, fmt.Sprintf("a server is running on this database, %s (pid %d?); stop it first", path, os.Getpid())},
		{"key rewrap", fmt.Sprintf("'m2mauth key rewrap' is running on this database, %s (pid %d?); wait for it to finish", path, os.Getpid())},
	}
	for i, tc := range tests {
		if i > 0 {
			l.Unlock()
			if l, err = sqlite.Lock(path, tc.holder); err != nil {
				t.Fatal(err)
			}
		}
		_, err := sqlite.Lock(path, "key rewrap")
		if !errors.Is(err, sqlite.ErrLocked) || err.Error() != tc.want {
			t.Errorf("second lock while %q holds it: %v; want %q", tc.holder, err, tc.want)
		}
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l, err = sqlite.Lock(path, sqlite.HolderServe)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l.Unlock()
	if b, _ := os.ReadFile(path + ".lock"); !strings.HasPrefix(string(b), fmt.Sprint(os.Getpid())) {
		t.Errorf("lock file %q does not record the pid", b)
	}
}
