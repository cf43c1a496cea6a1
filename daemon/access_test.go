package daemon

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPeerCaller: the kernel's view of the connecting process is this test
// process, with its groups when asked; withPeerCred records the same caller
// without the groups, and ownerOnly lets only the owner's uid through.
func TestPeerCaller(t *testing.T) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	c, err := peerCaller(conn, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.UID != uint32(os.Getuid()) || c.GID != uint32(os.Getgid()) || c.PID != int32(os.Getpid()) {
		t.Errorf("peerCaller = %+v; want uid %d gid %d pid %d", c, os.Getuid(), os.Getgid(), os.Getpid())
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(c.Groups))
	var want []uint32
	for _, g := range groups {
		want = append(want, uint32(g))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("groups = %v; want %v", got, want)
	}

	ctx := withPeerCred(context.Background(), conn)
	if rc, ok := ctx.Value(peerKey{}).(Caller); !ok || rc.UID != c.UID || rc.PID != c.PID || rc.Groups != nil {
		t.Errorf("withPeerCred recorded %+v (%v); want %+v without groups", rc, ok, c)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		owner uint32
		want  int
	}{{c.UID, http.StatusNoContent}, {c.UID + 1, http.StatusForbidden}} {
		w := httptest.NewRecorder()
		ownerOnly(tc.owner, ok).ServeHTTP(w, httptest.NewRequest("GET", "/", nil).WithContext(ctx))
		if w.Code != tc.want {
			t.Errorf("ownerOnly(%d) for uid %d: status %d; want %d", tc.owner, c.UID, w.Code, tc.want)
		}
	}
}
