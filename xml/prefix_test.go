package netxml

import (
	"net/netip"
	"testing"

	"libvirt.org/go/libvirtxml"
)

// TestPrefixLen pins libvirt's prefix rule (virSocketAddrGetIPPrefix), the
// one implementation the bridge, firewall, dnsmasq and dry-run code share.
func TestPrefixLen(t *testing.T) {
	cases := []struct {
		addr    string
		prefix  uint
		netmask string
		want    int // -1: error
	}{
		{"192.168.122.1", 0, "255.255.255.0", 24},
		{"192.168.122.1", 20, "", 20},
		{"10.1.2.3", 0, "", 8},
		{"172.16.0.1", 0, "", 16},
		{"192.0.2.1", 0, "", 24},
		{"0.0.0.0", 0, "", 0},
		{"0.1.2.3", 0, "", 0}, // libvirt: first octet 0 means prefix 0
		{"224.0.0.1", 0, "", -1},
		{"240.0.0.1", 0, "", -1},
		{"10.0.0.1", 33, "", -1},
		{"10.0.0.1", 0, "255.0.255.0", -1},
		{"10.0.0.1", 0, "nope", -1},
		{"2001:db8::1", 0, "", 64},
		{"2001:db8::1", 48, "", 48},
		{"::", 0, "", 0},
		{"2001:db8::1", 129, "", -1},
		{"2001:db8::1", 0, "255.255.255.0", -1},
	}
	for _, c := range cases {
		got, err := PrefixLen(netip.MustParseAddr(c.addr), c.prefix, c.netmask)
		if c.want < 0 {
			if err == nil {
				t.Errorf("PrefixLen(%s, %d, %q) = %d, want an error", c.addr, c.prefix, c.netmask, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("PrefixLen(%s, %d, %q) = %d, %v; want %d", c.addr, c.prefix, c.netmask, got, err, c.want)
		}
	}
}

func TestRouteDst(t *testing.T) {
	cases := []struct {
		r    libvirtxml.NetworkRoute
		want string
	}{
		{libvirtxml.NetworkRoute{Address: "192.168.222.7", Netmask: "255.255.255.0"}, "192.168.222.0/24"},
		{libvirtxml.NetworkRoute{Address: "10.9.0.0", Prefix: 16}, "10.9.0.0/16"},
		{libvirtxml.NetworkRoute{Address: "10.9.0.7"}, "10.9.0.7/32"},
		{libvirtxml.NetworkRoute{Address: "2001:db8:1::", Prefix: 48}, "2001:db8:1::/48"},
	}
	for _, c := range cases {
		got, err := RouteDst(c.r)
		if err != nil || got.String() != c.want {
			t.Errorf("RouteDst(%+v) = %v, %v; want %s", c.r, got, err, c.want)
		}
	}
}
