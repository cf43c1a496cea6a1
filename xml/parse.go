package netxml

import (
	"math"
	"net/netip"
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
	if err := p.modeChecks(n); err != nil {
		return nil, err
	}
	if err := p.routeGateways(n); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) bridge(b *elem) (*libvirtxml.NetworkBridge, error) {
	br := &libvirtxml.NetworkBridge{}
	br.Name, _ = b.attr("name")
	br.Zone, _ = b.attr("zone")
	if stp, ok := xpathAttr(b, "stp"); ok {
		// libvirt: anything but "off" turns STP on.
		br.STP = "on"
		if stp == "off" {
			br.STP = "off"
		}
	}
	if v, ok := xpathAttr(b, "delay"); ok {
		d, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, xmlErr("Invalid delay value in network '%s'", p.name)
		}
		br.Delay = strconv.FormatUint(d, 10)
	}
	if v, ok := xpathAttr(b, "macTableManager"); ok {
		if v != "kernel" && v != "libvirt" {
			return nil, xmlErr("Invalid macTableManager setting '%s' in network '%s'", v, p.name)
		}
		br.MACTableManager = v
	}
	return br, nil
}

func (p *parser) dns(d *elem) (*libvirtxml.NetworkDNS, error) {
	dns := &libvirtxml.NetworkDNS{}
	var err error
	if v, ok := d.attr("enable"); ok {
		if v != "yes" && v != "no" {
			return nil, xmlErr("Invalid dns enable setting '%s' in network '%s'", v, p.name)
		}
		dns.Enable = v
	}
	if v, ok := d.attr("forwardPlainNames"); ok {
		if v != "yes" && v != "no" {
			return nil, xmlErr("Invalid dns forwardPlainNames setting '%s' in network '%s'", v, p.name)
		}
		dns.ForwardPlainNames = v
	}
	for _, f := range d.kids("forwarder") {
		fw := libvirtxml.NetworkDNSForwarder{}
		addr, hasAddr := f.attr("addr")
		if hasAddr {
			c, ok := canonAddr(addr)
			if !ok {
				return nil, xmlErr("Invalid forwarder IP address '%s' in network '%s'", addr, p.name)
			}
			fw.Addr = c
		}
		fw.Domain, _ = f.attr("domain")
		if !hasAddr && fw.Domain == "" {
			return nil, xmlErr("Invalid forwarder element, must contain at least one of addr or domain")
		}
		if fw.Port, _, err = uintAttr(f, "port", 65535); err != nil {
			return nil, err
		}
		dns.Forwarders = append(dns.Forwarders, fw)
	}
	for _, h := range d.kids("host") {
		host, err := p.dnsHost(h)
		if err != nil {
			return nil, err
		}
		dns.Host = append(dns.Host, host)
	}
	for _, s := range d.kids("srv") {
		srv, err := p.dnsSRV(s)
		if err != nil {
			return nil, err
		}
		dns.SRVs = append(dns.SRVs, srv)
	}
	for _, t := range d.kids("txt") {
		txt, err := p.dnsTXT(t)
		if err != nil {
			return nil, err
		}
		dns.TXTs = append(dns.TXTs, txt)
	}
	if dns.Enable == "no" && (len(dns.Forwarders) > 0 || len(dns.Host) > 0 || len(dns.SRVs) > 0 || len(dns.TXTs) > 0) {
		return nil, xmlErr("Extra data in disabled network '%s'", p.name)
	}
	return dns, nil
}

func (p *parser) dnsHost(h *elem) (libvirtxml.NetworkDNSHost, error) {
	host := libvirtxml.NetworkDNSHost{}
	for _, hn := range h.kids("hostname") {
		name := hn.text()
		if name == "" {
			return host, Errorf(KindPlain, "Missing hostname in network '%s' DNS HOST record", p.name)
		}
		host.Hostnames = append(host.Hostnames, libvirtxml.NetworkDNSHostHostname{Hostname: name})
	}
	if len(host.Hostnames) == 0 {
		return host, Errorf(KindPlain, "Missing hostname in network '%s' DNS HOST record", p.name)
	}
	ip, ok := h.attr("ip")
	if !ok {
		return host, Errorf(KindPlain, "Missing IP address in network '%s' DNS HOST record", p.name)
	}
	c, ok := canonAddr(ip)
	if !ok {
		return host, Errorf(KindPlain, "Invalid IP address in network '%s' DNS HOST record", p.name)
	}
	host.IP = c
	return host, nil
}

// Characters libvirt allows in SRV service and protocol names.
const (
	srvServiceChars  = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/*"
	srvProtocolChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+/"
)

func onlyChars(s, set string) bool {
	for _, r := range s {
		if !strings.ContainsRune(set, r) {
			return false
		}
	}
	return true
}

func detail(format string, args ...any) error { return Errorf(KindPlain, format, args...) }

func (p *parser) dnsSRV(s *elem) (libvirtxml.NetworkDNSSRV, error) {
	srv := libvirtxml.NetworkDNSSRV{}
	var ok bool
	if srv.Service, ok = xpathAttr(s, "service"); !ok {
		return srv, detail("missing required service attribute in DNS SRV record of network '%s'", p.name)
	}
	if len(srv.Service) > 15 {
		return srv, detail("service attribute '%s' in network '%s' is too long, limit is 15 bytes", srv.Service, p.name)
	}
	if !onlyChars(srv.Service, srvServiceChars) {
		return srv, detail("invalid character in service attribute '%s' in DNS SRV record of network '%s'", srv.Service, p.name)
	}
	if srv.Protocol, ok = xpathAttr(s, "protocol"); !ok {
		return srv, detail("missing required protocol attribute in DNS SRV record '%s' of network '%s'", srv.Service, p.name)
	}
	if !onlyChars(srv.Protocol, srvProtocolChars) {
		return srv, detail("invalid character in protocol attribute '%s' in DNS SRV record of network '%s'", srv.Protocol, p.name)
	}
	srv.Domain, _ = s.attr("domain")
	var hasTarget bool
	srv.Target, hasTarget = xpathAttr(s, "target")
	for _, f := range []struct {
		name, what string
		min        uint
		dst        *uint
	}{{"port", "invalid DNS SRV port", 1, &srv.Port}, {"priority", "Invalid DNS SRV priority", 0, &srv.Priority}, {"weight", "invalid DNS SRV weight", 0, &srv.Weight}} {
		v, present, err := uintAttr(s, f.name, 65535)
		if present && !hasTarget {
			return srv, detail("DNS SRV %s attribute not permitted without target for service '%s' in network '%s'", f.name, srv.Service, p.name)
		}
		if err != nil || (present && v < f.min) {
			return srv, detail("%s attribute for service '%s' in network '%s'", f.what, srv.Service, p.name)
		}
		*f.dst = v
	}
	return srv, nil
}

func (p *parser) dnsTXT(t *elem) (libvirtxml.NetworkDNSTXT, error) {
	txt := libvirtxml.NetworkDNSTXT{}
	var ok bool
	if txt.Name, ok = t.attr("name"); !ok || txt.Name == "" {
		return txt, detail("missing required name attribute in DNS TXT record of network %s", p.name)
	}
	if strings.ContainsAny(txt.Name, " ,") {
		return txt, detail("prohibited character in DNS TXT record name '%s' of network %s", txt.Name, p.name)
	}
	if txt.Value, ok = t.attr("value"); !ok {
		return txt, detail("missing required value attribute in DNS TXT record named '%s' of network %s", txt.Name, p.name)
	}
	return txt, nil
}

func parseVLAN(v *elem) (*libvirtxml.NetworkVLAN, error) {
	vl := &libvirtxml.NetworkVLAN{}
	native := false
	for _, t := range v.kids("tag") {
		idStr, ok := t.attr("id")
		id, err := strconv.ParseUint(strings.TrimSpace(idStr), 10, 32)
		if !ok || err != nil {
			return nil, xmlErr("missing or invalid vlan tag id attribute")
		}
		if id > 4095 {
			return nil, xmlErr("vlan tag id %d too large (maximum 4095)", id)
		}
		tag := libvirtxml.NetworkVLANTag{ID: uint(id)}
		if nm, ok := t.attr("nativeMode"); ok {
			if nm != "tagged" && nm != "untagged" {
				return nil, xmlErr("Invalid \"nativeMode='%s'\" in vlan <tag> element", nm)
			}
			if native {
				return nil, xmlErr("duplicate native vlan setting")
			}
			native = true
			tag.NativeMode = nm
		}
		vl.Tags = append(vl.Tags, tag)
	}
	if len(vl.Tags) == 0 {
		return nil, xmlErr("missing tag id - each <vlan> must have at least one <tag id='N'/> subelement")
	}
	trunk, hasTrunk := v.attr("trunk")
	if hasTrunk && trunk != "yes" && trunk != "no" {
		return nil, xmlErr("invalid \"trunk='%s'\" in <vlan> - trunk can be set to 'yes' or 'no'", trunk)
	}
	switch {
	case len(vl.Tags) > 1:
		if trunk == "no" {
			return nil, xmlErr("invalid \"trunk='no'\" in <vlan> - trunk must be set to 'yes' with multiple tags")
		}
		vl.Trunk = "yes"
	case native:
		if trunk == "no" {
			return nil, xmlErr("invalid configuration in <vlan> - \"trunk='no'\" is not allowed with a native vlan id")
		}
		vl.Trunk = "yes"
	case trunk == "yes":
		vl.Trunk = "yes"
	}
	return vl, nil
}

// parseRate reads <inbound>/<outbound> in the order and with the messages of
// libvirt's virNetDevBandwidthParseRate: any unsigned 64-bit value, and an
// attribute given as 0 counts as given (it is then formatted as nothing).
func parseRate(e *elem, inbound bool) (*libvirtxml.NetworkBandwidthParams, error) {
	r := &libvirtxml.NetworkBandwidthParams{}
	has := func(name string) bool { _, ok := e.attr(name); return ok }
	get := func(name string, dst **uint) error {
		v, ok, err := uintAttr(e, name, math.MaxUint64)
		if err != nil {
			return Errorf(KindUnsupported, "could not convert bandwidth %s value '%s'", name, attrOr(e, name))
		}
		if ok && v > 0 {
			x := v
			*dst = &x
		}
		return nil
	}
	if has("average") {
		if err := get("average", &r.Average); err != nil {
			return nil, err
		}
	} else if !has("floor") {
		return nil, xmlErr("Missing mandatory average or floor attributes")
	}
	if (has("peak") || has("burst")) && !has("average") {
		return nil, Errorf(KindUnsupported, "'peak' and 'burst' require 'average' attribute")
	}
	for _, f := range []struct {
		name string
		dst  **uint
	}{{"peak", &r.Peak}, {"burst", &r.Burst}, {"floor", &r.Floor}} {
		if err := get(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if r.Floor != nil && !inbound {
		return nil, Errorf(KindUnsupported, "'floor' attribute allowed only in <inbound> element")
	}
	return r, nil
}

func attrOr(e *elem, name string) string { v, _ := e.attr(name); return v }

func parseBandwidth(b *elem) (*libvirtxml.NetworkBandwidth, error) {
	bw := &libvirtxml.NetworkBandwidth{}
	if len(b.kids("inbound")) > 1 {
		return nil, xmlErr("Only one child <inbound> element allowed")
	}
	if len(b.kids("outbound")) > 1 {
		return nil, xmlErr("Only one child <outbound> element allowed")
	}
	var err error
	if in := b.first("inbound"); in != nil {
		if bw.Inbound, err = parseRate(in, true); err != nil {
			return nil, err
		}
	}
	if out := b.first("outbound"); out != nil {
		if bw.Outbound, err = parseRate(out, false); err != nil {
			return nil, err
		}
	}
	if bw.Inbound == nil && bw.Outbound == nil {
		return nil, nil
	}
	return bw, nil
}

// parseVirtualPort reads a <virtualport>; requireType is set for the
// network-level element (portgroups may leave the type to be merged).
func parseVirtualPort(v *elem, requireType bool) (*libvirtxml.NetworkVirtualPort, error) {
	typ, hasType := v.attr("type")
	if !hasType && requireType {
		return nil, xmlErr("missing required virtualport type")
	}
	allowed := map[string][]string{
		"":            {"managerid", "typeid", "typeidversion", "instanceid", "interfaceid", "profileid"},
		"802.1Qbg":    {"managerid", "typeid", "typeidversion", "instanceid"},
		"802.1Qbh":    {"profileid"},
		"openvswitch": {"interfaceid", "profileid"},
		"midonet":     {"interfaceid"},
	}
	names, ok := allowed[typ]
	if !ok || (hasType && typ == "") {
		return nil, xmlErr("unknown virtualport type %s", typ)
	}
	vals := map[string]string{}
	if params := v.first("parameters"); params != nil {
		for _, a := range params.attrs {
			if a.Name.Space != "" {
				continue
			}
			found := false
			for _, n := range names {
				if n == a.Name.Local {
					found = true
				}
			}
			if !found {
				if typ == "" {
					continue
				}
				return nil, xmlErr("attribute %s not allowed for <virtualport type='%s'>", a.Name.Local, typ)
			}
			vals[a.Name.Local] = a.Value
		}
	}
	num := func(name string, max uint64) (*uint, error) {
		s, ok := vals[name]
		if !ok {
			return nil, nil
		}
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, xmlErr("cannot parse value of %s parameter", name)
		}
		if u > max {
			return nil, xmlErr("value of %s out of range", name)
		}
		x := uint(u)
		return &x, nil
	}
	uuidVal := func(name string) (string, error) {
		s, ok := vals[name]
		if !ok {
			return "", nil
		}
		u, err := NormalizeUUID(s)
		if err != nil {
			return "", xmlErr("cannot parse %s parameter as a uuid", name)
		}
		return u, nil
	}
	profile := vals["profileid"]
	if len(profile) > 39 {
		return nil, xmlErr("profileid parameter too long")
	}
	mgr, err := num("managerid", 255)
	if err != nil {
		return nil, err
	}
	tid, err := num("typeid", 0xffffff)
	if err != nil {
		return nil, err
	}
	tidv, err := num("typeidversion", 255)
	if err != nil {
		return nil, err
	}
	inst, err := uuidVal("instanceid")
	if err != nil {
		return nil, err
	}
	ifid, err := uuidVal("interfaceid")
	if err != nil {
		return nil, err
	}
	vp := &libvirtxml.NetworkVirtualPort{Params: &libvirtxml.NetworkVirtualPortParams{}}
	switch typ {
	case "":
		vp.Params.Any = &libvirtxml.NetworkVirtualPortParamsAny{ManagerID: mgr, TypeID: tid, TypeIDVersion: tidv, InstanceID: inst, ProfileID: profile, InterfaceID: ifid}
	case "802.1Qbg":
		vp.Params.VEPA8021QBG = &libvirtxml.NetworkVirtualPortParamsVEPA8021QBG{ManagerID: mgr, TypeID: tid, TypeIDVersion: tidv, InstanceID: inst}
	case "802.1Qbh":
		vp.Params.VNTag8011QBH = &libvirtxml.NetworkVirtualPortParamsVNTag8021QBH{ProfileID: profile}
	case "openvswitch":
		vp.Params.OpenVSwitch = &libvirtxml.NetworkVirtualPortParamsOpenVSwitch{InterfaceID: ifid, ProfileID: profile}
	case "midonet":
		vp.Params.MidoNet = &libvirtxml.NetworkVirtualPortParamsMidoNet{InterfaceID: ifid}
	}
	return vp, nil
}

func (p *parser) portgroup(pg *elem) (libvirtxml.NetworkPortGroup, error) {
	g := libvirtxml.NetworkPortGroup{}
	var ok bool
	if g.Name, ok = xpathAttr(pg, "name"); !ok {
		return g, xmlErr("Missing required name attribute in portgroup")
	}
	if d, ok := pg.attr("default"); ok && strings.EqualFold(d, "yes") {
		g.Default = "yes"
	}
	var err error
	if g.TrustGuestRxFilters, err = tristate(pg, "trustGuestRxFilters"); err != nil {
		return g, err
	}
	if v := pg.first("vlan"); v != nil {
		if g.VLAN, err = parseVLAN(v); err != nil {
			return g, err
		}
	}
	if v := pg.first("virtualport"); v != nil {
		if g.VirtualPort, err = parseVirtualPort(v, false); err != nil {
			return g, err
		}
	}
	if pg.first("bandwidth") != nil {
		return g, Errorf(KindUnsupported, "<bandwidth> in <portgroup> '%s' of network '%s' is not supported by vnet", g.Name, p.name)
	}
	return g, nil
}

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

func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

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

var forwardModes = []string{"nat", "route", "open", "bridge", "private", "vepa", "passthrough", "hostdev"}

func (p *parser) forward(f *elem) (*libvirtxml.NetworkForward, error) {
	fw := &libvirtxml.NetworkForward{}
	mode, hasMode := xpathAttr(f, "mode")
	switch {
	case !hasMode:
		mode = "nat"
	case mode == "none":
		return nil, nil
	default:
		known := false
		for _, m := range forwardModes {
			if m == mode {
				known = true
			}
		}
		if !known {
			return nil, Errorf(KindUnsupported, "unknown forwarding type '%s'", mode)
		}
	}
	fw.Mode = mode
	if m, ok := f.attr("managed"); ok && strings.EqualFold(m, "yes") {
		fw.Managed = "yes"
	} else if mode == "hostdev" {
		fw.Managed = "no"
	}
	if d := f.first("driver"); d != nil {
		drv := &libvirtxml.NetworkForwardDriver{}
		if name, ok := d.attr("name"); ok {
			if name != "kvm" && name != "vfio" && name != "xen" {
				return nil, Errorf(KindUnsupported, "Unknown forward <driver name='%s'/> in network %s", name, p.name)
			}
			drv.Name = name
		}
		drv.Model, _ = d.attr("model")
		if drv.Name != "" || drv.Model != "" {
			fw.Driver = drv
		}
	}

	nats := f.kids("nat")
	if len(nats) > 1 {
		return nil, xmlErr("Only one <nat> element is allowed in <forward> of network %s", p.name)
	}
	if len(nats) == 1 {
		if mode != "nat" {
			return nil, xmlErr("The <nat> element can only be used when <forward> 'mode' is 'nat' in network %s", p.name)
		}
		nat, err := p.nat(nats[0])
		if err != nil {
			return nil, err
		}
		fw.NAT = nat
	}

	// The device pool is a <forward dev> and/or <interface> list, else a PCI
	// <address> list, else one <pf>; libvirt ignores the lower-ranked kinds.
	dev, hasDev := xpathAttr(f, "dev")
	ifaces := f.kids("interface")
	addrs := f.kids("address")
	pfs := f.kids("pf")
	if hasDev && (len(addrs) > 0 || len(pfs) > 0) {
		return nil, xmlErr("the <forward> 'dev' attribute cannot be used when <address> or <pf> sub-elements are present in network %s", p.name)
	}
	switch {
	case hasDev || len(ifaces) > 0:
		addrs, pfs = nil, nil
	case len(addrs) > 0:
		pfs = nil
	}
	if len(pfs) > 1 {
		return nil, xmlErr("Only one <pf> element is allowed in <forward> of network %s", p.name)
	}
	if len(pfs) == 1 {
		dev, ok := pfs[0].attr("dev")
		if !ok || dev == "" {
			return nil, xmlErr("Missing required dev attribute in <pf> element of network '%s'", p.name)
		}
		fw.PFs = []libvirtxml.NetworkForwardPF{{Dev: dev}}
	}
	for _, a := range addrs {
		typ, ok := a.attr("type")
		if !ok {
			return nil, xmlErr("missing address type in network %s", p.name)
		}
		switch typ {
		case "pci":
		case "none", "netdev":
			return nil, xmlErr("unsupported address type '%s' in network %s", typ, p.name)
		default:
			return nil, Errorf(KindUnsupported, "unknown address type '%s' in network %s", typ, p.name)
		}
		pci := &libvirtxml.NetworkForwardAddressPCI{}
		var err error
		for _, fld := range []struct {
			name string
			max  uint64
			dst  **uint
		}{{"domain", 0xffff, &pci.Domain}, {"bus", 0xff, &pci.Bus}, {"slot", 0x1f, &pci.Slot}, {"function", 7, &pci.Function}} {
			if *fld.dst, err = uintAttrBase0(a, fld.name, fld.max); err != nil {
				return nil, err
			}
			if *fld.dst == nil {
				var z uint
				*fld.dst = &z
			}
		}
		for _, o := range fw.Addresses {
			if *o.PCI.Domain == *pci.Domain && *o.PCI.Bus == *pci.Bus && *o.PCI.Slot == *pci.Slot && *o.PCI.Function == *pci.Function {
				return nil, xmlErr("PCI device '%04x:%02x:%02x.%x' can only be listed once in network %s", *pci.Domain, *pci.Bus, *pci.Slot, *pci.Function, p.name)
			}
		}
		fw.Addresses = append(fw.Addresses, libvirtxml.NetworkForwardAddress{PCI: pci})
	}
	if hasDev {
		fw.Interfaces = append(fw.Interfaces, libvirtxml.NetworkForwardInterface{Dev: dev})
	}
	for i, ie := range ifaces {
		d, ok := ie.attr("dev")
		if !ok || d == "" {
			return nil, xmlErr("Missing required dev attribute in <forward> <interface> element of network %s", p.name)
		}
		if i == 0 && hasDev {
			if d != dev {
				return nil, xmlErr("<forward dev='%s'> must match first <interface dev='%s'/> in network %s", dev, d, p.name)
			}
			continue
		}
		for _, o := range fw.Interfaces {
			if o.Dev == d {
				return nil, xmlErr("interface '%s' can only be listed once in network %s", d, p.name)
			}
		}
		fw.Interfaces = append(fw.Interfaces, libvirtxml.NetworkForwardInterface{Dev: d})
	}
	if len(fw.Interfaces) > 0 {
		fw.Dev = fw.Interfaces[0].Dev
	}
	return fw, nil
}

func (p *parser) nat(e *elem) (*libvirtxml.NetworkForwardNAT, error) {
	nat := &libvirtxml.NetworkForwardNAT{}
	var err error
	if nat.IPv6, err = tristate(e, "ipv6"); err != nil {
		return nil, err
	}
	addrs := e.kids("address")
	if len(addrs) > 1 {
		return nil, xmlErr("Only one <address> element is allowed in <nat> in <forward> in network %s", p.name)
	}
	if len(addrs) == 1 {
		start, hasStart := addrs[0].attr("start")
		end, hasEnd := addrs[0].attr("end")
		if !hasStart {
			return nil, xmlErr("missing 'start' attribute in <address> element in <nat> in <forward> in network %s", p.name)
		}
		if !hasEnd {
			return nil, xmlErr("missing 'end' attribute in <address> element in <nat> in <forward> in network %s", p.name)
		}
		s, err := ParseAddr(start)
		if err != nil || !s.Is4() {
			return nil, xmlErr("Bad ipv4 start address '%s' in <nat> in <forward> in network '%s'", start, p.name)
		}
		en, err := ParseAddr(end)
		if err != nil || !en.Is4() {
			return nil, xmlErr("Bad ipv4 end address '%s' in <nat> in <forward> in network '%s'", end, p.name)
		}
		if err := checkRange(s, en, nil); err != nil {
			return nil, err
		}
		nat.Addresses = []libvirtxml.NetworkForwardNATAddress{{Start: FormatAddr(s), End: FormatAddr(en)}}
	}
	ports := e.kids("port")
	if len(ports) > 1 {
		return nil, xmlErr("Only one <port> element is allowed in <nat> in <forward> in network %s", p.name)
	}
	if len(ports) == 1 {
		var port libvirtxml.NetworkForwardNATPort
		var ok bool
		if port.Start, ok, err = uintAttr(ports[0], "start", 65535); err != nil || !ok {
			return nil, detail("Missing or invalid 'start' attribute in <port> in <nat> in <forward> in network %s", p.name)
		}
		if port.End, ok, err = uintAttr(ports[0], "end", 65535); err != nil || !ok || port.End < port.Start {
			return nil, detail("Missing or invalid 'end' attribute in <port> in <nat> in <forward> in network %s", p.name)
		}
		if port.Start > 0 || port.End > 0 {
			nat.Ports = []libvirtxml.NetworkForwardNATPort{port}
		}
	}
	return nat, nil
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

// modeChecks are the forward-mode dependent checks of libvirt's parser.
func (p *parser) modeChecks(n *Network) error {
	mode := n.ForwardMode()
	switch mode {
	case "", "nat", "route", "open":
		if mode != "" && len(n.IPs) == 0 {
			return xmlErr("%s forwarding requested, but no IP address provided for network '%s'", mode, p.name)
		}
		if mode == "open" && n.Forward != nil && len(n.Forward.Interfaces) > 0 {
			return xmlErr("forward dev not allowed for network '%s' with forward mode='%s'", p.name, mode)
		}
	case "bridge", "private", "vepa", "passthrough", "hostdev":
		br := n.Bridge
		if br == nil {
			br = &libvirtxml.NetworkBridge{}
		}
		if mode != "bridge" {
			switch {
			case br.Name != "":
				return xmlErr("bridge name not allowed in %s mode (network '%s')", mode, p.name)
			case br.Zone != "":
				return xmlErr("bridge zone not allowed in %s mode (network '%s')", mode, p.name)
			case br.MACTableManager != "":
				return xmlErr("bridge macTableManager setting not allowed in %s mode (network '%s')", mode, p.name)
			}
		}
		if (br.Delay != "" && br.Delay != "0") || br.STP != "" || br.Zone != "" {
			return xmlErr("bridge delay/stp/zone options only allowed in route, nat, and isolated mode, not in %s (network '%s')", mode, p.name)
		}
		// A delay='0' is accepted and not kept (libvirt stores a number).
		br.Delay = ""
		if br.Name != "" && (len(n.Forward.Interfaces) > 0 || len(n.Forward.PFs) > 0) {
			return xmlErr("A network with forward mode='%s' can specify a bridge name or a forward dev, but not both (network '%s')", mode, p.name)
		}
		if n.MTU != nil && n.MTU.Size > 0 {
			return xmlErr("mtu size only allowed in open, route, nat, and isolated mode, not in %s (network '%s')", mode, p.name)
		}
	}
	return nil
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
