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

// The lock is the database's, whatever path names it: a symbolic link to
// the file, or to its directory, finds it held.
func TestLockThroughSymlinks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data", "m2mauth.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := sqlite.Lock(path, sqlite.HolderServe)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	fileLink, dirLink := filepath.Join(dir, "l.db"), filepath.Join(dir, "datalink")
	if err := os.Symlink(path, fileLink); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if err := os.Symlink(filepath.Dir(path), dirLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fileLink, filepath.Join(dirLink, "m2mauth.db"), filepath.Join(dir, "data", ".", "m2mauth.db")} {
		if _, err := sqlite.Lock(p, "key rewrap"); !errors.Is(err, sqlite.ErrLocked) {
			t.Errorf("lock through %s: %v, want ErrLocked", p, err)
		}
	}
}
