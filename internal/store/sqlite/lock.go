package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HolderServe is the holder name of a running server.
const HolderServe = "serve"

// ErrLocked: another process holds the database's lock.
var ErrLocked = errors.New("the database is in use by another m2mauth process")

// LockError tells who holds the lock.
type LockError struct {
	Path   string // the database file
	PID    int    // 0 when the lock file does not tell
	Holder string // what the holder runs, e.g. "serve" or "key rewrap"
}

func (e *LockError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID) + "?"
	}
	switch e.Holder {
	case HolderServe:
		return fmt.Sprintf("a server is running on this database, %s (%s); stop it first", e.Path, pid)
	case "":
		return fmt.Sprintf("another m2mauth process holds this database, %s (%s); stop it first", e.Path, pid)
	}
	return fmt.Sprintf("'m2mauth %s' is running on this database, %s (%s); wait for it to finish", e.Holder, e.Path, pid)
}

// Is makes LockError match ErrLocked.
func (e *LockError) Is(target error) bool { return target == ErrLocked }

// FileLock is an exclusive advisory lock on a database: a server holds it
// for its lifetime, and commands that must not run beside a server (key
// rewrap) take it too. The operating system releases it when the process
// ends, however it ends, so a crash leaves no stale lock.
type FileLock struct {
	f *os.File
}

// Lock takes the lock of the database file at path, without waiting: the
// lock is on path+".lock", which records the pid and holder for the error
// another process gets. holder names what the caller runs ("serve",
// "key rewrap").
func Lock(path, holder string) (*FileLock, error) {
	// One database, one lock, whatever path names it: symbolic links
	// (to the file or its directory) are resolved first.
	lockPath := canonical(path) + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the database: %w", err)
	}
	locked, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the database: %s: %w", lockPath, err)
	}
	if !locked {
		defer f.Close()
		e := &LockError{Path: path}
		if b, err := os.ReadFile(lockPath); err == nil {
			pid, name, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
			e.PID, _ = strconv.Atoi(pid)
			e.Holder = name
		}
		return nil, e
	}
	// Record who holds it. A failure here only makes the other side's
	// message vaguer.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+holder+"\n"), 0)
	}
	return &FileLock{f: f}, nil
}

// canonical resolves symbolic links in path (in its directory when the file
// does not exist yet) and makes it absolute.
func canonical(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	} else if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		path = filepath.Join(dir, filepath.Base(path))
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path
}

// Unlock releases the lock. The lock file stays: removing it would let a
// process lock a file another one is about to replace.
func (l *FileLock) Unlock() error {
	if err := unlock(l.f); err != nil {
		l.f.Close()
		return err
	}
	return l.f.Close()
}
