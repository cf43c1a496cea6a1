package network

import (
	"os"
	"slices"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"vnet/internal/netnstest"
	netxml "vnet/xml"
)

// readRoot reads a sysctl of the root namespace: the test goroutine is not
// inside ns.Do here, so its thread is in the namespace the test started in.
func readRoot(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// ensureForwarding converges the forwarding sysctls with the executor that
// changes the host and returns the ones it set as "name=value".
func ensureForwarding(n *netxml.Network) ([]string, error) {
	var ex Apply
	err := ConvergeForwarding(n, &ex)
	var changed []string
	for _, s := range ex.Ran {
		changed = append(changed, strings.TrimPrefix(s.Cmd, "sysctl -w "))
	}
	return changed, err
}

func TestEnsureForwarding(t *testing.T) {
	netnstest.RequireRoot(t)
	v4 := libvirtxml.NetworkIP{Address: "10.80.0.1", Prefix: 24}
	v6 := libvirtxml.NetworkIP{Family: "ipv6", Address: "fd00:80::1", Prefix: 64}
	cases := []struct {
		name   string
		mode   string // "-" for no <forward>
		ips    []libvirtxml.NetworkIP
		want   []string
		wantV4 string
		wantV6 string
	}{
		{"isolated", "-", []libvirtxml.NetworkIP{v4, v6}, nil, "0", "0"},
		{"nat ipv4", "nat", []libvirtxml.NetworkIP{v4}, []string{"net.ipv4.ip_forward=1"}, "1", "0"},
		{"nat ipv4+ipv6", "nat", []libvirtxml.NetworkIP{v4, v6}, []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}, "1", "1"},
		{"route ipv4+ipv6", "route", []libvirtxml.NetworkIP{v4, v6}, []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}, "1", "1"},
		{"route ipv4", "route", []libvirtxml.NetworkIP{v4}, []string{"net.ipv4.ip_forward=1"}, "1", "0"},
		{"open ipv4", "open", []libvirtxml.NetworkIP{v4}, []string{"net.ipv4.ip_forward=1"}, "1", "0"},
		{"host bridge", "bridge", nil, nil, "0", "0"},
	}
	rootV4, rootV6 := readRoot(t, "net/ipv4/ip_forward"), readRoot(t, "net/ipv6/conf/all/forwarding")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := netnstest.New(t, "fwd")
			// A new namespace copies net.ipv4 defaults from the root one:
			// start from 0/0 as in the libvirt measurements.
			mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
			n := &netxml.Network{Network: libvirtxml.Network{Name: "fwd", IPs: c.ips}}
			if c.mode != "-" {
				n.Forward = &libvirtxml.NetworkForward{Mode: c.mode}
			}
			var changed []string
			do(t, ns, func() (err error) { changed, err = ensureForwarding(n); return err })
			if !slices.Equal(changed, c.want) {
				t.Errorf("changed = %q, want %q", changed, c.want)
			}
			if got := sysctlIn(t, ns, "net.ipv4.ip_forward"); got != c.wantV4 {
				t.Errorf("ip_forward = %s, want %s", got, c.wantV4)
			}
			if got := sysctlIn(t, ns, "net.ipv6.conf.all.forwarding"); got != c.wantV6 {
				t.Errorf("ipv6 forwarding = %s, want %s", got, c.wantV6)
			}
			do(t, ns, func() (err error) { changed, err = ensureForwarding(n); return err })
			if len(changed) != 0 {
				t.Errorf("second call changed %q", changed)
			}
		})
	}
	if got := readRoot(t, "net/ipv4/ip_forward"); got != rootV4 {
		t.Errorf("root ip_forward changed: %s → %s", rootV4, got)
	}
	if got := readRoot(t, "net/ipv6/conf/all/forwarding"); got != rootV6 {
		t.Errorf("root ipv6 forwarding changed: %s → %s", rootV6, got)
	}
}

func TestEnsureForwardingNeverResets(t *testing.T) {
	ns := netnstest.New(t, "fwdk")
	mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	n := &netxml.Network{Network: libvirtxml.Network{Name: "iso", IPs: []libvirtxml.NetworkIP{{Address: "10.81.0.1", Prefix: 24}}}}
	do(t, ns, func() error { _, err := ensureForwarding(n); return err })
	if sysctlIn(t, ns, "net.ipv4.ip_forward") != "1" || sysctlIn(t, ns, "net.ipv6.conf.all.forwarding") != "1" {
		t.Error("an isolated network reset forwarding")
	}
}

// TestAcceptRAGuard: enabling IPv6 forwarding is refused while the host has
// routes learned from router advertisements on an interface with accept_ra=1,
// and allowed once accept_ra is 2 (libvirt's check and message).
func TestAcceptRAGuard(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "ra")
	peer := netnstest.New(t, "rap")
	netnstest.Veth(t, ns, "up0", peer, "eth0")
	mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.up0.accept_ra=1")
	mustRun(t, ns, "ip", "-6", "route", "add", "2001:db8:1::/64", "dev", "up0", "proto", "ra")
	n := &netxml.Network{Network: libvirtxml.Network{Name: "v6", Forward: &libvirtxml.NetworkForward{Mode: "nat"},
		IPs: []libvirtxml.NetworkIP{{Family: "ipv6", Address: "fd00:81::1", Prefix: 64}}}}
	var err error
	_ = ns.Do(func() error { _, err = ensureForwarding(n); return nil })
	want := "operation failed: Check the host setup: enabling IPv6 forwarding with RA routes without accept_ra set to 2 is likely to cause routes loss. Interfaces to look at: up0"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	if v := strings.TrimSpace(mustRun(t, ns, "sysctl", "-n", "net.ipv6.conf.all.forwarding")); v != "0" {
		t.Fatalf("forwarding turned on despite the error: %s", v)
	}
	mustRun(t, ns, "sysctl", "-q", "-w", "net.ipv6.conf.up0.accept_ra=2")
	do(t, ns, func() (err error) { _, err = ensureForwarding(n); return err })
}
