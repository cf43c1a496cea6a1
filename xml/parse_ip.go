package netxml

import (
	"net/netip"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Parsing of <ip> and its <dhcp>: ranges, static hosts, leases.

func (p *parser) ip(e *elem) (libvirtxml.NetworkIP, error) {
	ip := libvirtxml.NetworkIP{}
	family, hasFamily := xpathAttr(e, "family")
	ip.Family = family
	address, hasAddr := xpathAttr(e, "address")
	netmask, hasMask := xpathAttr(e, "netmask")
	prefix, hasPrefix, err := uintAttr(e, "prefix", 1<<32-1)
	if err != nil {
		return ip, err
	}
	if ip.LocalPtr, err = tristate(e, "localPtr"); err != nil {
		return ip, err
	}
	if !hasAddr {
		return ip, xmlErr("Missing required address attribute in network '%s'", p.name)
	}
	a, err := ParseAddr(address)
	if err != nil {
		return ip, xmlErr("Invalid address '%s' in network '%s'", address, p.name)
	}
	ip.Address = FormatAddr(a)
	switch {
	case !hasFamily || family == "ipv4":
		if !a.Is4() {
			fam := "no"
			if hasFamily {
				fam = family
			}
			return ip, Errorf(KindUnsupported, "%s family specified for non-IPv4 address '%s' in network '%s'", fam, address, p.name)
		}
		if hasMask {
			m, err := ParseAddr(netmask)
			if err != nil {
				return ip, xmlErr("Invalid netmask '%s' in network '%s'", netmask, p.name)
			}
			if !m.Is4() {
				return ip, Errorf(KindUnsupported, "Invalid netmask '%s' for address '%s' in network '%s' (both must be IPv4)", netmask, address, p.name)
			}
			if hasPrefix && prefix > 0 {
				return ip, Errorf(KindUnsupported, "Network '%s' IP address cannot have both a prefix and a netmask", p.name)
			}
			if _, ok := netmaskBits(m); !ok {
				// libvirt accepts a non-contiguous mask and fails later.
				return ip, xmlErr("Invalid netmask '%s' in network '%s'", netmask, p.name)
			}
			ip.Netmask = FormatAddr(m)
			prefix = 0
		} else if prefix > 32 {
			return ip, Errorf(KindUnsupported, "Invalid IPv4 prefix '%d' in network '%s'", prefix, p.name)
		}
	case family == "ipv6":
		if !a.Is6() {
			return ip, Errorf(KindUnsupported, "Family 'ipv6' specified for non-IPv6 address '%s' in network '%s'", address, p.name)
		}
		if hasMask {
			return ip, Errorf(KindUnsupported, "netmask not allowed for IPv6 address '%s' in network '%s'", address, p.name)
		}
		if prefix > 128 {
			return ip, Errorf(KindUnsupported, "Invalid IPv6 prefix '%d' in network '%s'", prefix, p.name)
		}
	default:
		return ip, xmlErr("Unrecognized family '%s' in network '%s'", family, p.name)
	}
	ip.Prefix = prefix

	if d := e.first("dhcp"); d != nil {
		pfx, err := PrefixLen(a, ip.Prefix, ip.Netmask)
		if err != nil {
			return ip, err
		}
		if ip.DHCP, err = p.dhcp(d, netip.PrefixFrom(a, pfx)); err != nil {
			return ip, err
		}
	}
	if t := e.first("tftp"); t != nil {
		if a.Is6() {
			return ip, Errorf(KindUnsupported, "Unsupported <tftp> element in an IPv6 element in network '%s'", p.name)
		}
		if root, _ := t.attr("root"); root != "" {
			ip.TFTP = &libvirtxml.NetworkTFTP{Root: root}
		}
	}
	return ip, nil
}

func (p *parser) lease(e *elem) (*libvirtxml.NetworkDHCPLease, error) {
	l := e.first("lease")
	if l == nil {
		return nil, nil
	}
	v, ok := l.attr("expiry")
	if !ok {
		return nil, nil
	}
	exp, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return nil, xmlErr("Invalid value for attribute 'expiry' in element 'lease': '%s'. Expected non-negative integer value", v)
	}
	unit, hasUnit := l.attr("unit")
	if !hasUnit {
		unit = "minutes"
	}
	if unit != "seconds" && unit != "minutes" && unit != "hours" {
		return nil, xmlErr("Invalid value for attribute 'unit' in element 'lease': '%s'.", unit)
	}
	if exp > 0 && ((unit == "seconds" && exp < 120) || (unit == "minutes" && exp < 2)) {
		return nil, Errorf(KindUnsupported, "The minimum lease time should be greater than 2 minutes")
	}
	out := &libvirtxml.NetworkDHCPLease{Expiry: uint(exp)}
	if exp > 0 {
		out.Unit = unit
	}
	return out, nil
}

func (p *parser) dhcp(d *elem, ipNet netip.Prefix) (*libvirtxml.NetworkDHCP, error) {
	ipAddr := ipNet.Addr()
	dhcp := &libvirtxml.NetworkDHCP{}
	for _, r := range d.kids("range") {
		rg := libvirtxml.NetworkDHCPRange{}
		start, ok := r.attr("start")
		if !ok {
			return nil, xmlErr("Missing 'start' attribute in dhcp range for network '%s'", p.name)
		}
		c, ok := canonAddr(start)
		if !ok {
			return nil, xmlErr("Invalid dhcp range 'start' address '%s' in network '%s'", start, p.name)
		}
		rg.Start = c
		end, ok := r.attr("end")
		if !ok {
			return nil, xmlErr("Missing 'end' attribute in dhcp range for network '%s'", p.name)
		}
		if c, ok = canonAddr(end); !ok {
			return nil, xmlErr("Invalid dhcp range 'end' address '%s' in network '%s'", end, p.name)
		}
		rg.End = c
		if err := CheckRange(rg.Start, rg.End, ipNet); err != nil {
			return nil, err
		}
		var err error
		if rg.Lease, err = p.lease(r); err != nil {
			return nil, err
		}
		dhcp.Ranges = append(dhcp.Ranges, rg)
	}
	for _, h := range d.kids("host") {
		host, err := p.dhcpHost(h, ipAddr)
		if err != nil {
			return nil, err
		}
		dhcp.Hosts = append(dhcp.Hosts, host)
	}
	// libvirt ignores <bootp> under an IPv6 address.
	if b := d.first("bootp"); b != nil && ipAddr.Is4() {
		bp := libvirtxml.NetworkBootp{}
		var ok bool
		if bp.File, ok = b.attr("file"); !ok {
			return nil, xmlErr("Missing required attribute 'file' in element 'bootp'")
		}
		if s, ok := b.attr("server"); ok {
			c, ok := canonAddr(s)
			if !ok {
				return nil, xmlErr("Invalid bootp server address '%s' in network '%s'", s, p.name)
			}
			bp.Server = c
		}
		dhcp.Bootp = []libvirtxml.NetworkBootp{bp}
	}
	return dhcp, nil
}

// dhcpHost parses one static DHCP <host> of the <ip> whose address is ipAddr.
func (p *parser) dhcpHost(h *elem, ipAddr netip.Addr) (libvirtxml.NetworkDHCPHost, error) {
	host := libvirtxml.NetworkDHCPHost{}
	v6 := ipAddr.Is6()
	if mac, ok := h.attr("mac"); ok {
		if v6 {
			return host, xmlErr("Invalid to specify MAC address '%s' in network '%s' IPv6 static host definition", mac, p.name)
		}
		m, b, ok := parseMAC(mac)
		if !ok {
			return host, xmlErr("Cannot parse MAC address '%s' in network '%s'", mac, p.name)
		}
		if b[0]&1 != 0 {
			return host, xmlErr("expected unicast mac address, found multicast '%s' in network '%s'", mac, p.name)
		}
		host.MAC = m
	}
	if id, ok := h.attr("id"); ok {
		for _, c := range id {
			if !strings.ContainsRune("0123456789abcdefABCDEF:", c) {
				return host, xmlErr("Invalid character '%c' in id '%s' of network '%s'", c, id, p.name)
			}
		}
		host.ID = id
	}
	if name, ok := h.attr("name"); ok {
		if name == "" || !(isAlpha(name[0]) || (name[0] >= '0' && name[0] <= '9')) {
			return host, xmlErr("Cannot use host name '%s' in network '%s'", name, p.name)
		}
		host.Name = name
	}
	ip, hasIP := h.attr("ip")
	var a netip.Addr
	if hasIP {
		var err error
		if a, err = ParseAddr(ip); err != nil {
			return host, xmlErr("Invalid IP address in static host definition for network '%s'", p.name)
		}
	}
	if v6 {
		if host.ID == "" && host.Name == "" {
			return host, xmlErr("Static host definition in IPv6 network '%s' must have id or name attribute", p.name)
		}
	} else if host.MAC == "" && host.Name == "" {
		return host, xmlErr("Static host definition in IPv4 network '%s' must have mac or name attribute", p.name)
	}
	if !hasIP {
		return host, xmlErr("Missing IP address in static host definition for network '%s'", p.name)
	}
	if a.Is6() != v6 {
		return host, xmlErr("the address family of a host entry IP must match the address family of the dhcp element's parent")
	}
	host.IP = FormatAddr(a)
	var err error
	if host.Lease, err = p.lease(h); err != nil {
		return host, err
	}
	return host, nil
}
