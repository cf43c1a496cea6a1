// Package dnsmasq renders libvirt's dnsmasq configuration for a network and
// runs, supervises and stops one dnsmasq process per network.
//
// The configuration text is byte-identical to libvirt's (the golden data in
// networkxml2confdata proves it). Unlike libvirt, every value taken from the
// XML is checked before it is written, so no XML value can add a line or a key
// to any of the generated files.
package dnsmasq

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// Options are the paths that appear inside generated files.
type Options struct {
	// StateDir is the directory of NAME.hostsfile and NAME.addnhosts as
	// written in the conf (libvirt: "/var/lib/libvirt/dnsmasq").
	StateDir string
	// PidFile is written as a pid-file= line; "" writes none.
	PidFile string
	// ServersFile, when set, replaces resolv.conf as the source of upstream
	// servers: a network that would read resolv.conf gets `no-resolv` and
	// `servers-file=ServersFile` instead (vnet's deliberate difference from
	// libvirt's text). Why: dnsmasq watches resolv.conf with an inotify
	// instance of its own, and root may hold only 128 of them
	// (fs.inotify.max_user_instances); vnetd watches resolv.conf once,
	// writes the servers into this file and sends SIGHUP, on which dnsmasq
	// re-reads it.
	ServersFile string
	// BindInterfaces makes networks without IPv6 use `bind-interfaces`
	// instead of libvirt's `bind-dynamic` (vnet's deliberate difference).
	// Why: with bind-dynamic every dnsmasq re-reads all of the host's
	// addresses on every address event, so each new bridge wakes all the
	// others and start cost grows with the number of networks. The bridge
	// has its address before dnsmasq starts, and a socket bound to an
	// address keeps serving when the address is removed and added again.
	// Networks with IPv6 keep bind-dynamic: their addresses are tentative
	// (DAD) when dnsmasq starts, and bind-dynamic binds them once DAD ends.
	BindInterfaces bool
}

// Files is the generated text of one network's dnsmasq files.
type Files struct {
	Conf      string // NAME.conf
	Hostsfile string // NAME.hostsfile (dhcp-hostsfile=), "" without static DHCP hosts
	Addnhosts string // NAME.addnhosts (addn-hosts=), "" without DNS hosts
}

// maxValueLen bounds every value written into a file. dnsmasq reads its
// files line by line into a fixed buffer (about 1 KiB) and silently treats
// the rest of a longer line as a new line, which would let a long value
// smuggle in a key.
const maxValueLen = 512

// Needed reports whether n needs a dnsmasq at all: libvirt runs one for a
// network that owns its bridge and has at least one IP address, unless DNS is
// disabled and no address has DHCP.
func Needed(n *netxml.Network) bool {
	if n == nil || !n.OwnsBridge() || len(n.IPs) == 0 {
		return false
	}
	if !dnsDisabled(n) {
		return true
	}
	for _, ip := range n.IPs {
		if hasDHCP(&ip) {
			return true
		}
	}
	return false
}

func dnsDisabled(n *netxml.Network) bool { return n.DNS != nil && n.DNS.Enable == "no" }

func hasDHCP(ip *libvirtxml.NetworkIP) bool {
	return ip.DHCP != nil && (len(ip.DHCP.Ranges) > 0 || len(ip.DHCP.Hosts) > 0)
}

// FileBase returns the base of the network's file names (NAME in NAME.conf,
// NAME.hostsfile, …): the network name XML-escaped, as libvirt writes it in
// the conf. It fails for a name that could escape the state directory.
func FileBase(name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, ".") ||
		strings.ContainsAny(name, "/\x00") {
		return "", netxml.Errorf(netxml.KindInternal, "network name %q cannot be used in a file name", name)
	}
	base := xmlEscape(name)
	if len(base) > 200 {
		return "", netxml.Errorf(netxml.KindInternal, "network name %q is too long for a file name", name)
	}
	if err := checkText("network name", base, ""); err != nil {
		return "", err
	}
	return base, nil
}

// xmlEscaper is built once: FileBase runs for every network at every check.
var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")

func xmlEscape(s string) string { return xmlEscaper.Replace(s) }

// unsafeValue builds the error for a value that cannot be written safely.
func unsafeValue(field, value, why string) error {
	return netxml.Errorf(netxml.KindUnsupported, "%s %q: %s", field, value, why)
}

// checkText accepts free text for a position where dnsmasq reads the rest of
// the line: no control characters, no quotes (dnsmasq unquotes), no comment
// start (a '#' after white space), no character of forbid, bounded length.
func checkText(field, v, forbid string) error {
	if len(v) > maxValueLen {
		return unsafeValue(field, v[:32]+"…", fmt.Sprintf("longer than %d bytes", maxValueLen))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return unsafeValue(field, v, fmt.Sprintf("control character %q not allowed in a dnsmasq file", c))
		case c == '"':
			return unsafeValue(field, v, "double quote not allowed in a dnsmasq file")
		case c == '#' && (i == 0 || v[i-1] == ' '):
			return unsafeValue(field, v, "'#' at the start of a word would start a dnsmasq comment")
		case c == ' ' && i == len(v)-1:
			return unsafeValue(field, v, "dnsmasq would drop the trailing space")
		case strings.IndexByte(forbid, c) >= 0:
			return unsafeValue(field, v, fmt.Sprintf("character %q not allowed here", c))
		}
	}
	return nil
}

// CheckName accepts a DNS name or a single label that can be written into a
// dnsmasq file: 1 to 253 bytes of letters, digits, '-', '_' and '.'.
// Anything else would be misparsed by dnsmasq (',' '/' '#' spaces) or is not
// a host name. Generate applies it to the DNS names of a network's XML; it is
// exported for names from elsewhere (another host's DHCP leases) so that they
// meet the same rule. field names the value in the error.
func CheckName(field, v string) error {
	if v == "" {
		return netxml.Errorf(netxml.KindXML, "%s is empty", field)
	}
	if len(v) > 253 {
		return unsafeValue(field, v[:32]+"…", "longer than 253 bytes")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return unsafeValue(field, v, fmt.Sprintf("character %q not allowed in a DNS name", c))
		}
	}
	return nil
}

// checkIfName accepts a Linux interface name.
func checkIfName(field, v string) error {
	if v == "" {
		return netxml.Errorf(netxml.KindInternal, "%s is not set", field)
	}
	if len(v) > 15 || v == "." || v == ".." {
		return unsafeValue(field, v, "not a valid interface name")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`/:,#"\`, c) >= 0 {
			return unsafeValue(field, v, fmt.Sprintf("character %q not allowed in an interface name", c))
		}
	}
	return nil
}

// parseAddr parses an IP address without zone; the canonical text is what we
// write, so a valid address can never carry anything else into a file.
func parseAddr(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, netxml.Errorf(netxml.KindXML, "%s %q is not an IP address", field, v)
	}
	return a.Unmap(), nil
}

// ipDef is one <ip> with its parsed address and effective prefix.
type ipDef struct {
	x      *libvirtxml.NetworkIP
	addr   netip.Addr
	prefix int // netxml.PrefixLen of the <ip>
}

func (d *ipDef) v4() bool { return d.addr.Is4() }

func ipDefs(n *netxml.Network) ([]ipDef, error) {
	defs := make([]ipDef, 0, len(n.IPs))
	for i := range n.IPs {
		x := &n.IPs[i]
		a, err := parseAddr("ip address", x.Address)
		if err != nil {
			return nil, err
		}
		switch x.Family {
		case "", "ipv4", "ipv6":
		default:
			return nil, netxml.Errorf(netxml.KindXML, "unsupported ip family %q", x.Family)
		}
		if x.Family == "ipv6" && !a.Is6() || x.Family == "ipv4" && !a.Is4() {
			return nil, netxml.Errorf(netxml.KindXML, "ip address %s does not match family %s", a, x.Family)
		}
		p, err := netxml.PrefixLen(a, x.Prefix, x.Netmask)
		if err != nil {
			return nil, err
		}
		defs = append(defs, ipDef{x: x, addr: a, prefix: p})
	}
	return defs, nil
}

// leaseTime renders a <lease> as dnsmasq's lease time suffix ("" = none).
func leaseTime(l *libvirtxml.NetworkDHCPLease) (string, error) {
	if l == nil {
		return "", nil
	}
	if l.Expiry == 0 {
		return "infinite", nil
	}
	switch l.Unit {
	case "seconds":
		return strconv.FormatUint(uint64(l.Expiry), 10) + "s", nil
	case "", "minutes":
		return strconv.FormatUint(uint64(l.Expiry), 10) + "m", nil
	case "hours":
		return strconv.FormatUint(uint64(l.Expiry), 10) + "h", nil
	}
	return "", netxml.Errorf(netxml.KindXML, "invalid lease unit %q", l.Unit)
}

// rangeSize is the number of addresses of start..end (libvirt's
// dhcp-lease-max contribution), with libvirt's sanity limits.
func rangeSize(start, end netip.Addr) (int, error) {
	s, e := new(big.Int).SetBytes(start.AsSlice()), new(big.Int).SetBytes(end.AsSlice())
	d := new(big.Int).Sub(e, s)
	if d.Sign() < 0 {
		return 0, netxml.Errorf(netxml.KindInternal, "range %s - %s is reversed ", start, end)
	}
	// libvirt only counts ranges that differ in the last 2 (IPv4) or 4
	// (IPv6) bytes.
	limit := int64(1) << 16
	if start.Is6() {
		limit = int64(1) << 32
	}
	if d.Cmp(big.NewInt(limit)) >= 0 {
		return 0, netxml.Errorf(netxml.KindInternal, "range %s - %s too large", start, end)
	}
	return int(d.Int64()) + 1, nil
}

func ptrDomain(a netip.Addr, prefix int) (string, error) {
	var labels []string
	if a.Is4() {
		if prefix%8 != 0 || prefix == 0 {
			return "", netxml.Errorf(netxml.KindUnsupported, "PTR domain for IPv4 network with prefix %d cannot be automatically created", prefix)
		}
		b := a.As4()
		for i := prefix/8 - 1; i >= 0; i-- {
			labels = append(labels, strconv.Itoa(int(b[i])))
		}
		return strings.Join(labels, ".") + ".in-addr.arpa", nil
	}
	if prefix%4 != 0 || prefix == 0 {
		return "", netxml.Errorf(netxml.KindUnsupported, "PTR domain for IPv6 network with prefix %d cannot be automatically created", prefix)
	}
	b := a.As16()
	for i := prefix/4 - 1; i >= 0; i-- {
		nib := b[i/2] >> 4
		if i%2 == 1 {
			nib = b[i/2] & 0xf
		}
		labels = append(labels, strconv.FormatUint(uint64(nib), 16))
	}
	return strings.Join(labels, ".") + ".ip6.arpa", nil
}

func netmaskString(prefix int) string {
	m := net.CIDRMask(prefix, 32)
	return net.IP(m).String()
}

// checkMAC accepts six colon-separated hex octets and returns the lower-case
// form libvirt writes.
func checkMAC(v string) (string, error) {
	hw, err := net.ParseMAC(v)
	if err != nil || len(hw) != 6 || len(v) != 17 {
		return "", netxml.Errorf(netxml.KindXML, "dhcp host mac %q is not a MAC address", v)
	}
	return hw.String(), nil
}

// checkDUID accepts a DHCPv6 client id as libvirt takes it: hex bytes
// separated by colons.
func checkDUID(v string) error {
	if v == "" || len(v) > 390 {
		return unsafeValue("dhcp host id", v, "not a DUID")
	}
	for _, part := range strings.Split(v, ":") {
		if len(part) < 1 || len(part) > 2 {
			return unsafeValue("dhcp host id", v, "not a DUID (hex bytes separated by ':')")
		}
		if _, err := strconv.ParseUint(part, 16, 8); err != nil {
			return unsafeValue("dhcp host id", v, "not a DUID (hex bytes separated by ':')")
		}
	}
	return nil
}

// hostLine renders one static DHCP host as a dhcp-hostsfile line.
func hostLine(h *libvirtxml.NetworkDHCPHost, v6 bool) (string, bool, error) {
	if h.IP == "" {
		// libvirt skips hosts without an address.
		return "", false, nil
	}
	a, err := parseAddr("dhcp host ip", h.IP)
	if err != nil {
		return "", false, err
	}
	if a.Is6() != v6 {
		return "", false, netxml.Errorf(netxml.KindXML, "dhcp host ip %s is not in the family of its <ip>", a)
	}
	if h.Name != "" {
		if err := CheckName("dhcp host name", h.Name); err != nil {
			return "", false, err
		}
	}
	var line string
	if v6 {
		if h.MAC != "" {
			return "", false, netxml.Errorf(netxml.KindUnsupported, "dhcp host %s: a MAC address is not supported for an IPv6 static host", a)
		}
		if h.ID != "" {
			if err := checkDUID(h.ID); err != nil {
				return "", false, err
			}
		}
		switch {
		case h.Name != "" && h.ID != "":
			line = "id:" + h.ID + "," + h.Name + ",[" + a.String() + "]"
		case h.Name != "":
			line = h.Name + ",[" + a.String() + "]"
		case h.ID != "":
			line = "id:" + h.ID + ",[" + a.String() + "]"
		default:
			return "", false, netxml.Errorf(netxml.KindXML, "dhcp host %s needs an id or a name", a)
		}
	} else {
		if h.ID != "" {
			return "", false, netxml.Errorf(netxml.KindUnsupported, "dhcp host %s: an id is not supported for an IPv4 static host", a)
		}
		mac := ""
		if h.MAC != "" {
			if mac, err = checkMAC(h.MAC); err != nil {
				return "", false, err
			}
		}
		switch {
		case mac != "" && h.Name != "":
			line = mac + "," + a.String() + "," + h.Name
		case h.Name != "":
			line = h.Name + "," + a.String()
		case mac != "":
			line = mac + "," + a.String()
		default:
			return "", false, netxml.Errorf(netxml.KindXML, "dhcp host %s needs a mac or a name", a)
		}
	}
	lt, err := leaseTime(h.Lease)
	if err != nil {
		return "", false, err
	}
	if lt != "" {
		line += "," + lt
	}
	return line, true, nil
}

// gen accumulates one network's files. Every conf line is written by line:
// besides the per-field checks, it refuses any part that would break the
// one-call-one-line rule, so no value can add a line even if a check missed it.
type gen struct {
	n       *netxml.Network
	dns     *libvirtxml.NetworkDNS // never nil
	wantDNS bool
	ips     []ipDef
	v4, v6  *ipDef // the <ip> serving DHCP per family

	conf, hosts, addn strings.Builder
	broken            error
}

func (g *gen) line(parts ...string) {
	for _, p := range parts {
		if g.broken == nil && strings.ContainsAny(p, "\n\r\x00") {
			g.broken = netxml.Errorf(netxml.KindInternal, "dnsmasq conf of network %q: line break in value %q", g.n.Name, p)
		}
		g.conf.WriteString(p)
	}
	g.conf.WriteByte('\n')
}

// Generate renders the conf (libvirt's header and keys in libvirt's order),
// the hostsfile and the addnhosts file of n. Values that cannot be written
// without changing the meaning of a file are rejected with an error naming
// the field.
func Generate(n *netxml.Network, o Options) (*Files, error) {
	if n == nil {
		return nil, netxml.Errorf(netxml.KindInternal, "no network definition")
	}
	base, err := FileBase(n.Name)
	if err != nil {
		return nil, err
	}
	if err := checkText("state directory", o.StateDir, ","); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		if err := checkText("pid file", o.PidFile, ","); err != nil {
			return nil, err
		}
	}
	if o.ServersFile != "" {
		if err := checkText("servers file", o.ServersFile, ","); err != nil {
			return nil, err
		}
	}
	bridge := n.BridgeName()
	if err := checkIfName("bridge name of network "+strconv.Quote(n.Name), bridge); err != nil {
		return nil, err
	}
	g := &gen{n: n, dns: n.DNS, wantDNS: !dnsDisabled(n)}
	if g.dns == nil {
		g.dns = &libvirtxml.NetworkDNS{}
	}
	if g.ips, err = ipDefs(n); err != nil {
		return nil, err
	}

	g.line("##WARNING:  THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE")
	g.line("##OVERWRITTEN AND LOST.  Changes to this configuration should be made using:")
	g.line("##    virsh net-edit ", n.Name)
	g.line("## or other application using the libvirt API.")
	g.line("##")
	g.line("## dnsmasq conf file created by libvirt")
	g.line("strict-order")
	if !g.wantDNS {
		g.line("port=0")
	}
	if err := g.upstream(o.ServersFile); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		g.line("pid-file=", o.PidFile)
	}
	g.line("except-interface=lo")
	if o.BindInterfaces && !g.hasIPv6() {
		g.line("bind-interfaces")
	} else {
		g.line("bind-dynamic")
	}
	g.line("interface=", bridge)
	if n.ForwardMode() == "" {
		// Isolated: no default route, no upstream DNS, no RA default route.
		g.line("dhcp-option=3")
		g.line("no-resolv")
		g.line("ra-param=*,0,0")
	}
	if err := g.records(); err != nil {
		return nil, err
	}
	if err := g.dhcp(); err != nil {
		return nil, err
	}
	if err := g.dnsHosts(); err != nil {
		return nil, err
	}
	if g.v4 != nil || g.v6 != nil {
		g.line("dhcp-hostsfile=", o.StateDir, "/", base, ".hostsfile")
	}
	if g.wantDNS {
		g.line("addn-hosts=", o.StateDir, "/", base, ".addnhosts")
	}
	if n.MTU != nil && n.MTU.Size > 0 {
		g.line("dhcp-option=option:mtu,", strconv.FormatUint(uint64(n.MTU.Size), 10))
	}
	if g.v6 != nil {
		g.line("enable-ra")
	} else {
		for i := range g.ips {
			if !g.ips[i].v4() && !hasDHCP(g.ips[i].x) {
				g.line("dhcp-range=", g.ips[i].addr.String(), ",ra-only")
			}
		}
	}
	if n.DnsmasqOptions != nil {
		for _, opt := range n.DnsmasqOptions.Option {
			if err := checkOption(opt.Value); err != nil {
				return nil, err
			}
			g.line(opt.Value)
		}
	}
	if g.broken != nil {
		return nil, g.broken
	}
	f := &Files{Conf: g.conf.String(), Hostsfile: g.hosts.String(), Addnhosts: g.addn.String()}
	for _, text := range []string{f.Hostsfile, f.Addnhosts} {
		if strings.ContainsAny(text, "\r\x00") {
			return nil, netxml.Errorf(netxml.KindInternal, "dnsmasq hosts file of network %q: control character in %q", n.Name, text)
		}
	}
	return f, nil
}

// hasIPv6 reports whether the network has an IPv6 address.
func (g *gen) hasIPv6() bool {
	for i := range g.ips {
		if !g.ips[i].v4() {
			return true
		}
	}
	return false
}

// BindsInterfaces reports whether a generated conf binds its listeners once
// at start (bind-interfaces: networks without IPv6). Such a dnsmasq has no
// use for address and route events: it re-reads the host's interfaces on
// them only with bind-dynamic, local-service or localise-queries, which vnet
// never writes together with bind-interfaces.
func BindsInterfaces(conf string) bool { return strings.Contains(conf, "\nbind-interfaces\n") }

// ReadsServersFile reports whether a conf generated with a ServersFile takes
// its upstream servers from it (and so must be sent SIGHUP when it changes).
func ReadsServersFile(conf string) bool { return strings.Contains(conf, "\nservers-file=") }

// upstream writes the forwarders, the domain and the local-only zones. With
// a serversFile, a network that would read resolv.conf reads it instead.
func (g *gen) upstream(serversFile string) error {
	noResolv := false
	if g.wantDNS && len(g.dns.Forwarders) > 0 {
		for _, f := range g.dns.Forwarders {
			s := "server="
			if f.Domain != "" {
				if err := CheckName("dns forwarder domain", f.Domain); err != nil {
					return err
				}
				s += "/" + f.Domain + "/"
			}
			switch {
			case f.Addr != "":
				a, err := parseAddr("dns forwarder addr", f.Addr)
				if err != nil {
					return err
				}
				s += a.String()
				if f.Port > 0 {
					if f.Port > 65535 {
						return netxml.Errorf(netxml.KindXML, "dns forwarder port %d out of range", f.Port)
					}
					s += "#" + strconv.FormatUint(uint64(f.Port), 10)
				}
				// A forwarder for all names replaces resolv.conf.
				noResolv = noResolv || f.Domain == ""
			case f.Domain != "":
				s += "#" // resolve this domain locally only
			default:
				return netxml.Errorf(netxml.KindXML, "Invalid forwarder element, must contain at least one of addr or domain")
			}
			g.line(s)
		}
		if noResolv {
			g.line("no-resolv")
		}
	}
	// Isolated networks have no upstream (libvirt writes no-resolv for
	// them further down).
	if serversFile != "" && g.wantDNS && readsResolv(g.n) {
		g.line("no-resolv")
		g.line("servers-file=", serversFile)
	}
	if d := g.n.Domain; d != nil && d.Name != "" {
		if err := CheckName("domain name", d.Name); err != nil {
			return err
		}
		if d.LocalOnly == "yes" {
			g.line("local=/", d.Name, "/")
		}
		g.line("domain=", d.Name)
		g.line("expand-hosts")
	}
	if !g.wantDNS {
		return nil
	}
	for i := range g.ips {
		ip := &g.ips[i]
		if ip.x.LocalPtr != "yes" {
			continue
		}
		ptr, err := ptrDomain(ip.addr, ip.prefix)
		if err != nil {
			return err
		}
		g.line("local=/", ptr, "/")
	}
	if g.dns.ForwardPlainNames == "no" {
		g.line("domain-needed")
		g.line("local=//")
	}
	return nil
}

// records writes the TXT and SRV records.
func (g *gen) records() error {
	if !g.wantDNS {
		return nil
	}
	for _, t := range g.dns.TXTs {
		if err := CheckName("dns txt name", t.Name); err != nil {
			return err
		}
		if err := checkText("dns txt value", t.Value, ""); err != nil {
			return err
		}
		g.line("txt-record=", t.Name, ",", t.Value)
	}
	for _, s := range g.dns.SRVs {
		v, err := srvValue(g.n.Name, s)
		if err != nil {
			return err
		}
		g.line("srv-host=", v)
	}
	return nil
}

// srvValue renders an SRV record as dnsmasq's srv-host value:
// _service._proto[.domain][,target[,port[,priority[,weight]]]].
func srvValue(network string, s libvirtxml.NetworkDNSSRV) (string, error) {
	if s.Service == "" {
		return "", netxml.Errorf(netxml.KindInternal, "Missing required 'service' attribute in SRV record of network '%s'", network)
	}
	if s.Protocol == "" {
		return "", netxml.Errorf(netxml.KindInternal, "Missing required 'protocol' attribute in SRV record of network '%s'", network)
	}
	if err := CheckName("dns srv service", s.Service); err != nil {
		return "", err
	}
	if err := CheckName("dns srv protocol", s.Protocol); err != nil {
		return "", err
	}
	if strings.Contains(s.Service, ".") || strings.Contains(s.Protocol, ".") {
		return "", unsafeValue("dns srv service/protocol", s.Service+"/"+s.Protocol, "'.' not allowed")
	}
	if s.Port > 65535 || s.Priority > 65535 || s.Weight > 65535 {
		return "", netxml.Errorf(netxml.KindXML, "dns srv _%s._%s: port, priority and weight must be at most 65535", s.Service, s.Protocol)
	}
	v := "_" + s.Service + "._" + s.Protocol
	if s.Domain != "" {
		if err := CheckName("dns srv domain", s.Domain); err != nil {
			return "", err
		}
		v += "." + s.Domain
	}
	// An empty or "." target means "no such service": nothing else counts.
	if s.Target == "" || s.Target == "." {
		return v, nil
	}
	if err := CheckName("dns srv target", s.Target); err != nil {
		return "", err
	}
	v += "," + s.Target
	// Fields are positional: an unset one before a set one gets its
	// default (port 1, priority 0).
	if s.Port != 0 || s.Priority != 0 || s.Weight != 0 {
		port := s.Port
		if port == 0 {
			port = 1
		}
		v += "," + strconv.FormatUint(uint64(port), 10)
	}
	if s.Priority != 0 || s.Weight != 0 {
		v += "," + strconv.FormatUint(uint64(s.Priority), 10)
	}
	if s.Weight != 0 {
		v += "," + strconv.FormatUint(uint64(s.Weight), 10)
	}
	return v, nil
}

// dhcp picks the <ip> serving DHCP per family, writes TFTP, ranges, boot
// options and the lease limit, and fills the hostsfile.
func (g *gen) dhcp() error {
	for i := range g.ips {
		d := &g.ips[i]
		if !d.v4() {
			if hasDHCP(d.x) {
				if g.v6 != nil {
					return netxml.Errorf(netxml.KindUnsupported, "For IPv6, multiple DHCP definitions cannot be specified.")
				}
				g.v6 = d
			}
			continue
		}
		if hasDHCP(d.x) {
			if g.v4 != nil {
				return netxml.Errorf(netxml.KindUnsupported, "For IPv4, multiple DHCP definitions cannot be specified.")
			}
			g.v4 = d
		}
		if d.x.TFTP != nil && d.x.TFTP.Root != "" {
			if err := checkText("tftp root", d.x.TFTP.Root, ","); err != nil {
				return err
			}
			g.line("enable-tftp")
			g.line("tftp-root=", d.x.TFTP.Root)
		}
	}
	leases := 0
	for _, d := range []*ipDef{g.v4, g.v6} {
		if d == nil {
			continue
		}
		n, err := g.dhcpOf(d)
		if err != nil {
			return err
		}
		leases += n
	}
	if leases > 0 {
		g.line("dhcp-lease-max=", strconv.Itoa(leases))
	}
	return nil
}

// dhcpOf writes the DHCP lines of one <ip> and returns its number of
// dynamic addresses.
func (g *gen) dhcpOf(d *ipDef) (int, error) {
	leases := 0
	for _, r := range d.x.DHCP.Ranges {
		s, err := parseAddr("dhcp range start", r.Start)
		if err != nil {
			return 0, err
		}
		e, err := parseAddr("dhcp range end", r.End)
		if err != nil {
			return 0, err
		}
		if s.Is4() != d.v4() || e.Is4() != d.v4() {
			return 0, netxml.Errorf(netxml.KindXML, "dhcp range %s - %s is not in the family of ip %s", s, e, d.addr)
		}
		v := "dhcp-range=" + s.String() + "," + e.String() + ","
		if d.v4() {
			v += netmaskString(d.prefix) // dnsmasq wants a netmask for IPv4
		} else {
			v += strconv.Itoa(d.prefix)
		}
		lt, err := leaseTime(r.Lease)
		if err != nil {
			return 0, err
		}
		if lt != "" {
			v += "," + lt
		}
		g.line(v)
		size, err := rangeSize(s, e)
		if err != nil {
			return 0, err
		}
		leases += size
	}
	if len(d.x.DHCP.Ranges) == 0 && len(d.x.DHCP.Hosts) > 0 {
		// Static hosts only: a "static" range turns the DHCP service on.
		v := "dhcp-range=" + d.addr.String() + ",static"
		if !d.v4() {
			v += "," + strconv.Itoa(d.prefix)
		}
		g.line(v)
	}
	for i := range d.x.DHCP.Hosts {
		hl, ok, err := hostLine(&d.x.DHCP.Hosts[i], !d.v4())
		if err != nil {
			return 0, err
		}
		if ok {
			g.hosts.WriteString(hl)
			g.hosts.WriteByte('\n')
		}
	}
	if !d.v4() {
		return leases, nil
	}
	g.line("dhcp-no-override")
	g.line("dhcp-authoritative")
	if len(d.x.DHCP.Bootp) > 1 {
		return 0, netxml.Errorf(netxml.KindUnsupported, "only one <bootp> per <dhcp> is supported")
	}
	if len(d.x.DHCP.Bootp) == 1 && d.x.DHCP.Bootp[0].File != "" {
		bp := d.x.DHCP.Bootp[0]
		if err := checkText("dhcp bootp file", bp.File, ","); err != nil {
			return 0, err
		}
		v := "dhcp-boot=" + bp.File
		if bp.Server != "" {
			a, err := parseAddr("dhcp bootp server", bp.Server)
			if err != nil {
				return 0, err
			}
			v += ",," + a.String()
		}
		g.line(v)
	}
	return leases, nil
}

// dnsHosts fills the addnhosts file: "IP<TAB>name<TAB>…" per address;
// records with the same address share one line, as in libvirt.
func (g *gen) dnsHosts() error {
	if !g.wantDNS {
		return nil
	}
	var order []string
	names := map[string][]string{}
	for _, h := range g.dns.Host {
		if h.IP == "" {
			continue
		}
		a, err := parseAddr("dns host ip", h.IP)
		if err != nil {
			return err
		}
		k := a.String()
		for _, hn := range h.Hostnames {
			if err := CheckName("dns host hostname", hn.Hostname); err != nil {
				return err
			}
			if _, ok := names[k]; !ok {
				order = append(order, k)
			}
			names[k] = append(names[k], hn.Hostname)
		}
	}
	for _, k := range order {
		g.addn.WriteString(k)
		g.addn.WriteByte('\t')
		for _, hn := range names[k] {
			g.addn.WriteString(hn)
			g.addn.WriteByte('\t')
		}
		g.addn.WriteByte('\n')
	}
	return nil
}

// checkOption accepts a <dnsmasq:option value>: libvirt appends it verbatim
// as one line, so anything is allowed except what would start another line
// or be cut off by dnsmasq's line reader.
func checkOption(v string) error {
	if len(v) > maxValueLen {
		return unsafeValue("dnsmasq:option value", v[:32]+"…", fmt.Sprintf("longer than %d bytes", maxValueLen))
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return unsafeValue("dnsmasq:option value", v, fmt.Sprintf("control character %q not allowed", c))
		}
	}
	return nil
}
