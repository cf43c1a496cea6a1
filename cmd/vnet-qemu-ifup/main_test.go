package main

import (
	"testing"

	netxml "vnet/xml"
)

// TestPortXML: a guest name with XML's special characters and a newline
// (QEMU's -name is whatever its caller wrote) comes back unchanged from the
// daemon's parser, control characters are dropped as libvirt drops them,
// and a device name the kernel refuses is refused.
func TestPortXML(t *testing.T) {
	const ownerUUID, mac = "d54df46f-1ab5-4a22-8618-4560ef5fac2c", "52:54:00:7b:35:93"
	for _, tc := range []struct{ owner, want string }{
		{"guest", "guest"},
		{`it's "<b>" & </name><name>x`, `it's "<b>" & </name><name>x`},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"nul\x00bell\x07", "nulbell"},
	} {
		xml, err := portXML("tap0", tc.owner, ownerUUID, mac)
		if err != nil {
			t.Fatalf("portXML(%q): %v", tc.owner, err)
		}
		p, err := netxml.ParsePort([]byte(xml))
		if err != nil {
			t.Fatalf("owner %q: the port does not parse: %v\n%s", tc.owner, err, xml)
		}
		if p.Owner.Name != tc.want || p.Owner.UUID != ownerUUID || p.MAC.Address != mac {
			t.Errorf("owner %q: parsed back as %q %s %s", tc.owner, p.Owner.Name, p.Owner.UUID, p.MAC.Address)
		}
		if p.TAP == nil || p.TAP.Dev != "tap0" || !p.TAP.Adopt || !p.TAP.Transient {
			t.Errorf("owner %q: tap %+v; want tap0 adopted and transient", tc.owner, p.TAP)
		}
	}
	for _, ifname := range []string{"", ".", "a/b", "a:b", "tap%d", "x y", "t\n", "a-name-longer-than-15"} {
		if xml, err := portXML(ifname, "guest", ownerUUID, mac); err == nil {
			t.Errorf("device name %q accepted:\n%s", ifname, xml)
		}
	}
	// The kernel takes "'", '&' and '<' in a device name: the attribute is
	// escaped.
	xml, err := portXML("t'&<0", "guest", ownerUUID, mac)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := netxml.ParsePort([]byte(xml)); err != nil || p.TAP.Dev != "t'&<0" {
		t.Errorf("device t'&<0: %+v, %v\n%s", p, err, xml)
	}
}
