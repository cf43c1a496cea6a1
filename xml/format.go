package netxml

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Flags select what Format writes.
type Flags uint

// Inactive leaves out live-only data (libvirt's VIR_NETWORK_XML_INACTIVE):
// connections counts and the device list derived from a <pf>.
const Inactive Flags = 1

// writer builds libvirt-formatted XML: 2-space indentation, single-quoted
// attributes, LF line ends.
type writer struct {
	b      strings.Builder
	indent int
}

func (w *writer) line(format string, args ...any) {
	w.b.WriteString(strings.Repeat("  ", w.indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

// tag starts an element: "<name" plus attributes; finish with close/open.
type tag struct {
	w *writer
	b strings.Builder
}

func (w *writer) start(name string) *tag {
	t := &tag{w: w}
	t.b.WriteString(strings.Repeat("  ", w.indent))
	t.b.WriteString("<" + name)
	return t
}

// attr adds name='value' (escaped) unless value is empty.
func (t *tag) attr(name, value string) *tag {
	if value != "" {
		t.b.WriteString(" " + name + "='" + escape(value) + "'")
	}
	return t
}

// rattr adds a required attribute, written even when empty.
func (t *tag) rattr(name, value string) *tag {
	t.b.WriteString(" " + name + "='" + escape(value) + "'")
	return t
}

func (t *tag) uattr(name string, v uint) *tag { return t.attr(name, strconv.FormatUint(uint64(v), 10)) }

// empty ends the tag as a self-closing element.
func (t *tag) empty() {
	t.w.b.WriteString(t.b.String() + "/>\n")
}

// open ends the start tag and indents for children.
func (t *tag) open() {
	t.w.b.WriteString(t.b.String() + ">\n")
	t.w.indent++
}

func (w *writer) end(name string) {
	w.indent--
	w.line("</%s>", name)
}

// escape escapes text and attribute values as libvirt does: the five XML
// entities, and control characters other than TAB, LF and CR dropped.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '\'':
			b.WriteString("&apos;")
		case r == '"':
			b.WriteString("&quot;")
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r':
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Format writes the network in libvirt's exact XML byte format (fixed element
// and attribute order, single quotes, 2-space indentation, <ip> always as an
// open/close pair, metadata re-serialised), ending with "\n". With Inactive,
// live-only data (connections, the <pf>-derived interface list) is left out.
//
// Format writes what the model holds; it does not add defaults (see
// FillDefaults) or the live NAT port range (see Live).
func Format(n *Network, flags Flags) (string, error) {
	if n == nil {
		return "", Errorf(KindInternal, "no network definition to format")
	}
	w := &writer{}
	inactive := flags&Inactive != 0
	root := w.start("network")
	if n.DnsmasqOptions != nil && len(n.DnsmasqOptions.Option) > 0 {
		root.attr("xmlns:dnsmasq", DnsmasqNS)
	}
	if !inactive && n.Connections > 0 {
		root.uattr("connections", n.Connections)
	}
	if n.IPv6 == "yes" {
		root.attr("ipv6", "yes")
	}
	root.attr("trustGuestRxFilters", n.TrustGuestRxFilters)
	root.open()

	w.line("<name>%s</name>", escape(n.Name))
	if n.UUID != "" {
		w.line("<uuid>%s</uuid>", escape(n.UUID))
	}
	if n.Title != "" {
		w.line("<title>%s</title>", escape(n.Title))
	}
	if n.Description != "" {
		w.line("<description>%s</description>", escape(n.Description))
	}
	if n.Metadata != nil {
		if err := formatMetadata(w, n.Metadata.XML); err != nil {
			return "", err
		}
	}
	if err := formatForward(w, n, inactive); err != nil {
		return "", err
	}
	formatUserForward(w, n.User)
	if n.Bridge != nil && (n.OwnsBridge() || n.Bridge.Name != "" || n.Bridge.MACTableManager != "") || n.Bridge == nil && n.OwnsBridge() {
		br := n.Bridge
		if br == nil {
			br = &libvirtxml.NetworkBridge{}
		}
		t := w.start("bridge").attr("name", br.Name).attr("zone", br.Zone)
		if n.OwnsBridge() {
			stp := "on"
			if br.STP == "off" {
				stp = "off"
			}
			delay := br.Delay
			if delay == "" {
				delay = "0"
			}
			t.attr("stp", stp).attr("delay", delay)
		}
		t.attr("macTableManager", br.MACTableManager).empty()
	}
	if n.MTU != nil && n.MTU.Size > 0 {
		w.start("mtu").uattr("size", n.MTU.Size).empty()
	}
	if n.MAC != nil && n.MAC.Address != "" {
		w.start("mac").attr("address", n.MAC.Address).empty()
	}
	if n.Domain != nil && n.Domain.Name != "" {
		w.start("domain").attr("name", n.Domain.Name).attr("localOnly", n.Domain.LocalOnly).attr("register", n.Domain.Register).empty()
	}
	formatDNS(w, n.DNS)
	formatVLAN(w, n.VLAN)
	formatBandwidth(w, n.Bandwidth)
	if n.PortOptions != nil && n.PortOptions.Isolated != "" {
		w.start("port").attr("isolated", n.PortOptions.Isolated).empty()
	}
	for _, ip := range n.IPs {
		formatIP(w, ip)
	}
	for _, r := range n.Routes {
		t := w.start("route").attr("family", r.Family).attr("address", r.Address).attr("netmask", r.Netmask)
		if r.Prefix > 0 {
			t.uattr("prefix", r.Prefix)
		}
		t.attr("gateway", r.Gateway)
		if r.Metric != "" && r.Metric != "0" {
			t.attr("metric", r.Metric)
		}
		t.empty()
	}
	formatVirtualPort(w, n.VirtualPort)
	for _, pg := range n.PortGroups {
		t := w.start("portgroup").attr("name", pg.Name)
		if pg.Default == "yes" {
			t.attr("default", "yes")
		}
		t.attr("trustGuestRxFilters", pg.TrustGuestRxFilters).open()
		formatVLAN(w, pg.VLAN)
		formatVirtualPort(w, pg.VirtualPort)
		w.end("portgroup")
	}
	if n.DnsmasqOptions != nil && len(n.DnsmasqOptions.Option) > 0 {
		w.start("dnsmasq:options").open()
		for _, o := range n.DnsmasqOptions.Option {
			w.start("dnsmasq:option").rattr("value", o.Value).empty()
		}
		w.end("dnsmasq:options")
	}
	formatOverlay(w, n.Overlay)
	w.end("network")
	return w.b.String(), nil
}

func formatForward(w *writer, n *Network, inactive bool) error {
	f := n.Forward
	if f == nil || f.Mode == "none" {
		return nil
	}
	mode := n.ForwardMode()
	ifaces := f.Interfaces
	if len(ifaces) == 0 && f.Dev != "" && len(f.PFs) == 0 {
		ifaces = []libvirtxml.NetworkForwardInterface{{Dev: f.Dev}}
	}
	t := w.start("forward")
	if len(f.PFs) == 0 && len(ifaces) > 0 {
		t.attr("dev", ifaces[0].Dev)
	}
	t.attr("mode", mode)
	if mode == "hostdev" {
		managed := "no"
		if f.Managed == "yes" {
			managed = "yes"
		}
		t.attr("managed", managed)
	}
	hasNAT := mode == "nat" && f.NAT != nil && (f.NAT.IPv6 != "" || len(f.NAT.Addresses) > 0 || len(f.NAT.Ports) > 0)
	hasDriver := f.Driver != nil && (f.Driver.Name != "" || f.Driver.Model != "")
	if len(ifaces) == 0 && len(f.PFs) == 0 && len(f.Addresses) == 0 && !hasNAT && !hasDriver {
		t.empty()
		return nil
	}
	t.open()
	if hasDriver {
		w.start("driver").attr("name", f.Driver.Name).attr("model", f.Driver.Model).empty()
	}
	if hasNAT {
		nt := w.start("nat").attr("ipv6", f.NAT.IPv6)
		if len(f.NAT.Addresses) == 0 && len(f.NAT.Ports) == 0 {
			nt.empty()
		} else {
			nt.open()
			if len(f.NAT.Addresses) > 0 {
				a := f.NAT.Addresses[0]
				w.start("address").attr("start", a.Start).attr("end", a.End).empty()
			}
			if len(f.NAT.Ports) > 0 {
				p := f.NAT.Ports[0]
				pt := w.start("port").uattr("start", p.Start)
				if p.End > 0 {
					pt.uattr("end", p.End)
				}
				pt.empty()
			}
			w.end("nat")
		}
	}
	if len(f.PFs) > 0 {
		w.start("pf").attr("dev", f.PFs[0].Dev).empty()
	}
	if len(f.PFs) == 0 || !inactive {
		for _, i := range ifaces {
			it := w.start("interface").attr("dev", i.Dev)
			if c := n.InterfaceConnections[i.Dev]; !inactive && c > 0 {
				it.uattr("connections", c)
			}
			it.empty()
		}
		for _, a := range f.Addresses {
			if a.PCI == nil {
				continue
			}
			w.start("address").attr("type", "pci").
				attr("domain", fmt.Sprintf("0x%04x", deref(a.PCI.Domain))).
				attr("bus", fmt.Sprintf("0x%02x", deref(a.PCI.Bus))).
				attr("slot", fmt.Sprintf("0x%02x", deref(a.PCI.Slot))).
				attr("function", fmt.Sprintf("0x%x", deref(a.PCI.Function))).empty()
		}
	}
	w.end("forward")
	return nil
}

func deref(p *uint) uint {
	if p == nil {
		return 0
	}
	return *p
}

func formatDNS(w *writer, d *libvirtxml.NetworkDNS) {
	if d == nil {
		return
	}
	hasKids := len(d.Forwarders) > 0 || len(d.TXTs) > 0 || len(d.SRVs) > 0 || len(d.Host) > 0
	if d.Enable == "" && d.ForwardPlainNames == "" && !hasKids {
		return
	}
	t := w.start("dns").attr("enable", d.Enable).attr("forwardPlainNames", d.ForwardPlainNames)
	if !hasKids {
		t.empty()
		return
	}
	t.open()
	for _, f := range d.Forwarders {
		ft := w.start("forwarder").attr("domain", f.Domain).attr("addr", f.Addr)
		if f.Addr != "" && f.Port > 0 {
			ft.uattr("port", f.Port)
		}
		ft.empty()
	}
	for _, x := range d.TXTs {
		w.b.WriteString(strings.Repeat("  ", w.indent) + "<txt name='" + escape(x.Name) + "' value='" + escape(x.Value) + "'/>\n")
	}
	for _, s := range d.SRVs {
		if s.Service == "" || s.Protocol == "" {
			continue
		}
		st := w.start("srv").attr("service", s.Service).attr("protocol", s.Protocol).attr("domain", s.Domain).attr("target", s.Target)
		for _, f := range []struct {
			name string
			v    uint
		}{{"port", s.Port}, {"priority", s.Priority}, {"weight", s.Weight}} {
			if f.v > 0 {
				st.uattr(f.name, f.v)
			}
		}
		st.empty()
	}
	for _, h := range d.Host {
		w.start("host").attr("ip", h.IP).open()
		for _, hn := range h.Hostnames {
			w.line("<hostname>%s</hostname>", escape(hn.Hostname))
		}
		w.end("host")
	}
	w.end("dns")
}

func formatVLAN(w *writer, v *libvirtxml.NetworkVLAN) {
	if v == nil || len(v.Tags) == 0 {
		return
	}
	t := w.start("vlan")
	if v.Trunk == "yes" || len(v.Tags) > 1 {
		t.attr("trunk", "yes")
	}
	t.open()
	for _, tg := range v.Tags {
		w.start("tag").uattr("id", tg.ID).attr("nativeMode", tg.NativeMode).empty()
	}
	w.end("vlan")
}

func formatBandwidth(w *writer, b *libvirtxml.NetworkBandwidth) {
	if b == nil {
		return
	}
	t := w.start("bandwidth")
	if b.ClassID != 0 {
		t.uattr("classID", b.ClassID) // a port's tc class (libvirt's class_id)
	}
	t.open()
	rate := func(name string, r *libvirtxml.NetworkBandwidthParams) {
		if r == nil || (deref(r.Average) == 0 && deref(r.Floor) == 0) {
			return
		}
		t := w.start(name)
		for _, f := range []struct {
			name string
			v    *uint
		}{{"average", r.Average}, {"peak", r.Peak}, {"floor", r.Floor}, {"burst", r.Burst}} {
			if deref(f.v) > 0 {
				t.uattr(f.name, *f.v)
			}
		}
		t.empty()
	}
	rate("inbound", b.Inbound)
	rate("outbound", b.Outbound)
	w.end("bandwidth")
}

func formatVirtualPort(w *writer, vp *libvirtxml.NetworkVirtualPort) {
	if vp == nil || vp.Params == nil {
		return
	}
	p := vp.Params
	var typ string
	var mgr, tid, tidv *uint
	var inst, ifid, prof string
	switch {
	case p.Any != nil:
		mgr, tid, tidv, inst, ifid, prof = p.Any.ManagerID, p.Any.TypeID, p.Any.TypeIDVersion, p.Any.InstanceID, p.Any.InterfaceID, p.Any.ProfileID
	case p.VEPA8021QBG != nil:
		typ = "802.1Qbg"
		mgr, tid, tidv, inst = p.VEPA8021QBG.ManagerID, p.VEPA8021QBG.TypeID, p.VEPA8021QBG.TypeIDVersion, p.VEPA8021QBG.InstanceID
	case p.VNTag8011QBH != nil:
		typ = "802.1Qbh"
		prof = p.VNTag8011QBH.ProfileID
	case p.OpenVSwitch != nil:
		typ = "openvswitch"
		ifid, prof = p.OpenVSwitch.InterfaceID, p.OpenVSwitch.ProfileID
	case p.MidoNet != nil:
		typ = "midonet"
		ifid = p.MidoNet.InterfaceID
	default:
		return
	}
	noParams := mgr == nil && tid == nil && tidv == nil && inst == "" && ifid == "" && prof == ""
	if noParams {
		if typ != "" {
			w.start("virtualport").attr("type", typ).empty()
		}
		return
	}
	w.start("virtualport").attr("type", typ).open()
	t := w.start("parameters")
	if mgr != nil {
		t.uattr("managerid", *mgr)
	}
	if tid != nil {
		t.uattr("typeid", *tid)
	}
	if tidv != nil {
		t.uattr("typeidversion", *tidv)
	}
	t.attr("instanceid", inst).attr("interfaceid", ifid).attr("profileid", prof).empty()
	w.end("virtualport")
}

func formatLease(w *writer, l *libvirtxml.NetworkDHCPLease) {
	if l.Expiry == 0 {
		w.line("<lease expiry='0'/>")
		return
	}
	unit := l.Unit
	if unit == "" {
		unit = "minutes"
	}
	w.start("lease").uattr("expiry", l.Expiry).attr("unit", unit).empty()
}

func formatIP(w *writer, ip libvirtxml.NetworkIP) {
	t := w.start("ip").attr("family", ip.Family).attr("address", ip.Address).attr("netmask", ip.Netmask)
	if ip.Prefix > 0 {
		t.uattr("prefix", ip.Prefix)
	}
	t.attr("localPtr", ip.LocalPtr).open()
	if ip.TFTP != nil && ip.TFTP.Root != "" {
		w.start("tftp").attr("root", ip.TFTP.Root).empty()
	}
	if HasDHCP(ip) {
		w.start("dhcp").open()
		for _, r := range ip.DHCP.Ranges {
			rt := w.start("range").attr("start", r.Start).attr("end", r.End)
			if r.Lease == nil {
				rt.empty()
				continue
			}
			rt.open()
			formatLease(w, r.Lease)
			w.end("range")
		}
		for _, h := range ip.DHCP.Hosts {
			ht := w.start("host").attr("mac", h.MAC).attr("id", h.ID).attr("name", h.Name).attr("ip", h.IP)
			if h.Lease == nil {
				ht.empty()
				continue
			}
			ht.open()
			formatLease(w, h.Lease)
			w.end("host")
		}
		if len(ip.DHCP.Bootp) > 0 && ip.DHCP.Bootp[0].File != "" {
			b := ip.DHCP.Bootp[0]
			w.start("bootp").attr("file", b.File).attr("server", b.Server).empty()
		}
		w.end("dhcp")
	}
	w.end("ip")
}

// metadataXML turns a parsed <metadata> element into vnet's stored form of
// its content: libvirt keeps only child elements that have a namespace, and
// only the first per namespace; whitespace-only text is dropped; each kept
// child carries the declarations of the prefixes it uses.
func metadataXML(m *elem) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, it := range m.items {
		e := it.el
		if e == nil || e.uri == "" || seen[e.uri] {
			continue
		}
		seen[e.uri] = true
		writeCompact(&b, e, outerDecls(e))
	}
	return b.String()
}

// outerDecls returns the namespace declarations (prefix → URI) that e's
// subtree uses but that are declared outside it.
func outerDecls(top *elem) map[string]string {
	need := map[string]string{}
	var walk func(e *elem)
	walk = func(e *elem) {
		use := func(prefix string) {
			if prefix == "xml" || prefix == "xmlns" {
				return
			}
			for p := e; p != nil; p = p.parent {
				if _, ok := p.nsDecl[prefix]; ok {
					if p == top || isWithin(p, top) {
						return
					}
					break
				}
			}
			if u, ok := e.lookupNS(prefix); ok && (u != "" || prefix != "") {
				need[prefix] = u
			}
		}
		use(e.prefix)
		for _, a := range e.attrs {
			if a.Name.Space != "" && a.Name.Space != "xmlns" {
				use(a.Name.Space)
			}
		}
		for _, it := range e.items {
			if it.el != nil {
				walk(it.el)
			}
		}
	}
	walk(top)
	return need
}

func isWithin(e, top *elem) bool {
	for p := e; p != nil; p = p.parent {
		if p == top {
			return true
		}
	}
	return false
}

// writeCompact serialises e without added whitespace, namespace declarations
// first (as libxml2 writes them), then the other attributes, double-quoted.
func writeCompact(b *strings.Builder, e *elem, extra map[string]string) {
	b.WriteString("<" + e.qname())
	writeAttrs(b, e, extra)
	hasContent := false
	for _, it := range e.items {
		if it.el != nil || strings.TrimSpace(it.text) != "" {
			hasContent = true
		}
	}
	if !hasContent {
		b.WriteString("/>")
		return
	}
	b.WriteString(">")
	mixed := hasText(e)
	for _, it := range e.items {
		switch {
		case it.el != nil:
			writeCompact(b, it.el, nil)
		case mixed:
			b.WriteString(escapeText(it.text))
		}
	}
	b.WriteString("</" + e.qname() + ">")
}

func hasText(e *elem) bool {
	for _, it := range e.items {
		if it.el == nil && strings.TrimSpace(it.text) != "" {
			return true
		}
	}
	return false
}

func writeAttrs(b *strings.Builder, e *elem, extra map[string]string) {
	var decls, plain []string
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" {
			decls = append(decls, ` xmlns="`+escapeAttr(extra[k])+`"`)
		} else {
			decls = append(decls, " xmlns:"+k+`="`+escapeAttr(extra[k])+`"`)
		}
	}
	for _, a := range e.attrs {
		switch {
		case a.Name.Space == "xmlns":
			decls = append(decls, " xmlns:"+a.Name.Local+`="`+escapeAttr(a.Value)+`"`)
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			decls = append(decls, ` xmlns="`+escapeAttr(a.Value)+`"`)
		case a.Name.Space != "":
			plain = append(plain, " "+a.Name.Space+":"+a.Name.Local+`="`+escapeAttr(a.Value)+`"`)
		default:
			plain = append(plain, " "+a.Name.Local+`="`+escapeAttr(a.Value)+`"`)
		}
	}
	b.WriteString(strings.Join(decls, "") + strings.Join(plain, ""))
}

// escapeText and escapeAttr escape as libxml2's serialiser does.
func escapeText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#13;").Replace(s)
}

func escapeAttr(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "\n", "&#10;", "\r", "&#13;", "\t", "&#9;").Replace(s)
}

// formatMetadata writes <metadata> with its content indented the way
// libxml2's formatting serialiser does: an element whose content has text is
// written on one line as is, other elements get one child per line.
func formatMetadata(w *writer, content string) error {
	m, err := parseDoc([]byte("<metadata>" + content + "</metadata>"))
	if err != nil {
		return Errorf(KindXML, "invalid metadata content: %v", err)
	}
	var kids []*elem
	for _, it := range m.items {
		if it.el != nil {
			kids = append(kids, it.el)
		}
	}
	if len(kids) == 0 {
		w.line("<metadata/>")
		return nil
	}
	w.start("metadata").open()
	for _, k := range kids {
		formatPretty(w, k)
	}
	w.end("metadata")
	return nil
}

func formatPretty(w *writer, e *elem) {
	var b strings.Builder
	if hasText(e) {
		writeCompact(&b, e, nil)
		w.line("%s", b.String())
		return
	}
	var kids []*elem
	for _, it := range e.items {
		if it.el != nil {
			kids = append(kids, it.el)
		}
	}
	b.WriteString("<" + e.qname())
	writeAttrs(&b, e, nil)
	if len(kids) == 0 {
		w.line("%s/>", b.String())
		return
	}
	w.line("%s>", b.String())
	w.indent++
	for _, k := range kids {
		formatPretty(w, k)
	}
	w.indent--
	w.line("</%s>", e.qname())
}
