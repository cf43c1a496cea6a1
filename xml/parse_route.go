package netxml

import (
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Parsing of static <route> elements and the check that their gateways
// are reachable.

func (p *parser) route(e *elem) (libvirtxml.NetworkRoute, error) {
	r := libvirtxml.NetworkRoute{}
	r.Family, _ = e.attr("family")
	if r.Family != "" && r.Family != "ipv4" && r.Family != "ipv6" {
		return r, xmlErr("Unrecognized family '%s' in route definition of network '%s'", r.Family, p.name)
	}
	address, ok := e.attr("address")
	if !ok {
		return r, xmlErr("Missing required address attribute in route definition of network '%s'", p.name)
	}
	a, err := ParseAddr(address)
	if err != nil {
		return r, xmlErr("Bad network address '%s' in route definition of network '%s'", address, p.name)
	}
	gw, ok := e.attr("gateway")
	if !ok {
		return r, xmlErr("Missing required gateway attribute in route definition of network '%s'", p.name)
	}
	g, err := ParseAddr(gw)
	if err != nil {
		return r, xmlErr("Bad gateway address '%s' in route definition of network '%s'", gw, p.name)
	}
	if a.Is4() != g.Is4() {
		return r, xmlErr("Route address '%s' and gateway '%s' have different families in network '%s'", address, gw, p.name)
	}
	if (r.Family == "ipv6") != a.Is6() {
		return r, xmlErr("%s family specified for %s address '%s' in route definition of network '%s'", orNo(r.Family), familyOf(a), address, p.name)
	}
	r.Address, r.Gateway = FormatAddr(a), FormatAddr(g)
	prefix, hasPrefix, err := uintAttr(e, "prefix", 128)
	if err != nil {
		return r, xmlErr("Invalid prefix in route definition of network '%s'", p.name)
	}
	if nm, ok := e.attr("netmask"); ok {
		if hasPrefix {
			return r, xmlErr("Route definition of network '%s' cannot have both a prefix and a netmask", p.name)
		}
		m, err := ParseAddr(nm)
		if err != nil || !a.Is4() || !m.Is4() {
			return r, xmlErr("Bad netmask address '%s' in route definition of network '%s'", nm, p.name)
		}
		if _, ok := netmaskBits(m); !ok {
			return r, xmlErr("Bad netmask address '%s' in route definition of network '%s'", nm, p.name)
		}
		r.Netmask = FormatAddr(m)
	} else if hasPrefix {
		if int(prefix) > a.BitLen() {
			return r, xmlErr("Invalid prefix %d in route definition of network '%s'", prefix, p.name)
		}
		if prefix == 0 {
			// libvirtxml cannot tell prefix='0' from no prefix; vnet does not
			// keep a prefix-0 route rather than silently changing its meaning.
			return r, Errorf(KindUnsupported, "route with prefix 0 in network '%s' is not supported by vnet", p.name)
		}
		r.Prefix = prefix
	}
	if dst, err := RouteDst(r); err != nil || dst.Addr() != a {
		return r, xmlErr("network '%s' has an invalid netmask or IP address in route definition: '%s' is not a network address", p.name, address)
	}
	if m, ok := e.attr("metric"); ok {
		v, err := strconv.ParseUint(strings.TrimSpace(m), 10, 32)
		if err != nil || v == 0 {
			return r, xmlErr("Invalid metric value, must be > 0 in route definition of network '%s'", p.name)
		}
		r.Metric = strconv.FormatUint(v, 10)
	}
	return r, nil
}

func orNo(s string) string {
	if s == "" {
		return "no"
	}
	return s
}

// routeGateways checks that each static route's gateway is directly reachable
// through one of the network's own addresses.
func (p *parser) routeGateways(n *Network) error {
	for _, r := range n.Routes {
		g, err := ParseAddr(r.Gateway)
		if err != nil {
			continue
		}
		ok := false
		for _, ip := range n.IPs {
			pfx, err := IPNet(ip)
			if err == nil && pfx.Masked().Contains(g) {
				ok = true
				break
			}
		}
		if !ok {
			return Errorf(KindUnsupported, "unreachable static route gateway '%s' specified for network '%s'", r.Gateway, p.name)
		}
	}
	return nil
}
