package network

import (
	"errors"
	"slices"
	"testing"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// TestSnapshotConfirmsOnlyHealthy: a converge from a pass's snapshot finds
// a healthy bridge healthy without reads of its own, and on drift (an
// address, the MTU, STP, a per-bridge sysctl, a forwarding sysctl) reads
// live and repairs it as a converge without snapshot does.
func TestSnapshotConfirmsOnlyHealthy(t *testing.T) {
	ns := netnstest.New(t, "snap")
	const br = "vbr-snap"
	n := &netxml.Network{Network: libvirtxml.Network{
		Name:    "snap",
		Forward: &libvirtxml.NetworkForward{Mode: "nat"},
		Bridge:  &libvirtxml.NetworkBridge{Name: br, STP: "on", Delay: "0"},
		MTU:     &libvirtxml.NetworkMTU{Size: 9000},
		IPs: []libvirtxml.NetworkIP{
			{Address: "192.168.151.1", Netmask: "255.255.255.0"},
			{Family: "ipv6", Address: "fd00:151::1", Prefix: 64},
		},
	}}
	v4 := &netxml.Network{Network: libvirtxml.Network{
		Name:    "snap4",
		Forward: &libvirtxml.NetworkForward{Mode: "nat"},
		Bridge:  &libvirtxml.NetworkBridge{Name: br + "4"},
		IPs:     []libvirtxml.NetworkIP{{Address: "192.168.152.1", Netmask: "255.255.255.0"}},
	}}
	for _, nw := range []*netxml.Network{n, v4} {
		do(t, ns, func() error {
			if _, err := ConvergeBridge(nw, &Apply{}); err != nil {
				return err
			}
			return ConvergeForwarding(nw, &Apply{})
		})
	}
	confirmed := func(nw *netxml.Network) error {
		return ns.Do(func() error {
			_, err := convergeBridge(nw, confirmOnly{}, NewSnapshot())
			return err
		})
	}
	for _, nw := range []*netxml.Network{n, v4} {
		if err := confirmed(nw); err != nil {
			t.Fatalf("snapshot of healthy bridge %s: %v", nw.BridgeName(), err)
		}
	}

	ns.MustRun("ip", "addr", "del", "192.168.151.1/24", "dev", br)
	ns.MustRun("ip", "link", "set", br, "mtu", "1500", "type", "bridge", "stp_state", "0")
	ns.MustRun("sysctl", "-qw", "net.ipv6.conf."+br+".accept_ra=1", "net.ipv6.conf."+br+"4.disable_ipv6=0", "net.ipv4.ip_forward=0")
	for _, nw := range []*netxml.Network{n, v4} {
		if err := confirmed(nw); !errors.Is(err, errNotInSnapshot) {
			t.Fatalf("snapshot of drifted bridge %s: %v, want errNotInSnapshot", nw.BridgeName(), err)
		}
	}
	snap := NewSnapshot()
	var problems []string
	for _, nw := range []*netxml.Network{n, v4} {
		rec := Record{Pass: snap}
		do(t, ns, func() error {
			if _, err := ConvergeBridge(nw, &rec); err != nil {
				return err
			}
			return ConvergeForwarding(nw, &rec)
		})
		problems = append(problems, Problems(rec.Steps)...)
	}
	for _, p := range []string{
		`bridge "vbr-snap": address 192.168.151.1/24 missing`,
		`bridge "vbr-snap": mtu is 1500, want 9000`,
		`bridge "vbr-snap": stp is off, want on`,
		`bridge "vbr-snap": sysctl net.ipv6.conf.vbr-snap.accept_ra is 1, want 0`,
		`bridge "vbr-snap4": sysctl net.ipv6.conf.vbr-snap4.disable_ipv6 is 0, want 1`,
		`sysctl net.ipv4.ip_forward is 0, want 1`,
	} {
		if !slices.Contains(problems, p) {
			t.Errorf("problems %q lack %q", problems, p)
		}
	}
	for _, nw := range []*netxml.Network{n, v4} {
		do(t, ns, func() error {
			if _, err := ConvergeBridge(nw, &Apply{Pass: snap}); err != nil {
				return err
			}
			return ConvergeForwarding(nw, &Apply{Pass: snap})
		})
		if err := confirmed(nw); err != nil {
			t.Errorf("after repair, snapshot of %s: %v", nw.BridgeName(), err)
		}
	}
}
