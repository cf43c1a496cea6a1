package network

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// ipAddr returns the interface address of an <ip> element: the address with
// its prefix length (not masked, netxml.IPNet), e.g. 192.168.122.1/24.
func ipAddr(ip libvirtxml.NetworkIP) (netip.Prefix, error) {
	p, err := netxml.IPNet(ip)
	if err != nil {
		return netip.Prefix{}, err
	}
	if err := checkFamily(ip.Family, p.Addr()); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
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
	dst, err := netxml.RouteDst(r)
	if err != nil {
		return route{}, fmt.Errorf("route %s: %w", r.Address, err)
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
	return route{Dst: dst, Gw: gw, Metric: metric}, nil
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
