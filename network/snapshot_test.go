package network

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
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

// TestParseSnapLink: the snapshot's own reading of a link dump agrees with
// netlink.LinkDeserialize and the bridge's STP attributes on everything a
// converge reads (index, name, up, MTU, MAC, alias, kind, STP, forward delay,
// IPv6 sysctls).
func TestParseSnapLink(t *testing.T) {
	ns := netnstest.New(t, "snapparse")
	ns.MustRun("ip", "link", "add", "vbr-p", "mtu", "9000", "type", "bridge", "stp_state", "1", "forward_delay", "700")
	ns.MustRun("ip", "link", "set", "vbr-p", "alias", "vnet:parse", "address", "52:54:00:01:02:03", "up")
	ns.MustRun("sysctl", "-qw", "net.ipv6.conf.vbr-p.accept_ra=0", "net.ipv6.conf.vbr-p.autoconf=0")
	ns.MustRun("ip", "link", "add", "vnt-va", "type", "veth", "peer", "name", "vnt-vb")
	do(t, ns, func() error {
		msgs, err := retryDump(func() ([][]byte, error) {
			req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
			req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
			return req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		})
		if err != nil {
			return err
		}
		seen := 0
		for _, m := range msgs {
			want, err := netlink.LinkDeserialize(nil, m)
			if err != nil {
				return err
			}
			got := parseSnapLink(m)
			if got == nil {
				t.Errorf("link %s not read", want.Attrs().Name)
				continue
			}
			g, w := got.link.Attrs(), want.Attrs()
			if g.Index != w.Index || g.Name != w.Name || g.MTU != w.MTU || g.Alias != w.Alias ||
				g.HardwareAddr.String() != w.HardwareAddr.String() || (g.Flags&net.FlagUp) != (w.Flags&net.FlagUp) {
				t.Errorf("link %s: read %+v, want %+v", w.Name, *g, *w)
			}
			if (got.link.Type() == "bridge") != (want.Type() == "bridge") {
				t.Errorf("link %s: kind %s, want %s", w.Name, got.link.Type(), want.Type())
			}
			if w.Name == "vbr-p" {
				seen++
				if !got.hasSTP || !got.stp.On || got.stp.Delay != 700 {
					t.Errorf("bridge STP %+v (has %v), want on, delay 700", got.stp, got.hasSTP)
				}
				if !got.hasSysctls || got.sysctls != [3]int32{0, 0, 0} {
					t.Errorf("bridge sysctls %v (has %v), want disable_ipv6 0, accept_ra 0, autoconf 0", got.sysctls, got.hasSysctls)
				}
			}
			if w.Name == "vnt-va" {
				seen++
				if got.hasSTP {
					t.Error("a veth has STP state")
				}
			}
		}
		if seen != 2 {
			t.Errorf("saw %d of the 2 test links", seen)
		}
		return nil
	})
}
