package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileStamps: a file is compared by reading it until a stamp is kept
// (its last change older than racyWindow); then by stat alone, and any
// change of it (in place, same size; or replaced) is seen.
func TestFileStamps(t *testing.T) {
	f := newFileStamps()
	p := filepath.Join(t.TempDir(), "x.conf")
	if f.same(p, "a") {
		t.Fatal("missing file is the same")
	}
	if err := os.WriteFile(p, []byte("abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !f.same(p, "abc\n") || f.same(p, "abd\n") {
		t.Fatal("fresh file compared wrongly")
	}
	if len(f.m) != 0 {
		t.Fatal("a stamp was kept for a file changed within racyWindow")
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	// ctime is now: still racy. Wait it out (the window is a second).
	time.Sleep(racyWindow + 100*time.Millisecond)
	if !f.same(p, "abc\n") || len(f.m) != 1 {
		t.Fatalf("stamp not kept: %v", f.m)
	}
	if !f.same(p, "abc\n") {
		t.Fatal("same content by stamp")
	}
	if f.same(p, "xyz\n") {
		t.Fatal("other content matched a stamp")
	}
	// Edited in place, same size, mtime set back: ctime changes.
	if err := os.WriteFile(p, []byte("abd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if f.same(p, "abc\n") {
		t.Fatal("edited file matched its old stamp")
	}
	f.forget(p)
	if len(f.m) != 0 {
		t.Fatal("forget kept the stamp")
	}
	var none *fileStamps
	if !none.same(p, "abd\n") || none.same(p, "abc\n") {
		t.Fatal("nil stamps compare wrongly")
	}
}
