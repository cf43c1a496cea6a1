package netxml

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"libvirt.org/go/libvirtxml"
)

// Parse parses libvirt network XML into a Network and applies the checks
// libvirt's parser does, with libvirt's messages.
//
// Beyond libvirtxml it understands <title>, <description> and the dnsmasq
// namespace (<dnsmasq:options>, any prefix bound to DnsmasqNS). It
// normalises like libvirt: a <forward> without mode becomes mode='nat' (mode
// 'none' means no <forward>); <forward dev> becomes the first forward
// <interface> (Forward.Dev stays set to it); MAC addresses are lower-case,
// IP addresses canonical, the uuid dashed lower-case, <bridge stp> 'on'/'off',
// lease units explicit, portgroup default 'yes' or absent. Live-only
// attributes (connections) are ignored. Unlike libvirt's parser, Parse does not
// invent a missing uuid: FillDefaults does, so callers can tell whether the
// document had one.
//
// Semantic checks that need the whole definition (DHCP ranges inside their
// subnet, one DHCP per family, bridge name syntax …) are in Validate.
func Parse(data []byte) (*Network, error) {
	root, err := parseDoc(data)
	if err != nil {
		return nil, err
	}
	if root.local != "network" || root.prefix != "" || root.uri != "" {
		return nil, Errorf(KindXML, "expecting root element of 'network', not '%s'", root.qname())
	}
	p := &parser{}
	n, err := p.network(root)
	if err != nil {
		return nil, err
	}
	return n, nil
}

type parser struct {
	name string // network name, for messages
}

func xmlErr(format string, args ...any) error { return Errorf(KindXML, format, args...) }

// badAttr is libvirt's message for an attribute value outside its enum.
func badAttr(e *elem, attr, val string) error {
	return xmlErr("Invalid value for attribute '%s' in element '%s': '%s'.", attr, e.local, val)
}

// xpathAttr reads an attribute the way libvirt's virXPathString does: an
// empty value counts as absent.
func xpathAttr(e *elem, name string) (string, bool) {
	v, ok := e.attr(name)
	return v, ok && v != ""
}

// tristate reads a yes/no attribute ("" when absent).
func tristate(e *elem, attr string) (string, error) {
	v, ok := e.attr(attr)
	if !ok {
		return "", nil
	}
	if v != "yes" && v != "no" {
		return "", badAttr(e, attr, v)
	}
	return v, nil
}

// enumAttr reads an attribute that must be one of allowed ("" when absent).
func enumAttr(e *elem, attr string, allowed ...string) (string, error) {
	v, ok := e.attr(attr)
	if !ok {
		return "", nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", badAttr(e, attr, v)
}

// uintAttr reads a decimal unsigned attribute no larger than max.
func uintAttr(e *elem, attr string, max uint64) (uint, bool, error) {
	v, ok := e.attr(attr)
	if !ok {
		return 0, false, nil
	}
	u, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil || u > max {
		return 0, false, xmlErr("Invalid value for attribute '%s' in element '%s': '%s'. Expected non-negative integer value", attr, e.local, v)
	}
	return uint(u), true, nil
}

// uintAttrBase0 reads an unsigned attribute in C's base-0 notation (0x… hex,
// 0… octal, else decimal), as libvirt does for PCI addresses.
func uintAttrBase0(e *elem, attr string, max uint64) (*uint, error) {
	v, ok := e.attr(attr)
	if !ok {
		return nil, nil
	}
	s := strings.TrimSpace(v)
	base := 10
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		s, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	u, err := strconv.ParseUint(s, base, 64)
	if err != nil || u > max || strings.ContainsAny(s, "+-_") {
		return nil, xmlErr("Invalid value for attribute '%s' in element '%s': '%s'", attr, e.local, v)
	}
	x := uint(u)
	return &x, nil
}

func attrOr(e *elem, name string) string { v, _ := e.attr(name); return v }

func detail(format string, args ...any) error { return Errorf(KindPlain, format, args...) }

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func (p *parser) network(root *elem) (*Network, error) {
	n := &Network{}
	n.XMLName.Local = "network"

	nameEl := root.first("name")
	if nameEl != nil {
		n.Name = nameEl.text()
	}
	if err := checkName(n.Name); err != nil {
		return nil, err
	}
	p.name = n.Name

	if u := root.first("uuid"); u != nil && u.text() != "" {
		s, err := NormalizeUUID(u.text())
		if err != nil {
			return nil, Errorf(KindInternal, "malformed uuid element")
		}
		n.UUID = s
	}
	if t := root.first("title"); t != nil {
		n.Title = t.text()
		if strings.ContainsAny(n.Title, "\r\n") {
			return nil, xmlErr("Network title can't contain newlines")
		}
	}
	if d := root.first("description"); d != nil {
		n.Description = d.text()
	}

	var err error
	if n.TrustGuestRxFilters, err = tristate(root, "trustGuestRxFilters"); err != nil {
		return nil, err
	}
	if v, ok := root.attr("ipv6"); ok {
		if v != "yes" && v != "no" {
			return nil, xmlErr("Invalid ipv6 setting '%s' in network '%s'", v, p.name)
		}
		if v == "yes" {
			n.IPv6 = "yes"
		}
	}

	if m := root.first("metadata"); m != nil {
		n.Metadata = &libvirtxml.NetworkMetadata{XML: metadataXML(m)}
	}

	if b := root.first("bridge"); b != nil {
		if n.Bridge, err = p.bridge(b); err != nil {
			return nil, err
		}
	}
	if m := root.first("mtu"); m != nil && attrOr(m, "size") != "" {
		size, _, err := uintAttr(m, "size", 1<<32-1)
		if err != nil {
			return nil, xmlErr("Invalid mtu size '%s' in network '%s'", attrOr(m, "size"), p.name)
		}
		n.MTU = &libvirtxml.NetworkMTU{Size: size}
	}
	if m := root.first("mac"); m != nil && attrOr(m, "address") != "" {
		v, _ := m.attr("address")
		mac, b, ok := parseMAC(v)
		if !ok {
			return nil, xmlErr("Invalid bridge mac address '%s' in network '%s'", v, p.name)
		}
		if b[0]&1 != 0 {
			return nil, xmlErr("Invalid multicast bridge mac address '%s' in network '%s'", v, p.name)
		}
		n.MAC = &libvirtxml.NetworkMAC{Address: mac}
	}
	if d := root.first("domain"); d != nil {
		dom := &libvirtxml.NetworkDomain{}
		dom.Name, _ = d.attr("name")
		if dom.LocalOnly, err = tristate(d, "localOnly"); err != nil {
			return nil, err
		}
		if dom.Register, err = tristate(d, "register"); err != nil {
			return nil, err
		}
		if dom.Name == "" && (dom.LocalOnly != "" || dom.Register != "") {
			return nil, xmlErr("attribute 'localOnly' or 'register' requires a domain name in network '%s'", p.name)
		}
		if dom.Name != "" {
			n.Domain = dom
		}
	}
	if d := root.first("dns"); d != nil {
		if n.DNS, err = p.dns(d); err != nil {
			return nil, err
		}
	}
	if v := root.first("vlan"); v != nil {
		if n.VLAN, err = parseVLAN(v); err != nil {
			return nil, err
		}
	}
	if b := root.first("bandwidth"); b != nil {
		if n.Bandwidth, err = parseBandwidth(b); err != nil {
			return nil, err
		}
	}
	if po := root.first("port"); po != nil {
		iso, err := tristate(po, "isolated")
		if err != nil {
			return nil, err
		}
		if iso != "" {
			n.PortOptions = &libvirtxml.NetworkPortOptions{Isolated: iso}
		}
	}
	if vp := root.first("virtualport"); vp != nil {
		if n.VirtualPort, err = parseVirtualPort(vp, true); err != nil {
			return nil, err
		}
	}
	for _, pg := range root.kids("portgroup") {
		g, err := p.portgroup(pg)
		if err != nil {
			return nil, err
		}
		n.PortGroups = append(n.PortGroups, g)
	}
	for _, ipEl := range root.kids("ip") {
		ip, err := p.ip(ipEl)
		if err != nil {
			return nil, err
		}
		n.IPs = append(n.IPs, ip)
	}
	for _, r := range root.kids("route") {
		rt, err := p.route(r)
		if err != nil {
			return nil, err
		}
		n.Routes = append(n.Routes, rt)
	}
	if f := root.first("forward"); f != nil {
		if n.Forward, err = p.forward(f); err != nil {
			return nil, err
		}
	}
	if err := p.dnsmasqOptions(root, n); err != nil {
		return nil, err
	}
	if err := p.userForward(root, n); err != nil {
		return nil, err
	}
	if n.Overlay, err = parseOverlay(root); err != nil {
		return nil, err
	}
	if err := p.modeChecks(n); err != nil {
		return nil, err
	}
	if err := p.routeGateways(n); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) dnsmasqOptions(root *elem, n *Network) error {
	for _, it := range root.items {
		e := it.el
		if e == nil || e.uri != DnsmasqNS || e.local != "options" {
			continue
		}
		for _, ot := range e.items {
			o := ot.el
			if o == nil || o.uri != DnsmasqNS || o.local != "option" {
				continue
			}
			v, ok := o.attr("value")
			if !ok {
				return xmlErr("No dnsmasq options value specified")
			}
			if n.DnsmasqOptions == nil {
				n.DnsmasqOptions = &libvirtxml.NetworkDnsmasqOptions{}
			}
			n.DnsmasqOptions.Option = append(n.DnsmasqOptions.Option, libvirtxml.NetworkDnsmasqOption{Value: v})
		}
	}
	return nil
}

// MaxNameLen is the longest network name vnet accepts, in bytes. The name is
// used in file names (NAME.xml, NAME.hostsfile, NAME.addnhosts …), which must
// stay below the usual 255-byte limit with vnet's longest suffix.
const MaxNameLen = 200

// checkName applies libvirt's name check ('/' is refused) and vnet's
// stricter ones: no control characters (a newline would break the dnsmasq
// configuration header and file listings), no leading '.' (hidden files,
// "." and ".."), valid UTF-8, at most MaxNameLen bytes.
func checkName(name string) error {
	if name == "" {
		return Errorf(KindPlain, "missing name information")
	}
	if strings.Contains(name, "/") {
		return Errorf(KindPlain, "invalid char in name: /")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return Errorf(KindPlain, "invalid char in name: 0x%02x", r)
		}
	}
	if !utf8Valid(name) {
		return Errorf(KindPlain, "invalid char in name: not valid UTF-8")
	}
	if name[0] == '.' {
		return Errorf(KindXML, "network name '%s' must not start with '.'", name)
	}
	if len(name) > MaxNameLen {
		return Errorf(KindXML, "network name is too long: %d bytes, the limit is %d", len(name), MaxNameLen)
	}
	return nil
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }
