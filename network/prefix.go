package network

import (
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"strconv"

	"libvirt.org/go/libvirtxml"
)

// ipAddr returns the interface address of an <ip> element: the address with
// its prefix length (not masked), e.g. 192.168.122.1/24.
//
// The prefix length comes from prefix=, else netmask=, else libvirt's default:
// the classful length for IPv4 (A /8, B /16, C /24) and /64 for IPv6.
func ipAddr(ip libvirtxml.NetworkIP) (netip.Prefix, error) {
	addr, err := netip.ParseAddr(ip.Address)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q", ip.Address)
	}
	addr = addr.Unmap()
	if err := checkFamily(ip.Family, addr); err != nil {
		return netip.Prefix{}, err
	}
	bitsLen, err := prefixLen(addr, ip.Prefix, ip.Netmask)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %s: %w", ip.Address, err)
	}
	if bitsLen < 0 {
		bitsLen, err = defaultPrefixLen(addr)
		if err != nil {
			return netip.Prefix{}, err
		}
	}
	return netip.PrefixFrom(addr, bitsLen), nil
}

// route is a parsed <route>: destination (masked), gateway and metric.
type route struct {
	Dst    netip.Prefix
	Gw     netip.Addr
	Metric int
}

func (r route) String() string {
	return fmt.Sprintf("%s via %s metric %d", r.Dst, r.Gw, r.Metric)
}

// parseRoute parses a <route>. A missing or zero metric means 1, as in
// libvirt; a missing prefix/netmask means a host route.
func parseRoute(r libvirtxml.NetworkRoute) (route, error) {
	addr, err := netip.ParseAddr(r.Address)
	if err != nil {
		return route{}, fmt.Errorf("route: invalid address %q", r.Address)
	}
	addr = addr.Unmap()
	if err := checkFamily(r.Family, addr); err != nil {
		return route{}, fmt.Errorf("route %s: %w", r.Address, err)
	}
	gw, err := netip.ParseAddr(r.Gateway)
	if err != nil {
		return route{}, fmt.Errorf("route %s: invalid gateway %q", r.Address, r.Gateway)
	}
	gw = gw.Unmap()
	if gw.Is4() != addr.Is4() {
		return route{}, fmt.Errorf("route %s: gateway %s is of another family", r.Address, r.Gateway)
	}
	n, err := prefixLen(addr, r.Prefix, r.Netmask)
	if err != nil {
		return route{}, fmt.Errorf("route %s: %w", r.Address, err)
	}
	if n < 0 {
		n = addr.BitLen()
	}
	metric := 1
	if r.Metric != "" {
		m, err := strconv.ParseUint(r.Metric, 10, 32)
		if err != nil {
			return route{}, fmt.Errorf("route %s: invalid metric %q", r.Address, r.Metric)
		}
		if m > 0 {
			metric = int(m)
		}
	}
	return route{Dst: netip.PrefixFrom(addr, n).Masked(), Gw: gw, Metric: metric}, nil
}

// prefixLen returns the prefix length given by prefix= or netmask=, or -1
// when neither is set.
func prefixLen(addr netip.Addr, prefix uint, netmask string) (int, error) {
	switch {
	case prefix != 0:
		if int(prefix) > addr.BitLen() {
			return 0, fmt.Errorf("prefix %d is too long", prefix)
		}
		return int(prefix), nil
	case netmask != "":
		m, err := netip.ParseAddr(netmask)
		if err != nil || !m.Is4() || !addr.Is4() {
			return 0, fmt.Errorf("invalid netmask %q", netmask)
		}
		v := m.As4()
		u := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
		ones := bits.LeadingZeros32(^u)
		if u<<ones != 0 {
			return 0, fmt.Errorf("netmask %q is not contiguous", netmask)
		}
		return ones, nil
	}
	return -1, nil
}

// defaultPrefixLen is libvirt's prefix for an address without prefix or
// netmask (virSocketAddrGetIPPrefix).
func defaultPrefixLen(addr netip.Addr) (int, error) {
	if addr.Is6() {
		return 64, nil
	}
	switch b := addr.As4()[0]; {
	case b < 128:
		return 8, nil
	case b < 192:
		return 16, nil
	case b < 224:
		return 24, nil
	}
	return 0, fmt.Errorf("address %s: no prefix and no classful default", addr)
}

func checkFamily(family string, addr netip.Addr) error {
	switch family {
	case "", "ipv4", "ipv6":
	default:
		return fmt.Errorf("unknown family %q", family)
	}
	if (family == "ipv6" && addr.Is4()) || (family == "ipv4" && addr.Is6()) {
		return fmt.Errorf("address %s is not of family %s", addr, family)
	}
	return nil
}

// netIPNet converts a netip.Prefix to the *net.IPNet netlink wants, keeping
// the host bits (for interface addresses).
func netIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// fromIPNet converts a netlink *net.IPNet back to a netip.Prefix (host bits kept).
func fromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// overlaps reports whether two prefixes share any address (one contains the other).
func overlaps(a, b netip.Prefix) bool {
	return a.Masked().Overlaps(b.Masked())
}

// networkAddrs returns the interface addresses of every <ip> of n.
func networkAddrs(ips []libvirtxml.NetworkIP) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ips))
	for _, ip := range ips {
		p, err := ipAddr(ip)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// hasIPv6 reports whether any <ip> is an IPv6 address.
func hasIPv6(ips []libvirtxml.NetworkIP) bool {
	for _, ip := range ips {
		if ip.Family == "ipv6" {
			return true
		}
		if a, err := netip.ParseAddr(ip.Address); err == nil && a.Unmap().Is6() {
			return true
		}
	}
	return false
}
