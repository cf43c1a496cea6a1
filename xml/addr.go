package netxml

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// ParseAddr parses an IPv4 or IPv6 address the way vnet accepts it in network
// XML: dotted quad or RFC 4291 text, no zone.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return a, nil
}

// FormatAddr writes an address as libvirt does (glibc's inet_ntop): IPv6 in
// canonical compressed lower-case form, with the deprecated IPv4-compatible
// form ::a.b.c.d kept as glibc prints it.
func FormatAddr(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		b := a.As16()
		zero := true
		for _, x := range b[:12] {
			if x != 0 {
				zero = false
				break
			}
		}
		if zero && (b[12] != 0 || b[13] != 0) {
			return "::" + netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}).String()
		}
	}
	return a.String()
}

// canonAddr returns s in libvirt's canonical form, or ok=false if s is no address.
func canonAddr(s string) (string, bool) {
	a, err := ParseAddr(s)
	if err != nil {
		return "", false
	}
	return FormatAddr(a), true
}

// familyOf returns "ipv4" or "ipv6" for an address.
func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "ipv4"
	}
	return "ipv6"
}

// netmaskBits returns the prefix length of a contiguous IPv4 netmask.
func netmaskBits(mask netip.Addr) (int, bool) {
	if !mask.Is4() {
		return 0, false
	}
	b := mask.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for n < 32 && v&(1<<(31-n)) != 0 {
		n++
	}
	if n < 32 && v<<n != 0 {
		return 0, false
	}
	return n, true
}

// IPPrefixLen returns the prefix length of an <ip> element as libvirt computes
// it (see PrefixLen).
func IPPrefixLen(ip libvirtxml.NetworkIP) (int, error) {
	a, err := ParseAddr(ip.Address)
	if err != nil {
		return 0, Errorf(KindXML, "Invalid address '%s'", ip.Address)
	}
	return PrefixLen(a, ip.Prefix, ip.Netmask)
}

// PrefixLen is libvirt's rule for the prefix length of an address given with
// a prefix and/or a netmask attribute (virSocketAddrGetIPPrefix), the one
// implementation every package uses: the prefix when it is not 0, else the
// netmask (IPv4, contiguous), else the default: for IPv4 the class of the
// first octet (0 → 0, A → 8, B → 16, C → 24; class D and E have none, an
// error), for IPv6 64 (:: → 0).
func PrefixLen(a netip.Addr, prefix uint, netmask string) (int, error) {
	if prefix > 0 {
		if int(prefix) > a.BitLen() {
			return 0, Errorf(KindXML, "Invalid prefix '%d' for address '%s'", prefix, FormatAddr(a))
		}
		return int(prefix), nil
	}
	if netmask != "" {
		m, err := ParseAddr(netmask)
		if err != nil {
			return 0, Errorf(KindXML, "Invalid netmask '%s'", netmask)
		}
		n, ok := netmaskBits(m)
		if !ok || !a.Is4() {
			return 0, Errorf(KindXML, "Invalid netmask '%s'", netmask)
		}
		return n, nil
	}
	if a.Is6() {
		if a.IsUnspecified() {
			return 0, nil
		}
		return 64, nil
	}
	switch b := a.As4()[0]; {
	case b == 0:
		return 0, nil
	case b&0x80 == 0:
		return 8, nil
	case b&0xc0 == 0x80:
		return 16, nil
	case b&0xe0 == 0xc0:
		return 24, nil
	}
	return 0, Errorf(KindXML, "address '%s' needs a prefix or netmask (no classful default exists for it)", FormatAddr(a))
}

// IPNet returns the interface address of an <ip> element with its prefix
// length (e.g. 192.168.122.1/24), not masked. Use .Masked() for the subnet.
func IPNet(ip libvirtxml.NetworkIP) (netip.Prefix, error) {
	a, err := ParseAddr(ip.Address)
	if err != nil {
		return netip.Prefix{}, Errorf(KindXML, "Invalid address '%s'", ip.Address)
	}
	n, err := PrefixLen(a, ip.Prefix, ip.Netmask)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, n), nil
}

// RouteDst returns the destination of a static <route> (masked). Its prefix
// length follows PrefixLen when the route has a prefix or netmask; without
// either, vnet's parser accepts only a host route (libvirt refuses any other
// address), so the default is the full address length.
func RouteDst(r libvirtxml.NetworkRoute) (netip.Prefix, error) {
	a, err := ParseAddr(r.Address)
	if err != nil {
		return netip.Prefix{}, Errorf(KindXML, "Bad network address '%s' in route definition", r.Address)
	}
	n := a.BitLen()
	if r.Prefix != 0 || r.Netmask != "" {
		if n, err = PrefixLen(a, r.Prefix, r.Netmask); err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(a, n).Masked(), nil
}

// IPFamily returns "ipv4" or "ipv6" for an <ip> element (from its address,
// falling back to the family attribute).
func IPFamily(ip libvirtxml.NetworkIP) string {
	if a, err := ParseAddr(ip.Address); err == nil {
		return familyOf(a)
	}
	if ip.Family == "ipv6" {
		return "ipv6"
	}
	return "ipv4"
}

// HasDHCP reports whether an <ip> serves DHCP, as libvirt counts it: its <dhcp>
// has at least one <range> or <host>.
func HasDHCP(ip libvirtxml.NetworkIP) bool {
	return ip.DHCP != nil && (len(ip.DHCP.Ranges) > 0 || len(ip.DHCP.Hosts) > 0)
}

// IPsOf returns pointers to the network's <ip> elements of one family ("ipv4" or
// "ipv6"; "" for all), in document order.
func (n *Network) IPsOf(family string) []*libvirtxml.NetworkIP {
	var out []*libvirtxml.NetworkIP
	for i := range n.IPs {
		if family == "" || IPFamily(n.IPs[i]) == family {
			out = append(out, &n.IPs[i])
		}
	}
	return out
}

// IPv4DHCP returns the IPv4 <ip> that serves DHCP (see HasDHCP), or nil.
func (n *Network) IPv4DHCP() *libvirtxml.NetworkIP { return n.dhcpOf("ipv4") }

// IPv6DHCP returns the IPv6 <ip> that serves DHCPv6 (see HasDHCP), or nil.
func (n *Network) IPv6DHCP() *libvirtxml.NetworkIP { return n.dhcpOf("ipv6") }

func (n *Network) dhcpOf(family string) *libvirtxml.NetworkIP {
	for _, ip := range n.IPsOf(family) {
		if HasDHCP(*ip) {
			return ip
		}
	}
	return nil
}

// ForwardDev returns the device the network forwards through: the first
// forward <interface dev> (which is what <forward dev> means), or "" when there
// is none or the pool is defined by a <pf>. Prefer it to Forward.Dev, which
// Parse keeps in sync but net-update edits of the interface list may not.
func (n *Network) ForwardDev() string {
	if n.Forward == nil || len(n.Forward.PFs) > 0 {
		return ""
	}
	if len(n.Forward.Interfaces) > 0 {
		return n.Forward.Interfaces[0].Dev
	}
	return n.Forward.Dev
}

// SyncForwardDev sets Forward.Dev to what <forward dev> means: the first
// forward <interface dev>, or "" when there is none or a <pf> defines the
// pool. Call it after editing Forward.Interfaces (net-update), since Format
// takes the dev from the interface list and firewall code reads Forward.Dev.
func (n *Network) SyncForwardDev() {
	if n.Forward == nil {
		return
	}
	n.Forward.Dev = ""
	if len(n.Forward.PFs) == 0 && len(n.Forward.Interfaces) > 0 {
		n.Forward.Dev = n.Forward.Interfaces[0].Dev
	}
}

// parseMAC parses a MAC address (six groups of one or two hex digits
// separated by ':' or '-') and returns it in lower-case xx:xx:xx:xx:xx:xx form.
func parseMAC(s string) (string, [6]byte, bool) {
	var b [6]byte
	sep := ":"
	if !strings.Contains(s, ":") {
		sep = "-"
	}
	parts := strings.Split(s, sep)
	if len(parts) != 6 {
		return "", b, false
	}
	for i, p := range parts {
		if len(p) < 1 || len(p) > 2 {
			return "", b, false
		}
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return "", b, false
		}
		b[i] = byte(v)
	}
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]), b, true
}

// CanonicalMAC returns a MAC address in vnet's canonical lower-case form.
func CanonicalMAC(s string) (string, error) {
	m, _, ok := parseMAC(s)
	if !ok {
		return "", Errorf(KindXML, "Invalid MAC address '%s'", s)
	}
	return m, nil
}
