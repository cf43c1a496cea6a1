package netxml

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"libvirt.org/go/libvirtxml"
)

// NetworkNS is the namespace URI of vnet's network extensions: the
// user-mode forward <vnet:forward mode='user'> and the overlay
// <vnet:overlay> (overlay.go).
const NetworkNS = "urn:vnet:network:1"

// UserForward is vnet's forward mode 'user' (<vnet:forward
// xmlns:vnet='urn:vnet:network:1' mode='user'>): no bridge, no root; each
// port of the network is one passt process, run by the unprivileged
// session vnetd, that gives its one guest the network's <ip> by DHCP and
// NATs through the user's own sockets. The element's children are port
// forwards written as libvirt's domain <portForward> (proto, address, dev,
// <range start end to exclude>), as for <interface type='user'> with
// <backend type='passt'/>.
type UserForward struct {
	PortForwards []libvirtxml.DomainInterfaceSourcePortForward
}

// userForward parses <vnet:forward> (any prefix bound to NetworkNS).
func (p *parser) userForward(root *elem, n *Network) error {
	var found *elem
	for _, it := range root.items {
		if it.el == nil || it.el.uri != NetworkNS {
			continue
		}
		if it.el.local == "overlay" {
			continue // overlay.go
		}
		if it.el.local != "forward" {
			return xmlErr("unknown element <%s> in vnet's network namespace %s", it.el.qname(), NetworkNS)
		}
		if found != nil {
			return xmlErr("only one <vnet:forward> element is allowed in network '%s'", p.name)
		}
		found = it.el
	}
	if found == nil {
		return nil
	}
	if mode, _ := found.attr("mode"); mode != "user" {
		return xmlErr("unknown vnet forward mode '%s' in network '%s' (vnet adds only mode='user')", mode, p.name)
	}
	if n.Forward != nil {
		return xmlErr("network '%s' has both <forward> and <vnet:forward>", p.name)
	}
	u := &UserForward{}
	for _, pe := range found.kids("portForward") {
		pf := libvirtxml.DomainInterfaceSourcePortForward{}
		proto, _ := pe.attr("proto")
		if proto != "tcp" && proto != "udp" {
			return xmlErr("invalid portForward proto '%s' in network '%s' (tcp or udp)", proto, p.name)
		}
		pf.Proto = proto
		if a, ok := xpathAttr(pe, "address"); ok {
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				return xmlErr("invalid portForward address '%s' in network '%s'", a, p.name)
			}
			pf.Address = ip.String()
		}
		if d, ok := xpathAttr(pe, "dev"); ok {
			if err := CheckIfName(d); err != nil {
				return err
			}
			pf.Dev = d
		}
		for _, re := range pe.kids("range") {
			r := libvirtxml.DomainInterfaceSourcePortForwardRange{}
			for _, f := range []struct {
				name string
				dst  *uint
			}{{"start", &r.Start}, {"end", &r.End}, {"to", &r.To}} {
				v, ok := re.attr(f.name)
				if !ok {
					continue
				}
				n, err := strconv.ParseUint(v, 10, 16)
				if err != nil || n == 0 {
					return xmlErr("invalid portForward range %s '%s' in network '%s' (1 to 65535)", f.name, v, p.name)
				}
				*f.dst = uint(n)
			}
			if r.Start == 0 {
				return xmlErr("portForward range without start in network '%s'", p.name)
			}
			if r.End != 0 && r.End < r.Start {
				return xmlErr("portForward range end %d is below its start %d in network '%s'", r.End, r.Start, p.name)
			}
			if r.To != 0 && r.To+rangeSpan(r)-1 > 65535 {
				return xmlErr("portForward range to %d-%d goes beyond port 65535 in network '%s'", r.To, r.To+rangeSpan(r)-1, p.name)
			}
			ex, err := tristate(re, "exclude")
			if err != nil {
				return err
			}
			if ex == "yes" {
				r.Exclude = "yes"
			}
			pf.Ranges = append(pf.Ranges, r)
		}
		u.PortForwards = append(u.PortForwards, pf)
	}
	n.User = u
	return nil
}

// validateUser checks a network of forward mode 'user': one IPv4 <ip>,
// one IPv6 <ip> or one of each (see UserIPs), nothing that needs a
// bridge, port forwards bound to addresses of a family the network has,
// and port forwards that do not overlap.
func validateUser(n *Network) error {
	bad := func(what string) error {
		return Errorf(KindUnsupported, "%s is not supported on network '%s' with forward mode 'user'", what, n.Name)
	}
	switch {
	case n.Bridge != nil:
		return bad("<bridge>")
	case n.MAC != nil:
		return bad("<mac>")
	case n.MTU != nil:
		return bad("<mtu>")
	case n.Domain != nil:
		return bad("<domain>")
	case len(n.Routes) > 0:
		return bad("<route>")
	case len(n.PortGroups) > 0:
		return bad("<portgroup>")
	case n.Bandwidth != nil:
		return bad("<bandwidth>")
	case n.VLAN != nil:
		return bad("<vlan>")
	case n.VirtualPort != nil:
		return bad("<virtualport>")
	case n.DnsmasqOptions != nil:
		return bad("<dnsmasq:options>")
	case n.DNS != nil && (len(n.DNS.Host) > 0 || len(n.DNS.SRVs) > 0 || len(n.DNS.TXTs) > 0):
		return bad("DNS host, SRV and TXT records")
	}
	v4, v6, err := UserIPs(n)
	if err != nil {
		return err
	}
	for _, pf := range n.User.PortForwards {
		if pf.Address == "" {
			continue
		}
		a, err := netip.ParseAddr(pf.Address)
		if err != nil {
			return Errorf(KindXML, "invalid portForward address '%s' in network '%s'", pf.Address, n.Name)
		}
		if a.Is4() && !v4.Gateway.IsValid() || a.Is6() && !v6.Gateway.IsValid() {
			fam := "IPv4"
			if a.Is6() {
				fam = "IPv6"
			}
			return Errorf(KindXML, "portForward address '%s' in network '%s' is %s, but the network has no %s <ip> (passt runs without that family and cannot bind it)", pf.Address, n.Name, fam, fam)
		}
	}
	// Overlapping host ports: one passt could not bind both.
	type span struct {
		proto, addr string
		lo, hi      uint
	}
	var spans []span
	for _, pf := range n.User.PortForwards {
		for _, r := range pf.Ranges {
			if r.Exclude == "yes" {
				continue
			}
			spans = append(spans, span{pf.Proto, pf.Address, r.Start, r.Start + rangeSpan(r) - 1})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := range spans {
		for j := i + 1; j < len(spans); j++ {
			a, b := spans[i], spans[j]
			if a.proto != b.proto || b.lo > a.hi || (a.addr != "" && b.addr != "" && a.addr != b.addr) {
				continue
			}
			return Errorf(KindXML, "port forwards overlap in network '%s': %s %s and %s %s", n.Name, a.proto, portSpan(a.lo, a.hi), b.proto, portSpan(b.lo, b.hi))
		}
	}
	return nil
}

func portSpan(lo, hi uint) string {
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// rangeSpan is the number of ports of a range.
func rangeSpan(r libvirtxml.DomainInterfaceSourcePortForwardRange) uint {
	if r.End == 0 {
		return 1
	}
	return r.End - r.Start + 1
}

// UserIP is what passt gives the guest of a user-mode network in one
// address family.
type UserIP struct {
	// Gateway is the <ip address> with its prefix: passt's --gateway. For
	// IPv4 it is the router DHCP hands out; for IPv6 passt answers
	// neighbour solicitations for it, while its router advertisements (the
	// guest's default route) come from passt's link-local address.
	Gateway netip.Prefix
	// Guest is the guest's address, passt's --address (by DHCP, or DHCPv6
	// with the /64 in passt's router advertisement): the DHCP range's
	// start, else the address after the gateway.
	Guest netip.Addr
}

// UserIPs returns a user-mode network's IPv4 and IPv6 settings, the
// Gateway of a family the network lacks being the zero (invalid) prefix.
// The network has one IPv4 <ip> (prefix 1 to 30), one IPv6 <ip> (prefix
// 64: Debian 12's passt always announces the guest's address as a /64 and
// has no option for another prefix) or one of each.
func UserIPs(n *Network) (v4, v6 UserIP, err error) {
	need := func() error {
		return Errorf(KindXML, "network '%s' with forward mode 'user' needs one IPv4 <ip address prefix>, one IPv6 <ip family='ipv6' address prefix='64'> or one of each (the gateway its guest sees)", n.Name)
	}
	if len(n.IPs) == 0 || len(n.IPs) > 2 {
		return v4, v6, need()
	}
	for _, ip := range n.IPs {
		a, err1 := netip.ParseAddr(ip.Address)
		if err1 != nil {
			return v4, v6, Errorf(KindXML, "network '%s': invalid <ip address='%s'>", n.Name, ip.Address)
		}
		u := &v4
		if a.Is6() {
			u = &v6
		}
		if u.Gateway.IsValid() {
			return v4, v6, need()
		}
		if a.Is4() && (ip.Prefix == 0 || ip.Prefix > 30) {
			return v4, v6, Errorf(KindXML, "network '%s': <ip address='%s' prefix='%d'> must be an IPv4 address with a prefix of 1 to 30", n.Name, ip.Address, ip.Prefix)
		}
		if a.Is6() && ip.Prefix != 64 {
			return v4, v6, Errorf(KindXML, "network '%s': <ip family='ipv6' address='%s' prefix='%d'> needs prefix='64': passt announces the guest's address as a /64 and cannot use another prefix", n.Name, ip.Address, ip.Prefix)
		}
		u.Gateway = netip.PrefixFrom(a, int(ip.Prefix))
		u.Guest = a.Next()
		if ip.DHCP != nil && len(ip.DHCP.Ranges) > 0 {
			if u.Guest, err1 = netip.ParseAddr(ip.DHCP.Ranges[0].Start); err1 != nil {
				return v4, v6, Errorf(KindXML, "network '%s': invalid DHCP range start '%s'", n.Name, ip.DHCP.Ranges[0].Start)
			}
		}
		subnet := u.Gateway.Masked()
		if !subnet.Contains(u.Guest) || u.Guest == a || u.Guest == subnet.Addr() || (a.Is4() && u.Guest == lastAddr(u.Gateway)) {
			return v4, v6, Errorf(KindXML, "network '%s': the guest's address %s is not a host address of %s other than the gateway", n.Name, u.Guest, subnet)
		}
	}
	return v4, v6, nil
}

// formatUserForward writes <vnet:forward mode='user'> and its port forwards.
func formatUserForward(w *writer, u *UserForward) {
	if u == nil {
		return
	}
	t := w.start("vnet:forward").rattr("xmlns:vnet", NetworkNS).attr("mode", "user")
	if len(u.PortForwards) == 0 {
		t.empty()
		return
	}
	t.open()
	for _, pf := range u.PortForwards {
		pt := w.start("portForward").attr("proto", pf.Proto).attr("address", pf.Address).attr("dev", pf.Dev)
		if len(pf.Ranges) == 0 {
			pt.empty()
			continue
		}
		pt.open()
		for _, r := range pf.Ranges {
			rt := w.start("range").uattr("start", r.Start)
			if r.End != 0 {
				rt.uattr("end", r.End)
			}
			if r.To != 0 {
				rt.uattr("to", r.To)
			}
			rt.attr("exclude", r.Exclude).empty()
		}
		w.end("portForward")
	}
	w.end("vnet:forward")
}
