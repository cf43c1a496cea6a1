package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAndRemoveStale(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "net.xml")
	for _, d := range []Durability{Durable, Volatile} {
		if err := Write(p, []byte("x"), 0o600, d); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "x" {
			t.Fatalf("read back %q %v", b, err)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode())
		}
	}
	stale := []string{".net.xml.tmp123", TempName(filepath.Join(dir, "link.xml"))}
	for _, s := range stale {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(s)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if errs := RemoveStale(dir); len(errs) > 0 {
		t.Fatal(errs)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "net.xml" {
		t.Fatalf("left %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600, Volatile); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
