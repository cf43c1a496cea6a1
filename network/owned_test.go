package network

import (
	"slices"
	"testing"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// TestPruneBridges: only bridges vnet marked as its own, and not kept, are
// deleted; a foreign bridge and a kept one survive.
func TestPruneBridges(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "prune")
	mk := func(name string) *netxml.Network {
		return &netxml.Network{Network: libvirtxml.Network{Name: name, Bridge: &libvirtxml.NetworkBridge{Name: name}}}
	}
	for _, br := range []string{"vbr-gone", "vbr-kept"} {
		do(t, ns, func() error {
			if _, err := EnsureBridge(mk(br)); err != nil {
				return err
			}
			return MarkOwned(br, br)
		})
	}
	mustRun(t, ns, "ip", "link", "add", "br-foreign", "type", "bridge")
	var pruned []string
	do(t, ns, func() (err error) {
		pruned, err = PruneBridges(map[string]bool{"vbr-kept": true})
		return err
	})
	if !slices.Equal(pruned, []string{"vbr-gone"}) {
		t.Fatalf("pruned %v, want [vbr-gone]", pruned)
	}
	for _, br := range []string{"vbr-kept", "br-foreign"} {
		mustRun(t, ns, "ip", "link", "show", br)
	}
}
