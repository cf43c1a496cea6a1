package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGuestACL: bridge.conf's rules (deny by default, any matching deny
// wins, all), precise errors with file and line, and a reload when the
// file changes.
func TestGuestACL(t *testing.T) {
	path := filepath.Join(t.TempDir(), GuestACLFile)
	a := newGuestACL(path, slog.New(slog.DiscardHandler))
	if ok, err := a.allowed("default", []uint32{100}); ok || err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing file: %v %v", ok, err)
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		// A new mtime even on coarse clocks.
		later := time.Now().Add(time.Duration(len(text)) * time.Second)
		_ = os.Chtimes(path, later, later)
	}
	write("# comment\n\nallow default 100\nallow all 200\ndeny lab 200\n")
	for _, c := range []struct {
		net  string
		gids []uint32
		want bool
	}{
		{"default", []uint32{100}, true},
		{"default", []uint32{5, 100}, true},
		{"other", []uint32{100}, false},
		{"other", []uint32{200}, true},
		{"lab", []uint32{200}, false},
		{"lab", []uint32{100, 200}, false},
		{"default", []uint32{300}, false},
	} {
		if ok, err := a.allowed(c.net, c.gids); ok != c.want || err != nil {
			t.Errorf("allowed(%s, %v) = %v, %v; want %v", c.net, c.gids, ok, err, c.want)
		}
	}
	write("allow default all\n")
	if ok, _ := a.allowed("default", []uint32{999}); !ok {
		t.Fatal("changed file not reloaded")
	}
	for text, want := range map[string]string{
		"permit default 100\n":        ":1: unknown keyword 'permit' (allow NETWORK GROUP or deny NETWORK GROUP)",
		"\nallow default\n":           ":2: 'allow' needs exactly a network and a group: allow NETWORK GROUP",
		"allow default no-such-grp\n": ":1: unknown group 'no-such-grp'",
	} {
		write(text)
		ok, err := a.allowed("default", []uint32{100})
		if ok || err == nil || !strings.Contains(err.Error(), path+want) {
			t.Errorf("%q: %v %v, want …%s", text, ok, err, want)
		}
	}
}
