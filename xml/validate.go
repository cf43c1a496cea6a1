package netxml

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"libvirt.org/go/libvirtxml"
)

// MaxBridgeNameLen is the longest Linux interface name (IFNAMSIZ - 1).
const MaxBridgeNameLen = 15

// Validate does the define-time semantic validation that needs neither the
// host nor other networks, with libvirt's messages where libvirt has the
// check (in its parser or its network driver), and precise vnet messages for
// what libvirt only finds at start or never (bridge names the kernel refuses,
// static DHCP hosts outside their subnet, DHCPv6 prefixes dnsmasq refuses,
// control characters that would end up in dnsmasq's configuration).
//
// It may be called before FillDefaults (a missing bridge name or a "%d"
// template is fine) or after.
func Validate(n *Network) error {
	if n == nil {
		return Errorf(KindInternal, "no network definition")
	}
	if err := checkName(n.Name); err != nil {
		return err
	}
	if n.UUID != "" {
		if _, err := NormalizeUUID(n.UUID); err != nil {
			return Errorf(KindInternal, "malformed uuid element")
		}
	}
	mode := n.ForwardMode()
	switch mode {
	case "user":
		return validateUser(n)
	case "", "nat", "route", "open", "bridge", "private", "vepa", "passthrough", "hostdev":
	default:
		return Errorf(KindUnsupported, "unknown forwarding type '%s'", mode)
	}
	if err := validateOverlay(n); err != nil {
		return err
	}
	if err := validateBridgeName(n); err != nil {
		return err
	}
	if err := validateModeElements(n, mode); err != nil {
		return err
	}
	if err := validateIPs(n); err != nil {
		return err
	}
	if err := validateForward(n, mode); err != nil {
		return err
	}
	if n.MTU != nil && n.MTU.Size != 0 && (n.MTU.Size < 68 || n.MTU.Size > 65535) {
		return Errorf(KindXML, "invalid MTU %d in network '%s': it must be between 68 and 65535", n.MTU.Size, n.Name)
	}
	if n.Bandwidth != nil && n.Bandwidth.Inbound != nil && deref(n.Bandwidth.Inbound.Floor) > 0 {
		return Errorf(KindUnsupported, "Unsupported network-wide <floor> element in network %s", n.Name)
	}
	return validateText(n)
}

// validateBridgeName checks the bridge name against the kernel's rules for
// interface names (libvirt leaves that to bridge creation at start).
func validateBridgeName(n *Network) error {
	name := n.BridgeName()
	if name == "" {
		return nil
	}
	check := name
	if strings.Contains(name, "%d") && n.OwnsBridge() {
		if strings.Count(name, "%") != 1 {
			return Errorf(KindXML, "invalid bridge name template '%s' in network '%s': it may contain only one '%%d'", name, n.Name)
		}
		// The longest name the template can produce (virbr%d → virbr256).
		check = strings.Replace(name, "%d", "256", 1)
	}
	if len(check) > MaxBridgeNameLen {
		return Errorf(KindXML, "bridge name '%s' in network '%s' is too long: %d bytes, the limit is %d", name, n.Name, len(check), MaxBridgeNameLen)
	}
	if check == "." || check == ".." {
		return Errorf(KindXML, "invalid bridge name '%s' in network '%s'", name, n.Name)
	}
	for _, r := range check {
		if r == '/' || r == ':' || r == '%' || unicode.IsSpace(r) || r < 0x20 || r == 0x7f {
			return Errorf(KindXML, "invalid char in bridge name '%s' of network '%s': %q", name, n.Name, r)
		}
	}
	return nil
}

// validateModeElements applies the forward-mode rules of libvirt's driver
// (networkValidate): what networks that don't own their bridge may not have,
// where <bandwidth> and <vlan> are allowed, portgroup uniqueness.
func validateModeElements(n *Network, mode string) error {
	bandwidthOK := n.OwnsBridge() || (mode == "bridge" && n.BridgeName() != "")
	if !n.OwnsBridge() {
		unsupported := func(what string) error {
			return Errorf(KindUnsupported, "Unsupported %s element in network %s with forward mode='%s'", what, n.Name, mode)
		}
		if n.MAC != nil && n.MAC.Address != "" {
			return unsupported("<mac>")
		}
		if len(n.IPs) > 0 {
			return unsupported("<ip>")
		}
		if n.DNS != nil && (len(n.DNS.TXTs) > 0 || len(n.DNS.Host) > 0 || len(n.DNS.SRVs) > 0) {
			return unsupported("<dns>")
		}
		if n.Domain != nil && n.Domain.Name != "" {
			return unsupported("<domain>")
		}
	}
	if n.Bandwidth != nil && !bandwidthOK {
		return Errorf(KindUnsupported, "Unsupported network-wide <bandwidth> element in network %s with forward mode='%s'", n.Name, mode)
	}

	vpType := func(vp *libvirtxml.NetworkVirtualPort) string {
		switch {
		case vp == nil || vp.Params == nil:
			return ""
		case vp.Params.OpenVSwitch != nil:
			return "openvswitch"
		case vp.Params.VEPA8021QBG != nil:
			return "802.1Qbg"
		case vp.Params.VNTag8011QBH != nil:
			return "802.1Qbh"
		case vp.Params.MidoNet != nil:
			return "midonet"
		}
		return ""
	}
	netVP := vpType(n.VirtualPort)
	vlanAllowed := mode == "hostdev" || mode == "passthrough" || (mode == "bridge" && netVP == "openvswitch")
	vlanUsed := n.VLAN != nil && len(n.VLAN.Tags) > 0
	badVLAN := false
	var deflt string
	for i, pg := range n.PortGroups {
		if vlanUsed || (pg.VLAN != nil && len(pg.VLAN.Tags) > 0) {
			if pg.VirtualPort != nil {
				// A portgroup <virtualport> without type inherits the
				// network's (libvirt merges them when a guest connects).
				t := vpType(pg.VirtualPort)
				if t == "" {
					t = netVP
				}
				if mode != "bridge" || t != "openvswitch" {
					badVLAN = true
				}
			} else if !vlanAllowed {
				badVLAN = true
			}
		}
		if pg.Default == "yes" {
			if deflt != "" {
				return Errorf(KindUnsupported, "network '%s' has multiple default <portgroup> elements (%s and %s), but only one default is allowed", n.Name, deflt, pg.Name)
			}
			deflt = pg.Name
		}
		for _, o := range n.PortGroups[i+1:] {
			if o.Name == pg.Name {
				return Errorf(KindUnsupported, "multiple <portgroup> elements with the same name (%s) in network '%s'", pg.Name, n.Name)
			}
		}
	}
	if badVLAN || (vlanUsed && !vlanAllowed && deflt == "") {
		return Errorf(KindUnsupported, "<vlan> element specified for network %s, whose type doesn't support vlan configuration", n.Name)
	}
	return nil
}

// validateIPs checks addresses, one DHCP server per family, DHCP ranges and
// static hosts against their subnet, and the DHCPv6 prefix.
func validateIPs(n *Network) error {
	var dhcp4, dhcp6 bool
	for _, ip := range n.IPs {
		a, err := ParseAddr(ip.Address)
		if err != nil {
			return Errorf(KindXML, "Invalid address '%s' in network '%s'", ip.Address, n.Name)
		}
		if ip.Family != "" && ip.Family != familyOf(a) {
			return Errorf(KindXML, "%s family specified for %s address '%s' in network '%s'", ip.Family, familyOf(a), ip.Address, n.Name)
		}
		pfx, err := IPNet(ip)
		if err != nil {
			return Errorf(KindXML, "invalid <ip> in network '%s': %s", n.Name, strings.TrimPrefix(err.Error(), KindXML.Prefix()))
		}
		if !HasDHCP(ip) {
			continue
		}
		if a.Is4() {
			if dhcp4 {
				return Errorf(KindUnsupported, "Multiple IPv4 dhcp sections found -- dhcp is supported only for a single IPv4 address on each network")
			}
			dhcp4 = true
		} else {
			if dhcp6 {
				return Errorf(KindUnsupported, "Multiple IPv6 dhcp sections found -- dhcp is supported only for a single IPv6 address on each network")
			}
			dhcp6 = true
			if pfx.Bits() != 64 {
				return Errorf(KindUnsupported, "DHCPv6 on %s in network '%s' needs prefix 64, not %d (dnsmasq refuses other prefix lengths)", pfx, n.Name, pfx.Bits())
			}
		}
		netStr := FormatAddr(a) + "/" + itoa(pfx.Bits())
		for _, r := range ip.DHCP.Ranges {
			if err := CheckRange(r.Start, r.End, pfx); err != nil {
				return err
			}
		}
		for _, h := range ip.DHCP.Hosts {
			ha, err := ParseAddr(h.IP)
			if err != nil {
				return Errorf(KindInternal, "Invalid IP address in static host definition for network '%s'", n.Name)
			}
			if ha.Is4() != a.Is4() || !pfx.Masked().Contains(ha) {
				return Errorf(KindInternal, "static DHCP host address %s is not within network %s", FormatAddr(ha), netStr)
			}
		}
	}
	return nil
}

// CheckRange checks a DHCP range against the interface address and prefix of
// its <ip> (e.g. 10.201.0.1/24), as libvirt does when it parses a range, with
// libvirt's messages: "range A - B is not entirely within network X/N",
// "range A - B is reversed " (with the trailing space), the network or
// broadcast address as an end, ranges over 65535 addresses, mixed families.
func CheckRange(start, end string, ipNet netip.Prefix) error {
	s, err1 := ParseAddr(start)
	e, err2 := ParseAddr(end)
	if err1 != nil || err2 != nil {
		return Errorf(KindInternal, "range %s - %s: invalid address", start, end)
	}
	return checkRange(s, e, &ipNet)
}

// checkRange mirrors libvirt's range sanity check; ipNet may be nil (NAT
// address ranges are only checked for size and order).
func checkRange(s, e netip.Addr, ipNet *netip.Prefix) error {
	ss, es := FormatAddr(s), FormatAddr(e)
	if s.Is4() != e.Is4() {
		return Errorf(KindInternal, "mismatch of address family in range %s - %s", ss, es)
	}
	if ipNet != nil {
		a := ipNet.Addr()
		netStr := FormatAddr(a)
		if s.Is4() != a.Is4() {
			return Errorf(KindInternal, "mismatch of address family in range %s - %s for network %s", ss, es, netStr)
		}
		sub := ipNet.Masked()
		if !sub.Contains(s) || !sub.Contains(e) {
			return Errorf(KindInternal, "range %s - %s is not entirely within network %s/%d", ss, es, netStr, ipNet.Bits())
		}
		if s.Is4() {
			if s == sub.Addr() {
				return Errorf(KindInternal, "start of range %s - %s in network %s/%d is the network address", ss, es, netStr, ipNet.Bits())
			}
			if e == lastAddr(sub) {
				return Errorf(KindInternal, "end of range %s - %s in network %s/%d is the broadcast address", ss, es, netStr, ipNet.Bits())
			}
		}
	}
	// libvirt's legacy size limit: only the last two bytes may differ (in the
	// 16-byte form, IPv4 is ::ffff:a.b.c.d).
	sb, eb := s.As16(), e.As16()
	for i := 0; i < 14; i++ {
		if sb[i] != eb[i] {
			return Errorf(KindInternal, "range %s - %s is too large (> 65535)", ss, es)
		}
	}
	if e.Less(s) {
		if s.Is4() {
			return Errorf(KindInternal, "range %s - %s is reversed ", ss, es)
		}
		return Errorf(KindInternal, "range %s - %s start larger than end", ss, es)
	}
	return nil
}

// lastAddr returns the highest address of a prefix (the IPv4 broadcast).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 1 << (7 - j)
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func itoa(i int) string { return strconv.Itoa(i) }

// validateForward checks the forward device pool and NAT settings.
func validateForward(n *Network, mode string) error {
	f := n.Forward
	if f == nil {
		return nil
	}
	kinds := 0
	if len(f.PFs) > 0 {
		kinds++
	}
	if len(f.Interfaces) > 0 {
		kinds++
	}
	if len(f.Addresses) > 0 {
		kinds++
	}
	if kinds > 1 && !(len(f.PFs) > 0 && len(f.Addresses) == 0) {
		return Errorf(KindUnsupported, "<address>, <interface>, and <pf> elements of <forward> in network %s are mutually exclusive", n.Name)
	}
	if len(f.Addresses) > 0 && mode != "hostdev" {
		return Errorf(KindUnsupported, "network '%s' has forward mode '%s' but lists a device by PCI address in the device pool. This is only supported for networks with forward mode 'hostdev'", n.Name, mode)
	}
	if mode == "hostdev" && len(f.Interfaces) > 0 && len(f.PFs) == 0 {
		return Errorf(KindUnsupported, "hostdev network '%s' lists '%s' in the device pool, but hostdev networks require all devices to be listed by PCI address, not network device name", n.Name, f.Interfaces[0].Dev)
	}
	if mode == "open" && len(f.Interfaces) > 0 {
		return Errorf(KindXML, "forward dev not allowed for network '%s' with forward mode='%s'", n.Name, mode)
	}
	seen := map[string]bool{}
	for _, i := range f.Interfaces {
		if i.Dev == "" {
			return Errorf(KindXML, "Missing required dev attribute in <forward> <interface> element of network %s", n.Name)
		}
		if seen[i.Dev] {
			return Errorf(KindXML, "interface '%s' can only be listed once in network %s", i.Dev, n.Name)
		}
		seen[i.Dev] = true
	}
	if f.NAT != nil && mode == "nat" {
		if len(f.NAT.Addresses) > 0 {
			s, err1 := ParseAddr(f.NAT.Addresses[0].Start)
			e, err2 := ParseAddr(f.NAT.Addresses[0].End)
			if err1 != nil || err2 != nil || !s.Is4() || !e.Is4() {
				return Errorf(KindXML, "Bad ipv4 address range '%s' - '%s' in <nat> in <forward> in network '%s'", f.NAT.Addresses[0].Start, f.NAT.Addresses[0].End, n.Name)
			}
			if e.Less(s) {
				return Errorf(KindXML, "NAT address range %s - %s is reversed in network '%s'", FormatAddr(s), FormatAddr(e), n.Name)
			}
		}
		if len(f.NAT.Ports) > 0 {
			p := f.NAT.Ports[0]
			if p.Start > 65535 || p.End > 65535 || (p.End != 0 && p.End < p.Start) {
				return Errorf(KindXML, "invalid NAT port range %d-%d in network '%s'", p.Start, p.End, n.Name)
			}
		}
	}
	return nil
}

// validateText rejects control characters in values that end up in
// dnsmasq's configuration or host files, where a newline would inject
// configuration lines. (libvirt writes them as they are.)
func validateText(n *Network) error {
	check := func(what, v string) error {
		for _, r := range v {
			if r < 0x20 || r == 0x7f {
				return Errorf(KindXML, "invalid control character %q in %s '%s' of network '%s'", r, what, v, n.Name)
			}
		}
		return nil
	}
	type field struct{ what, v string }
	var fs []field
	if n.Domain != nil {
		fs = append(fs, field{"<domain name>", n.Domain.Name})
	}
	if n.DNS != nil {
		for _, f := range n.DNS.Forwarders {
			fs = append(fs, field{"<forwarder domain>", f.Domain})
		}
		for _, t := range n.DNS.TXTs {
			fs = append(fs, field{"<txt name>", t.Name}, field{"<txt value>", t.Value})
		}
		for _, s := range n.DNS.SRVs {
			fs = append(fs, field{"<srv service>", s.Service}, field{"<srv protocol>", s.Protocol}, field{"<srv domain>", s.Domain}, field{"<srv target>", s.Target})
		}
		for _, h := range n.DNS.Host {
			for _, hn := range h.Hostnames {
				fs = append(fs, field{"<hostname>", hn.Hostname})
			}
		}
	}
	for _, ip := range n.IPs {
		if ip.TFTP != nil {
			fs = append(fs, field{"<tftp root>", ip.TFTP.Root})
		}
		if ip.DHCP != nil {
			for _, h := range ip.DHCP.Hosts {
				fs = append(fs, field{"<host name>", h.Name}, field{"<host id>", h.ID})
			}
			for _, b := range ip.DHCP.Bootp {
				fs = append(fs, field{"<bootp file>", b.File})
			}
		}
	}
	if n.DnsmasqOptions != nil {
		for _, o := range n.DnsmasqOptions.Option {
			fs = append(fs, field{"<dnsmasq:option value>", o.Value})
		}
	}
	if n.Bridge != nil {
		fs = append(fs, field{"<bridge zone>", n.Bridge.Zone})
	}
	for _, f := range fs {
		if err := check(f.what, f.v); err != nil {
			return err
		}
	}
	return nil
}

// sameNetwork reports whether two definitions are the same network (same
// uuid, or same name when a uuid is missing).
func sameNetwork(a, b *Network) bool {
	if a.UUID != "" && b.UUID != "" {
		return canonicalUUID(a.UUID) == canonicalUUID(b.UUID)
	}
	return a.Name == b.Name
}

// canonicalUUID is NormalizeUUID for comparisons. Why the shortcut: parsed
// definitions hold canonical UUIDs already, and a define or start compares
// its network with every other one, so normalising each (an allocation)
// made it cost more the more networks there were.
func canonicalUUID(s string) string {
	if len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' && strings.ToLower(s) == s {
		return s
	}
	u, _ := NormalizeUUID(s)
	return u
}

// CheckBridgeConflict reports an error when another network (in others; a
// network with the same uuid is skipped) uses n's bridge name:
// "internal error: bridge name 'vb-e02a' already in use.". Only networks that
// own their bridge are checked, and a "%d" template is not a name yet.
func CheckBridgeConflict(n *Network, others []*Network) error {
	name := n.BridgeName()
	if name == "" || !n.OwnsBridge() || strings.Contains(name, "%d") {
		return nil
	}
	for _, o := range others {
		if o == nil || o == n || sameNetwork(n, o) {
			continue
		}
		if o.BridgeName() == name {
			return Errorf(KindInternal, "bridge name '%s' already in use.", name)
		}
	}
	return nil
}

// CheckSubnetConflict reports an error when an IP subnet of n overlaps one of
// an active network (same uuid skipped): "internal error: Network is already
// in use by interface BRIDGE". Unlike libvirt, which only catches identical
// subnets, any overlap counts (10.203.0.0/16 vs 10.203.5.0/24).
func CheckSubnetConflict(n *Network, active []*Network) error {
	for _, ip := range n.IPs {
		p, err := IPNet(ip)
		if err != nil {
			continue
		}
		p = p.Masked()
		for _, o := range active {
			if o == nil || o == n || sameNetwork(n, o) {
				continue
			}
			for _, oip := range o.IPs {
				q, err := IPNet(oip)
				if err != nil {
					continue
				}
				if p.Overlaps(q.Masked()) {
					return Errorf(KindInternal, "Network is already in use by interface %s", o.BridgeName())
				}
			}
		}
	}
	return nil
}
