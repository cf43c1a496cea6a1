package network

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	netxml "vnet/xml"
)

// CheckHostConflicts fails when a subnet of n overlaps an address or a route
// of the main routing table that belongs to an interface other than n's own
// bridge, with libvirt's message "internal error: Network is already in use by
// interface up0".
//
// libvirt only catches a route with exactly the same network and prefix; this
// also catches a subnet containing or contained in another one. Not counted:
// default routes (they would overlap everything), link-local and multicast
// prefixes, routes without an interface (blackhole, unreachable), and the
// local/broadcast routes the kernel derives from addresses (addresses are
// checked directly, also on interfaces that are down).
func CheckHostConflicts(n *netxml.Network) error {
	ours, err := networkAddrs(n.IPs)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	if len(ours) == 0 {
		return nil
	}
	h, err := newHandle()
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	defer h.Close()
	// Names are looked up only for the links of overlapping prefixes: a
	// listing of every link per start (the costliest dump to parse) grew
	// with the number of networks.
	own := n.BridgeName()
	names := map[int]string{}
	foreign := func(idx int) (string, bool) {
		name, ok := names[idx]
		if !ok {
			l, err := h.LinkByIndex(idx)
			if err != nil {
				return "", false // gone meanwhile
			}
			name = l.Attrs().Name
			names[idx] = name
		}
		return name, name != own
	}

	addrs, err := h.addrs(nil)
	if err != nil {
		return fmt.Errorf("network %q: list addresses: %w", n.Name, err)
	}
	routes, err := h.routes(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("network %q: list routes: %w", n.Name, err)
	}
	for _, sub := range ours {
		for _, a := range addrs {
			p, ok := addrPrefix(a)
			if !ok || IgnoredPrefix(p) || !overlaps(sub, p) {
				continue
			}
			if name, ok := foreign(a.LinkIndex); ok {
				return inUse(name)
			}
		}
		for _, r := range routes {
			if r.Type != unix.RTN_UNICAST || r.Scope == unix.RT_SCOPE_HOST {
				continue
			}
			dst, ok := fromIPNet(r.Dst)
			if !ok || dst.Bits() == 0 || IgnoredPrefix(dst) || !overlaps(sub, dst) {
				continue
			}
			for _, idx := range routeLinks(r) {
				if name, ok := foreign(idx); ok {
					return inUse(name)
				}
			}
		}
	}
	return nil
}

func inUse(name string) error {
	return netxml.Errorf(netxml.KindInternal, "Network is already in use by interface %s", name)
}

// IgnoredPrefix reports prefixes that never conflict with a network's
// subnet (link-local and multicast): the start's conflict check and
// net-doctor's overlap check skip the same ones.
func IgnoredPrefix(p netip.Prefix) bool {
	a := p.Masked().Addr()
	return a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLinkLocalMulticast()
}

// routeLinks returns the output interfaces of a route (all hops of a multipath route).
func routeLinks(r netlink.Route) []int {
	if len(r.MultiPath) == 0 {
		return []int{r.LinkIndex}
	}
	idx := make([]int, 0, len(r.MultiPath))
	for _, nh := range r.MultiPath {
		idx = append(idx, nh.LinkIndex)
	}
	return idx
}
