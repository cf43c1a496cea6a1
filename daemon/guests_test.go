package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vnet/daemon/api"
)

// TestAttachGuest: a helper call of an allowed caller makes a transient
// port owned by the caller's uid (with the MAC it was told); a denied one,
// an unknown bridge and a bad MAC make nothing.
func TestAttachGuest(t *testing.T) {
	m, _, cfg, _ := newTestManager(t)
	if _, err := m.Define(netXML("net1", "", "10.1.0")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("net1"); err != nil {
		t.Fatal(err)
	}
	br := m.byName["net1"].live.BridgeName()
	m.acl = newGuestACL(filepath.Join(cfg, GuestACLFile), slog.New(slog.DiscardHandler))
	if err := os.WriteFile(filepath.Join(cfg, GuestACLFile), []byte("allow net1 4711\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	caller := Caller{UID: 4242, GID: 100, PID: 1, Groups: []uint32{4711}}
	for _, c := range []struct {
		caller Caller
		req    api.HelperRequest
		want   string
	}{
		{Caller{UID: 4242, GID: 100}, api.HelperRequest{Bridge: br}, "user '4242' may not attach to network 'net1'"},
		{caller, api.HelperRequest{Bridge: "nosuchbr"}, "bridge 'nosuchbr' is not the bridge of an active vnet network"},
		{caller, api.HelperRequest{Bridge: "a/b"}, "invalid bridge name"},
		{caller, api.HelperRequest{Bridge: br, MAC: "zz"}, "invalid MAC 'zz'"},
	} {
		if f, _, err := m.AttachGuest(c.caller, c.req); f != nil || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %+v: %v, want %s", c.caller, c.req, err, c.want)
		}
	}
	if n := m.ports.count("net1"); n != 0 {
		t.Fatalf("%d ports after refused calls", n)
	}
	f, port, err := m.AttachGuest(caller, api.HelperRequest{Bridge: br, VnetHdr: true, MAC: "52:54:00:AA:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := m.ports.get("net1", port.UUID)
	if p == nil || p.MAC.Address != "52:54:00:aa:00:01" || p.Owner.Name != "4242" || p.TAP == nil || !p.TAP.Transient || p.TAP.User != "4242" || p.TAP.Dev == "" {
		t.Fatalf("port %+v tap %+v", p, p.TAP)
	}
	// A second guest gets its own port and device.
	f2, port2, err := m.AttachGuest(caller, api.HelperRequest{Bridge: br})
	if err != nil {
		t.Fatal(err)
	}
	f2.Close()
	if port2.TAP == port.TAP || port2.MAC == port.MAC {
		t.Fatalf("second port shares device or MAC: %+v %+v", port, port2)
	}
}
