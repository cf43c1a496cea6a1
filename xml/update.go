package netxml

import (
	"net/netip"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// UpdateCommand is libvirt's virNetworkUpdateCommand: what net-update does
// with the snippet.
type UpdateCommand int

// The net-update commands, with libvirt's public values.
const (
	UpdateModify   UpdateCommand = 1 // replace an existing entry
	UpdateDelete   UpdateCommand = 2 // remove an existing entry
	UpdateAddLast  UpdateCommand = 3 // append a new entry
	UpdateAddFirst UpdateCommand = 4 // prepend a new entry
)

var commandNames = map[UpdateCommand]string{
	UpdateModify:   "modify",
	UpdateDelete:   "delete",
	UpdateAddLast:  "add-last",
	UpdateAddFirst: "add-first",
}

// String returns virsh's name of the command ("add-first" …), or its number.
func (c UpdateCommand) String() string {
	if s, ok := commandNames[c]; ok {
		return s
	}
	return itoa(int(c))
}

// UpdateSection is libvirt's virNetworkUpdateSection: which part of the
// network a net-update edits.
type UpdateSection int

// The net-update sections, with libvirt's public values.
const (
	SectionBridge           UpdateSection = 1  // <bridge> (never updatable)
	SectionDomain           UpdateSection = 2  // <domain> (never updatable)
	SectionIP               UpdateSection = 3  // <ip> (never updatable)
	SectionIPDHCPHost       UpdateSection = 4  // <ip>/<dhcp>/<host>
	SectionIPDHCPRange      UpdateSection = 5  // <ip>/<dhcp>/<range>
	SectionForward          UpdateSection = 6  // <forward> (never updatable)
	SectionForwardInterface UpdateSection = 7  // <forward>/<interface>
	SectionForwardPF        UpdateSection = 8  // <forward>/<pf> (never updatable)
	SectionPortGroup        UpdateSection = 9  // <portgroup>
	SectionDNSHost          UpdateSection = 10 // <dns>/<host>
	SectionDNSTxt           UpdateSection = 11 // <dns>/<txt>
	SectionDNSSrv           UpdateSection = 12 // <dns>/<srv>
)

var sectionNames = map[UpdateSection]string{
	SectionBridge:           "bridge",
	SectionDomain:           "domain",
	SectionIP:               "ip",
	SectionIPDHCPHost:       "ip-dhcp-host",
	SectionIPDHCPRange:      "ip-dhcp-range",
	SectionForward:          "forward",
	SectionForwardInterface: "forward-interface",
	SectionForwardPF:        "forward-pf",
	SectionPortGroup:        "portgroup",
	SectionDNSHost:          "dns-host",
	SectionDNSTxt:           "dns-txt",
	SectionDNSSrv:           "dns-srv",
}

// String returns virsh's name of the section ("ip-dhcp-host" …), or its number.
func (s UpdateSection) String() string {
	if n, ok := sectionNames[s]; ok {
		return n
	}
	return itoa(int(s))
}

// ParseUpdateCommand maps a virsh net-update command name ("add-first",
// "add-last" or its alias "add", "delete", "modify") to its value. Other
// names fail as in virsh: "unrecognized command name 'X'".
func ParseUpdateCommand(s string) (UpdateCommand, error) {
	if s == "add" {
		return UpdateAddLast, nil
	}
	for c, name := range commandNames {
		if name == s {
			return c, nil
		}
	}
	return 0, Errorf(KindPlain, "unrecognized command name '%s'", s)
}

// ParseUpdateSection maps a virsh net-update section name ("ip-dhcp-host",
// "dns-txt" …) to its value. Other names fail as in virsh:
// "unrecognized section name 'X'".
func ParseUpdateSection(s string) (UpdateSection, error) {
	for sec, name := range sectionNames {
		if name == s {
			return sec, nil
		}
	}
	return 0, Errorf(KindPlain, "unrecognized section name '%s'", s)
}

// updateDocName is the document name libvirt gives a net-update snippet; it
// shows in XML syntax errors ("network_update_xml:1: …").
const updateDocName = "network_update_xml"

// Update applies one net-update edit to n in place, as libvirt's
// virNetworkDefUpdateSection does, with libvirt's messages and error kinds.
//
// parentIndex selects the <ip> for the two DHCP sections: >= 0 is the index
// among all <ip> elements in document order; a negative value is libvirt's -1,
// "the <ip> that already has DHCP, else the first IPv4, else the first IPv6".
// snippet is the single element of the section (<host>, <range>,
// <interface>, <portgroup>, <txt>, <srv>).
//
// The edit is made on a copy, which must then survive a format/parse cycle (as
// in libvirt) and Validate; only then is n replaced. So nothing in n changes
// when Update fails, and a successful update leaves n valid. Callers that
// share n should still pass a Clone and swap it in.
func Update(n *Network, cmd UpdateCommand, section UpdateSection, parentIndex int, snippet string) error {
	if n == nil {
		return Errorf(KindInternal, "no network definition to update")
	}
	root, err := parseDoc([]byte(snippet))
	if err != nil {
		return renameDoc(err)
	}
	c := n.Clone()
	u := &updater{n: c, cmd: cmd, root: root, p: &parser{name: c.Name}}
	switch section {
	case SectionBridge, SectionDomain, SectionIP, SectionForward:
		err = u.noSupport(section.String())
	case SectionForwardPF:
		err = u.noSupport("forward pf")
	case SectionIPDHCPHost:
		err = u.dhcpHost(parentIndex)
	case SectionIPDHCPRange:
		err = u.dhcpRange(parentIndex)
	case SectionForwardInterface:
		err = u.forwardInterface()
	case SectionPortGroup:
		err = u.portGroup()
	case SectionDNSHost:
		err = u.dnsHost()
	case SectionDNSTxt:
		err = u.dnsTxt()
	case SectionDNSSrv:
		err = u.dnsSrv()
	default:
		err = Errorf(KindOperationUnsupported, "can't update unrecognized section of network")
	}
	if err != nil {
		return err
	}
	// libvirt re-parses the edited definition to catch what the section
	// code does not check (e.g. DNS records in a <dns enable='no'>).
	out, err := Format(c, 0)
	if err != nil {
		return err
	}
	if _, err := Parse([]byte(out)); err != nil {
		return err
	}
	if err := Validate(c); err != nil {
		return err
	}
	*n = *c
	return nil
}

// renameDoc gives a snippet's syntax error the document name libvirt uses
// for net-update snippets instead of the one of network definitions.
func renameDoc(err error) error {
	if e, ok := err.(*Error); ok && strings.HasPrefix(e.Msg, docName) {
		return &Error{Kind: e.Kind, Msg: updateDocName + strings.TrimPrefix(e.Msg, docName)}
	}
	return err
}

// updater carries one update: the network copy being edited, the command
// and the snippet's root element.
type updater struct {
	n    *Network
	cmd  UpdateCommand
	root *elem
	p    *parser
}

func (u *updater) isAdd() bool { return u.cmd == UpdateAddFirst || u.cmd == UpdateAddLast }

func (u *updater) noSupport(section string) error {
	return Errorf(KindOperationUnsupported, "can't update '%s' section of network '%s'", section, u.n.Name)
}

func (u *updater) unknownCommand() error {
	return Errorf(KindOperationUnsupported, "unrecognized network update command code %d", int(u.cmd))
}

// checkElement requires the snippet's root element to be the section's.
func (u *updater) checkElement(name string) error {
	if u.root.local != name {
		return Errorf(KindXML, "unexpected element <%s>, expecting <%s>, while updating network '%s'", u.root.local, name, u.n.Name)
	}
	return nil
}

// insertAt returns the index where an add command inserts into a list of n.
func (u *updater) insertAt(n int) int {
	if u.cmd == UpdateAddFirst {
		return 0
	}
	return n
}

func insert[T any](list []T, at int, v T) []T {
	list = append(list, v)
	copy(list[at+1:], list[at:])
	list[at] = v
	return list
}

func remove[T any](list []T, at int) []T {
	return append(list[:at:at], list[at+1:]...)
}

// ipByIndex picks the <ip> a DHCP update works on (libvirt's
// virNetworkIPDefByIndex).
func (u *updater) ipByIndex(parentIndex int) (*libvirtxml.NetworkIP, error) {
	n := u.n
	if parentIndex >= 0 {
		if parentIndex >= len(n.IPs) {
			return nil, Errorf(KindInvalidOperation, "couldn't update dhcp host entry - no <ip> element found at index %d in network '%s'", parentIndex, n.Name)
		}
		return &n.IPs[parentIndex], nil
	}
	for i := range n.IPs {
		if HasDHCP(n.IPs[i]) {
			return &n.IPs[i], nil
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if ips := n.IPsOf(fam); len(ips) > 0 {
			return ips[0], nil
		}
	}
	return nil, Errorf(KindInvalidOperation, "couldn't update dhcp host entry - no <ip> element found in network '%s'", n.Name)
}

// checkMultiDHCP refuses to add DHCP to ip while another <ip> of its family
// already has DHCP.
func (u *updater) checkMultiDHCP(ip *libvirtxml.NetworkIP) error {
	fam := IPFamily(*ip)
	for _, o := range u.n.IPsOf(fam) {
		if o != ip && HasDHCP(*o) {
			what := "IPv4"
			if fam == "ipv6" {
				what = "IPv6"
			}
			return Errorf(KindInvalidOperation, "dhcp is supported only for a single %s address on each network", what)
		}
	}
	return nil
}

// nullStr renders an absent string the way glib's printf renders NULL in
// libvirt's messages.
func nullStr(s string) string {
	if s == "" {
		return "(null)"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// sameMAC compares two MAC addresses by value.
func sameMAC(a, b string) bool {
	x, _, ok1 := parseMAC(a)
	y, _, ok2 := parseMAC(b)
	return ok1 && ok2 && x == y
}

// sameAddr compares two addresses by value ("" never matches).
func sameAddr(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	x, err1 := ParseAddr(a)
	y, err2 := ParseAddr(b)
	return err1 == nil && err2 == nil && x == y
}

// parseDHCPHost reads a DHCP <host> snippet for the <ip> with address ipAddr.
// partial (DELETE) needs only one of mac, name, ip.
func (u *updater) parseDHCPHost(ipAddr netip.Addr, partial bool) (libvirtxml.NetworkDHCPHost, error) {
	h := u.root
	name := u.n.Name
	host := libvirtxml.NetworkDHCPHost{}
	v6 := ipAddr.Is6()
	mac, hasMAC := h.attr("mac")
	if hasMAC {
		if v6 {
			return host, xmlErr("Invalid to specify MAC address '%s' in network '%s' IPv6 static host definition", mac, name)
		}
		m, b, ok := parseMAC(mac)
		if !ok {
			return host, xmlErr("Cannot parse MAC address '%s' in network '%s'", mac, name)
		}
		if b[0]&1 != 0 {
			return host, xmlErr("expected unicast mac address, found multicast '%s' in network '%s'", mac, name)
		}
		host.MAC = m
	}
	id, hasID := h.attr("id")
	if hasID {
		for _, c := range id {
			if !strings.ContainsRune("0123456789abcdefABCDEF:", c) {
				return host, xmlErr("Invalid character '%c' in id '%s' of network '%s'", c, id, name)
			}
		}
		host.ID = id
	}
	hostName, hasName := h.attr("name")
	if hasName {
		if hostName == "" || !(isAlpha(hostName[0]) || (hostName[0] >= '0' && hostName[0] <= '9')) {
			return host, xmlErr("Cannot use host name '%s' in network '%s'", hostName, name)
		}
		host.Name = hostName
	}
	ip, hasIP := h.attr("ip")
	if hasIP {
		a, err := ParseAddr(ip)
		if err != nil {
			return host, xmlErr("Invalid IP address in static host definition for network '%s'", name)
		}
		host.IP = FormatAddr(a)
	}
	if partial {
		if !hasMAC && !hasName && !hasIP {
			return host, xmlErr("At least one of name, mac, or ip attribute must be specified for static host definition in network '%s'", name)
		}
	} else {
		if v6 {
			if !hasID && !hasName {
				return host, xmlErr("Static host definition in IPv6 network '%s' must have id or name attribute", name)
			}
		} else if !hasMAC && !hasName {
			return host, xmlErr("Static host definition in IPv4 network '%s' must have mac or name attribute", name)
		}
		if !hasIP {
			return host, xmlErr("Missing IP address in static host definition for network '%s'", name)
		}
	}
	var err error
	if host.Lease, err = u.p.lease(h); err != nil {
		return host, err
	}
	return host, nil
}

func (u *updater) dhcpHost(parentIndex int) error {
	if err := u.checkElement("host"); err != nil {
		return err
	}
	ip, err := u.ipByIndex(parentIndex)
	if err != nil {
		return err
	}
	ipAddr, err := ParseAddr(ip.Address)
	if err != nil {
		return Errorf(KindInternal, "invalid address '%s' of <ip> in network '%s'", ip.Address, u.n.Name)
	}
	partial := u.cmd == UpdateDelete
	host, err := u.parseDHCPHost(ipAddr, partial)
	if err != nil {
		return err
	}
	if !partial {
		if a, _ := ParseAddr(host.IP); a.Is6() != ipAddr.Is6() {
			return Errorf(KindInvalidOperation, "the address family of a host entry IP must match the address family of the dhcp element's parent")
		}
	}
	if ip.DHCP == nil {
		ip.DHCP = &libvirtxml.NetworkDHCP{}
	}
	hosts := ip.DHCP.Hosts
	switch {
	case u.cmd == UpdateModify:
		i := 0
		for ; i < len(hosts); i++ {
			h := hosts[i]
			if (host.MAC != "" && sameMAC(h.MAC, host.MAC)) || sameAddr(host.IP, h.IP) || (host.Name != "" && host.Name == h.Name) {
				break
			}
		}
		if i == len(hosts) {
			return Errorf(KindInvalidOperation, "couldn't locate an existing dhcp host entry with \"mac='%s'\" \"name='%s'\" \"ip='%s'\" in network '%s'",
				orUnknown(host.MAC), nullStr(host.Name), orUnknown(host.IP), u.n.Name)
		}
		hosts[i] = host
	case u.isAdd():
		if err := u.checkMultiDHCP(ip); err != nil {
			return err
		}
		for _, h := range hosts {
			if (host.MAC != "" && sameMAC(h.MAC, host.MAC)) || (host.Name != "" && host.Name == h.Name) || sameAddr(host.IP, h.IP) {
				return Errorf(KindInvalidOperation, "there is an existing dhcp host entry in network '%s' that matches \"<host mac='%s' name='%s' ip='%s'/>\"",
					u.n.Name, orUnknown(host.MAC), nullStr(host.Name), orUnknown(host.IP))
			}
		}
		ip.DHCP.Hosts = insert(hosts, u.insertAt(len(hosts)), host)
	case u.cmd == UpdateDelete:
		i := 0
		for ; i < len(hosts); i++ {
			h := hosts[i]
			if (host.MAC == "" || h.MAC == "" || sameMAC(h.MAC, host.MAC)) &&
				(host.Name == "" || host.Name == h.Name) &&
				(host.IP == "" || sameAddr(host.IP, h.IP)) {
				break
			}
		}
		if i == len(hosts) {
			return Errorf(KindInvalidOperation, "couldn't locate a matching dhcp host entry in network '%s'", u.n.Name)
		}
		ip.DHCP.Hosts = remove(hosts, i)
	default:
		return u.unknownCommand()
	}
	return nil
}

func (u *updater) dhcpRange(parentIndex int) error {
	if err := u.checkElement("range"); err != nil {
		return err
	}
	ip, err := u.ipByIndex(parentIndex)
	if err != nil {
		return err
	}
	if u.cmd == UpdateModify {
		return Errorf(KindOperationUnsupported, "dhcp ranges cannot be modified, only added or deleted")
	}
	ipNet, err := IPNet(*ip)
	if err != nil {
		return err
	}
	// Parse the range exactly as inside a definition: a <dhcp> holding
	// only the snippet (in no namespace, as libvirt ignores it here).
	r := *u.root
	r.prefix, r.uri = "", ""
	d, err := u.p.dhcp(&elem{local: "dhcp", items: []item{{el: &r}}}, ipNet)
	if err != nil {
		return err
	}
	if len(d.Ranges) != 1 {
		return Errorf(KindInternal, "couldn't parse the dhcp range of network '%s'", u.n.Name)
	}
	rg := d.Ranges[0]
	if a, _ := ParseAddr(rg.Start); a.Is6() != ipNet.Addr().Is6() {
		return Errorf(KindInvalidOperation, "the address family of a dhcp range must match the address family of the dhcp element's parent")
	}
	if ip.DHCP == nil {
		ip.DHCP = &libvirtxml.NetworkDHCP{}
	}
	ranges := ip.DHCP.Ranges
	i := 0
	for ; i < len(ranges); i++ {
		if sameAddr(ranges[i].Start, rg.Start) && sameAddr(ranges[i].End, rg.End) {
			break
		}
	}
	switch {
	case u.isAdd():
		if err := u.checkMultiDHCP(ip); err != nil {
			return err
		}
		if i < len(ranges) {
			return Errorf(KindInvalidOperation, "there is an existing dhcp range entry in network '%s' that matches \"<range start='%s' end='%s'/>\"", u.n.Name, rg.Start, rg.End)
		}
		ip.DHCP.Ranges = insert(ranges, u.insertAt(len(ranges)), rg)
	case u.cmd == UpdateDelete:
		if i == len(ranges) {
			return Errorf(KindInvalidOperation, "couldn't locate a matching dhcp range entry in network '%s'", u.n.Name)
		}
		ip.DHCP.Ranges = remove(ranges, i)
	default:
		return u.unknownCommand()
	}
	return nil
}

func (u *updater) forwardInterface() error {
	if err := u.checkElement("interface"); err != nil {
		return err
	}
	if u.cmd == UpdateModify {
		return Errorf(KindOperationUnsupported, "forward interface entries cannot be modified, only added or deleted")
	}
	dev, ok := u.root.attr("dev")
	if !ok {
		return Errorf(KindXML, "missing dev attribute in <interface> element")
	}
	n := u.n
	var ifaces []libvirtxml.NetworkForwardInterface
	if n.Forward != nil {
		ifaces = n.Forward.Interfaces
	}
	i := 0
	for ; i < len(ifaces); i++ {
		if ifaces[i].Dev == dev {
			break
		}
	}
	switch {
	case u.isAdd():
		if i < len(ifaces) {
			return Errorf(KindInvalidOperation, "there is an existing interface entry in network '%s' that matches \"<interface dev='%s'>\"", n.Name, dev)
		}
		if n.Forward == nil {
			// libvirt would store the device in an isolated network's
			// invisible forward pool; vnet refuses instead of losing it.
			return Errorf(KindInvalidOperation, "network '%s' has no <forward> element to add interface '%s' to", n.Name, dev)
		}
		if len(n.Forward.PFs) > 0 {
			// The pool of a <pf> network is derived from the PF's virtual
			// functions at start and not saved, so the device would be lost.
			return Errorf(KindInvalidOperation, "the forward devices of network '%s' come from <pf dev='%s'>, interface '%s' can't be added", n.Name, n.Forward.PFs[0].Dev, dev)
		}
		n.Forward.Interfaces = insert(ifaces, u.insertAt(len(ifaces)), libvirtxml.NetworkForwardInterface{Dev: dev})
	case u.cmd == UpdateDelete:
		if i == len(ifaces) {
			return Errorf(KindInvalidOperation, "couldn't find an interface entry in network '%s' matching <interface dev='%s'>", n.Name, dev)
		}
		if c := n.InterfaceConnections[dev]; c > 0 {
			return Errorf(KindInvalidOperation, "unable to delete interface '%s' in network '%s'. It is currently being used by %d domains.", dev, n.Name, c)
		}
		n.Forward.Interfaces = remove(ifaces, i)
		delete(n.InterfaceConnections, dev)
	default:
		return u.unknownCommand()
	}
	n.SyncForwardDev()
	return nil
}

func (u *updater) portGroup() error {
	if err := u.checkElement("portgroup"); err != nil {
		return err
	}
	pg, err := u.p.portgroup(u.root)
	if err != nil {
		return err
	}
	n := u.n
	foundName, foundDefault := -1, -1
	for i, g := range n.PortGroups {
		if g.Name == pg.Name {
			foundName = i
		}
		if g.Default == "yes" {
			foundDefault = i
		}
	}
	switch {
	case foundName < 0 && (u.cmd == UpdateModify || u.cmd == UpdateDelete):
		return Errorf(KindInvalidOperation, "couldn't find a portgroup entry in network '%s' matching <portgroup name='%s'>", n.Name, pg.Name)
	case foundName >= 0 && u.isAdd():
		return Errorf(KindInvalidOperation, "there is an existing portgroup entry in network '%s' that matches \"<portgroup name='%s'>\"", n.Name, pg.Name)
	}
	if u.cmd != UpdateDelete && pg.Default == "yes" && foundDefault >= 0 && foundDefault != foundName {
		return Errorf(KindInvalidOperation, "a different portgroup entry in network '%s' is already set as the default. Only one default is allowed.", n.Name)
	}
	switch {
	case u.cmd == UpdateModify:
		n.PortGroups[foundName] = pg
	case u.isAdd():
		n.PortGroups = insert(n.PortGroups, u.insertAt(len(n.PortGroups)), pg)
	case u.cmd == UpdateDelete:
		n.PortGroups = remove(n.PortGroups, foundName)
	default:
		return u.unknownCommand()
	}
	return nil
}

// dns returns the network's <dns>, creating an empty one.
func (u *updater) dns() *libvirtxml.NetworkDNS {
	if u.n.DNS == nil {
		u.n.DNS = &libvirtxml.NetworkDNS{}
	}
	return u.n.DNS
}

func (u *updater) dnsHost() error {
	if err := u.checkElement("host"); err != nil {
		return err
	}
	var host libvirtxml.NetworkDNSHost
	var err error
	if u.cmd == UpdateDelete {
		host, err = u.parseDNSHostPartial()
	} else {
		host, err = u.p.dnsHost(u.root)
	}
	if err != nil {
		return err
	}
	dns := u.dns()
	found, foundIdx := 0, -1
	for i, h := range dns.Host {
		match := sameAddr(host.IP, h.IP)
		// Several records may share a hostname, so adding and modifying
		// look at the address only; deleting also matches by hostname.
		if u.cmd == UpdateDelete && !match {
			for _, a := range host.Hostnames {
				for _, b := range h.Hostnames {
					if a.Hostname == b.Hostname {
						match = true
					}
				}
			}
		}
		if match {
			found++
			foundIdx = i
		}
	}
	switch {
	case u.isAdd():
		if found > 0 {
			return Errorf(KindInvalidOperation, "there is already at least one DNS HOST record with a matching field in network %s", u.n.Name)
		}
		dns.Host = insert(dns.Host, u.insertAt(len(dns.Host)), host)
	case u.cmd == UpdateDelete || u.cmd == UpdateModify:
		if found == 0 {
			return Errorf(KindInvalidOperation, "couldn't locate a matching DNS HOST record in network %s", u.n.Name)
		}
		if found > 1 {
			return Errorf(KindInvalidOperation, "multiple matching DNS HOST records were found in network %s", u.n.Name)
		}
		if u.cmd == UpdateDelete {
			dns.Host = remove(dns.Host, foundIdx)
		} else {
			dns.Host[foundIdx].Hostnames = host.Hostnames
		}
	default:
		return u.unknownCommand()
	}
	return nil
}

// parseDNSHostPartial reads a DNS <host> given to DELETE: an ip and/or
// hostnames.
func (u *updater) parseDNSHostPartial() (libvirtxml.NetworkDNSHost, error) {
	host := libvirtxml.NetworkDNSHost{}
	name := u.n.Name
	for _, hn := range u.root.kids("hostname") {
		t := hn.text()
		if t == "" {
			return host, Errorf(KindPlain, "Missing hostname in network '%s' DNS HOST record", name)
		}
		host.Hostnames = append(host.Hostnames, libvirtxml.NetworkDNSHostHostname{Hostname: t})
	}
	ip, ok := u.root.attr("ip")
	if !ok {
		if len(host.Hostnames) == 0 {
			return host, Errorf(KindPlain, "Missing ip and hostname in network '%s' DNS HOST record", name)
		}
		return host, nil
	}
	c, ok := canonAddr(ip)
	if !ok {
		return host, Errorf(KindPlain, "Invalid IP address in network '%s' DNS HOST record", name)
	}
	host.IP = c
	return host, nil
}

func (u *updater) dnsTxt() error {
	if err := u.checkElement("txt"); err != nil {
		return err
	}
	var txt libvirtxml.NetworkDNSTXT
	var err error
	if u.cmd == UpdateDelete {
		// DELETE needs only the name.
		txt.Name, _ = u.root.attr("name")
		if txt.Name == "" {
			return Errorf(KindPlain, "missing required name attribute in DNS TXT record of network %s", u.n.Name)
		}
		if strings.ContainsAny(txt.Name, " ,") {
			return Errorf(KindPlain, "prohibited character in DNS TXT record name '%s' of network %s", txt.Name, u.n.Name)
		}
	} else if txt, err = u.p.dnsTXT(u.root); err != nil {
		return err
	}
	dns := u.dns()
	i := 0
	for ; i < len(dns.TXTs); i++ {
		if dns.TXTs[i].Name == txt.Name {
			break
		}
	}
	switch {
	case u.isAdd():
		if i < len(dns.TXTs) {
			return Errorf(KindInvalidOperation, "there is already a DNS TXT record with name '%s' in network %s", txt.Name, u.n.Name)
		}
		dns.TXTs = insert(dns.TXTs, u.insertAt(len(dns.TXTs)), txt)
	case u.cmd == UpdateDelete || u.cmd == UpdateModify:
		if i == len(dns.TXTs) {
			return Errorf(KindInvalidOperation, "couldn't locate a matching DNS TXT record in network %s", u.n.Name)
		}
		if u.cmd == UpdateDelete {
			dns.TXTs = remove(dns.TXTs, i)
		} else {
			dns.TXTs[i].Value = txt.Value
		}
	default:
		return u.unknownCommand()
	}
	return nil
}

func (u *updater) dnsSrv() error {
	if u.cmd == UpdateModify {
		return Errorf(KindOperationUnsupported, "DNS SRV records cannot be modified, only added or deleted")
	}
	if err := u.checkElement("srv"); err != nil {
		return err
	}
	var srv libvirtxml.NetworkDNSSRV
	var err error
	if u.isAdd() {
		srv, err = u.p.dnsSRV(u.root)
	} else {
		srv, err = u.parseSRVPartial()
	}
	if err != nil {
		return err
	}
	dns := u.dns()
	found, foundIdx := 0, -1
	for i, s := range dns.SRVs {
		if (srv.Domain == "" || srv.Domain == s.Domain) &&
			(srv.Service == "" || srv.Service == s.Service) &&
			(srv.Protocol == "" || srv.Protocol == s.Protocol) &&
			(srv.Target == "" || srv.Target == s.Target) {
			found++
			foundIdx = i
		}
	}
	switch {
	case u.isAdd():
		if found > 0 {
			return Errorf(KindInvalidOperation, "there is already at least one DNS SRV record matching all specified fields in network %s", u.n.Name)
		}
		dns.SRVs = insert(dns.SRVs, u.insertAt(len(dns.SRVs)), srv)
	case u.cmd == UpdateDelete:
		if found == 0 {
			return Errorf(KindInvalidOperation, "couldn't locate a matching DNS SRV record in network %s", u.n.Name)
		}
		if found > 1 {
			return Errorf(KindInvalidOperation, "multiple DNS SRV records matching all specified fields were found in network %s", u.n.Name)
		}
		dns.SRVs = remove(dns.SRVs, foundIdx)
	default:
		return u.unknownCommand()
	}
	return nil
}

// parseSRVPartial reads an SRV record given to DELETE: every attribute is
// optional, but those given are checked as in a definition.
func (u *updater) parseSRVPartial() (libvirtxml.NetworkDNSSRV, error) {
	s := u.root
	name := u.n.Name
	srv := libvirtxml.NetworkDNSSRV{}
	srv.Service, _ = s.attr("service")
	if len(srv.Service) > 15 {
		return srv, detail("service attribute '%s' in network '%s' is too long, limit is 15 bytes", srv.Service, name)
	}
	if !onlyChars(srv.Service, srvServiceChars) {
		return srv, detail("invalid character in service attribute '%s' in DNS SRV record of network '%s'", srv.Service, name)
	}
	srv.Protocol, _ = s.attr("protocol")
	if !onlyChars(srv.Protocol, srvProtocolChars) {
		return srv, detail("invalid character in protocol attribute '%s' in DNS SRV record of network '%s'", srv.Protocol, name)
	}
	srv.Domain, _ = s.attr("domain")
	srv.Target, _ = s.attr("target")
	for _, f := range []struct {
		attr, what string
		min        uint
		dst        *uint
	}{{"port", "invalid DNS SRV port", 1, &srv.Port}, {"priority", "Invalid DNS SRV priority", 0, &srv.Priority}, {"weight", "invalid DNS SRV weight", 0, &srv.Weight}} {
		v, present, err := uintAttr(s, f.attr, 65535)
		if present && srv.Target == "" {
			return srv, detail("DNS SRV %s attribute not permitted without target for service '%s' in network '%s'", f.attr, nullStr(srv.Service), name)
		}
		if err != nil || (present && v < f.min) {
			return srv, detail("%s attribute for service '%s' in network '%s'", f.what, nullStr(srv.Service), name)
		}
		*f.dst = v
	}
	return srv, nil
}

// LiveAction says what applying a net-update to a running network takes
// beyond saving the definition.
type LiveAction int

const (
	// LiveUnsupported: the section can't be updated at all (bridge,
	// domain, ip, forward, forward-pf, unknown sections).
	LiveUnsupported LiveAction = iota
	// LiveNone: no host state depends on the section (portgroup: only
	// guests connecting later see it).
	LiveNone
	// LiveHUP: rewrite dnsmasq's hostsfile / addnhosts and send SIGHUP
	// (dnsmasq re-reads those files, not its configuration).
	LiveHUP
	// LiveRestartDnsmasq: dnsmasq's configuration file changes, so dnsmasq
	// must be restarted (the network itself stays up).
	LiveRestartDnsmasq
	// LiveFirewall: the firewall rules of the network must be re-applied
	// (for nat, route and isolated networks; nothing to do for others).
	LiveFirewall
)

// String names the action for logs.
func (a LiveAction) String() string {
	switch a {
	case LiveNone:
		return "none"
	case LiveHUP:
		return "hup"
	case LiveRestartDnsmasq:
		return "restart-dnsmasq"
	case LiveFirewall:
		return "firewall"
	}
	return "unsupported"
}

// UpdateNeedsRestart reports what applying a net-update of section to a
// running network takes:
//
//   - ip-dhcp-host, dns-host: LiveHUP (hostsfile / addnhosts), like libvirt;
//   - ip-dhcp-range, dns-txt, dns-srv: LiveRestartDnsmasq. Ranges are dnsmasq
//     options; TXT and SRV records are too (txt-record=, srv-host=), which
//     dnsmasq does not re-read on SIGHUP, so libvirt's SIGHUP leaves them
//     stale until the network restarts; vnet restarts dnsmasq instead;
//   - forward-interface: LiveFirewall (libvirt re-adds the rules of nat,
//     route and isolated networks, whose outgoing device is the first one);
//   - portgroup: LiveNone;
//   - everything else: LiveUnsupported (Update refuses it anyway).
//
// See UpdateLiveAction for the transitions that need more than the section's
// usual action.
func UpdateNeedsRestart(section UpdateSection) LiveAction {
	switch section {
	case SectionIPDHCPHost, SectionDNSHost:
		return LiveHUP
	case SectionIPDHCPRange, SectionDNSTxt, SectionDNSSrv:
		return LiveRestartDnsmasq
	case SectionForwardInterface:
		return LiveFirewall
	case SectionPortGroup:
		return LiveNone
	}
	return LiveUnsupported
}

// UpdateLiveAction refines UpdateNeedsRestart with the definitions before and
// after the update: a host edit that starts or stops DHCP for an address
// family, or adds the first / removes the last DNS host, changes dnsmasq's
// configuration (dhcp-range, dhcp-hostsfile=, addn-hosts= lines), so it
// needs LiveRestartDnsmasq rather than LiveHUP (libvirt restarts dnsmasq in
// the IPv4 case too).
func UpdateLiveAction(section UpdateSection, before, after *Network) LiveAction {
	a := UpdateNeedsRestart(section)
	if a != LiveHUP || before == nil || after == nil {
		return a
	}
	switch section {
	case SectionIPDHCPHost:
		if (before.IPv4DHCP() == nil) != (after.IPv4DHCP() == nil) ||
			(before.IPv6DHCP() == nil) != (after.IPv6DHCP() == nil) ||
			hasDHCPHosts(before) != hasDHCPHosts(after) {
			return LiveRestartDnsmasq
		}
	case SectionDNSHost:
		if (dnsHostCount(before) == 0) != (dnsHostCount(after) == 0) {
			return LiveRestartDnsmasq
		}
	}
	return a
}

func hasDHCPHosts(n *Network) bool {
	for _, ip := range n.IPs {
		if ip.DHCP != nil && len(ip.DHCP.Hosts) > 0 {
			return true
		}
	}
	return false
}

func dnsHostCount(n *Network) int {
	if n.DNS == nil {
		return 0
	}
	return len(n.DNS.Host)
}
