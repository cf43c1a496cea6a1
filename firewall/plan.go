// Package firewall computes and installs the packet filter rules of a libvirt
// style virtual network.
//
// It is split in two halves. PlanFor turns a network definition into a Plan:
// a backend-neutral list of rules with the semantics libvirt gives each forward
// mode (nat, route, isolated; open gets none). A Backend installs, removes and
// checks a Plan on the host. The nftables backend keeps every network's rules
// in its own chains of one table per family shared by all networks ("vnet" in
// the ip and ip6 families), reached through verdict maps so that a packet's
// cost does not grow with the number of networks; each change is one atomic
// netlink batch that touches only the network's chains and map elements and
// no table that vnet does not own.
//
// The iptables backend, for hosts where nftables is not usable, keeps
// libvirt's chain layout under vnet's own names (VNET_INP, VNET_OUT,
// VNET_FWX, VNET_FWI, VNET_FWO, VNET_PRT), shared by all networks; every rule
// carries the comment "vnet:<network>", and each change is one
// iptables-restore batch per family holding only the difference.
package firewall

import (
	"net/netip"
	"strings"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// Family is the address family of a rule: it selects the nftables table family
// (ip or ip6) or the iptables binary (iptables or ip6tables).
type Family int

// Address families.
const (
	IPv4 Family = iota
	IPv6
)

// String returns the nftables family name, "ip" or "ip6".
func (f Family) String() string {
	if f == IPv6 {
		return "ip6"
	}
	return "ip"
}

// Chain is an abstract chain of libvirt's layout. Backends map it to their own
// chain names (libvirt: LIBVIRT_INP … / guest_output …; vnet's nftables tables:
// input, output, forward, postrouting).
type Chain int

// Chains, in libvirt's layout.
const (
	// ChainInput filters packets from the bridge to the host (libvirt LIBVIRT_INP).
	ChainInput Chain = iota
	// ChainOutput filters packets from the host to the bridge (LIBVIRT_OUT).
	ChainOutput
	// ChainForwardOut filters forwarded packets leaving the network, from
	// guests to elsewhere (LIBVIRT_FWO, nftables guest_output).
	ChainForwardOut
	// ChainForwardIn filters forwarded packets entering the network (LIBVIRT_FWI,
	// guest_input).
	ChainForwardIn
	// ChainCross filters packets between guests of the same bridge when they
	// are routed through the host (LIBVIRT_FWX, guest_cross).
	ChainCross
	// ChainNAT is the source NAT postrouting chain (LIBVIRT_PRT in the nat
	// table, guest_nat).
	ChainNAT
)

// RuleType says what a rule does; together with the fields of Rule it fully
// determines the rule text of every backend.
type RuleType int

// Rule types. Each one lives in one chain (see Rule.Chain).
const (
	// HostIn accepts Proto/Port from the bridge to the host (DNS, DHCP, TFTP).
	HostIn RuleType = iota
	// HostOut accepts Proto/Port from the host to the bridge.
	HostOut
	// RejectOut rejects everything forwarded from the bridge (catch-all).
	RejectOut
	// RejectIn rejects everything forwarded to the bridge (catch-all).
	RejectIn
	// AllowCross accepts traffic forwarded from the bridge back to it.
	AllowCross
	// AllowOut accepts packets from Subnet on the bridge, leaving via Dev
	// when set.
	AllowOut
	// AllowRelatedIn accepts packets to Subnet on the bridge that belong to a
	// known connection (conntrack related,established), arriving via Dev when
	// set. Used by nat.
	AllowRelatedIn
	// AllowIn accepts every packet to Subnet on the bridge (arriving via Dev
	// when set). Used by route.
	AllowIn
	// Masquerade source-NATs packets from Subnet to outside Subnet (leaving via
	// Dev when set): masquerade, or SNAT to NAT.Addr* when those are set, only
	// for Proto when set, with the NAT.Port* range for tcp and udp.
	Masquerade
	// NoMasquerade exempts packets from Subnet to Dest (local broadcast and
	// multicast) from masquerading (verdict return).
	NoMasquerade
)

// Rule is one firewall rule of a Plan.
type Rule struct {
	Type   RuleType
	Family Family
	// Bridge is the network's bridge, matched by interface index ("iif",
	// "oif") like libvirt does.
	Bridge string
	// Dev is <forward dev>, matched by name ("iifname", "oifname") since it
	// may come and go; "" matches any interface.
	Dev string
	// Subnet is the network of an <ip> element (address masked to its prefix).
	Subnet netip.Prefix
	// Dest is the destination of a NoMasquerade rule.
	Dest netip.Prefix
	// Proto is "tcp", "udp" or "" (any) for HostIn/HostOut/Masquerade.
	Proto string
	// Port is the destination port of HostIn/HostOut.
	Port uint16
	// NAT is the translation of a Masquerade rule.
	NAT NAT
}

// NAT is the source translation of a Masquerade rule.
type NAT struct {
	// AddrStart and AddrEnd are <nat><address start end>: SNAT to this range
	// instead of masquerading. Invalid (zero) Addr means masquerade; AddrEnd
	// is invalid for a single address.
	AddrStart, AddrEnd netip.Addr
	// PortStart and PortEnd are the source port range for tcp/udp (0, 0 = none).
	PortStart, PortEnd uint16
}

// Chain returns the abstract chain the rule belongs to.
func (r Rule) Chain() Chain {
	switch r.Type {
	case HostIn:
		return ChainInput
	case HostOut:
		return ChainOutput
	case RejectOut, AllowOut:
		return ChainForwardOut
	case RejectIn, AllowRelatedIn, AllowIn:
		return ChainForwardIn
	case AllowCross:
		return ChainCross
	default:
		return ChainNAT
	}
}

// Plan is the complete firewall of one network, computed from its XML alone.
type Plan struct {
	// Network is the network name (for messages).
	Network string
	// Bridge is the network's bridge device.
	Bridge string
	// Rules are in libvirt's command order: libvirt inserts each one at the
	// top of its chain, so the live order of a chain is the reverse of the
	// order of its rules here. Backends must reproduce that live order.
	Rules []Rule
	// ChecksumFix asks for libvirt's DHCP checksum fix on the bridge: a tc htb
	// root qdisc 1: (default class 2) and a u32 filter on udp dport 68 with
	// action "csum ip and udp". libvirt's nftables backend installs it for
	// every network that has rules.
	ChecksumFix bool
	// DHCPv4 reports that the network serves DHCPv4 (libvirt's iptables
	// backend adds its CHECKSUM rule only then).
	DHCPv4 bool
}

// Empty reports whether the plan installs nothing (open networks and forward
// modes that do not own their bridge).
func (p *Plan) Empty() bool { return len(p.Rules) == 0 && !p.ChecksumFix }

// Families returns the families that have rules, IPv4 first.
func (p *Plan) Families() []Family {
	var has [2]bool
	for _, r := range p.Rules {
		has[r.Family] = true
	}
	var out []Family
	for _, f := range []Family{IPv4, IPv6} {
		if has[f] {
			out = append(out, f)
		}
	}
	return out
}

// Live returns the rules of one family and chain in the order the kernel
// evaluates them (the reverse of the command order, see Plan.Rules).
func (p *Plan) Live(f Family, c Chain) []Rule {
	var out []Rule
	for i := len(p.Rules) - 1; i >= 0; i-- {
		if r := p.Rules[i]; r.Family == f && r.Chain() == c {
			out = append(out, r)
		}
	}
	return out
}

// Destinations libvirt never masquerades: local broadcast and link-local
// multicast.
var (
	localBroadcast   = netip.MustParsePrefix("255.255.255.255/32")
	localMulticastV4 = netip.MustParsePrefix("224.0.0.0/24")
	localMulticastV6 = netip.MustParsePrefix("ff02::/16")
)

// ipDef is one <ip> element reduced to what the firewall needs.
type ipDef struct {
	family Family
	subnet netip.Prefix
	dhcp   bool // has DHCP ranges or hosts
	tftp   bool
}

// PlanFor computes the firewall plan of a network. It is pure: it only reads n.
// Forward modes that do not own a bridge (bridge, private, vepa, passthrough,
// hostdev) and mode open get an empty plan, as libvirt adds no rules for them.
func PlanFor(n *netxml.Network) (*Plan, error) {
	p := &Plan{Network: n.Name, Bridge: n.BridgeName()}
	mode := n.ForwardMode()
	switch mode {
	case "", "nat", "route":
	case "open", "bridge", "private", "vepa", "passthrough", "hostdev":
		return p, nil
	default:
		return nil, netxml.Errorf(netxml.KindUnsupported, "network '%s': forward mode '%s' is not supported by the firewall", n.Name, mode)
	}
	if p.Bridge == "" {
		return nil, netxml.Errorf(netxml.KindInternal, "network '%s' has no bridge name", n.Name)
	}
	if len(p.Bridge) > 15 {
		return nil, netxml.Errorf(netxml.KindInternal, "network '%s': bridge name '%s' is longer than 15 characters", n.Name, p.Bridge)
	}

	ips := make([]ipDef, 0, len(n.IPs))
	for i := range n.IPs {
		d, err := parseIP(p.Bridge, &n.IPs[i])
		if err != nil {
			return nil, err
		}
		ips = append(ips, d)
	}

	dev := ""
	natV6 := false
	var nat NAT
	if f := n.Forward; f != nil {
		dev = f.Dev
		if dev == "" && len(f.Interfaces) > 0 {
			dev = f.Interfaces[0].Dev
		}
		if f.NAT != nil && mode == "nat" {
			natV6 = f.NAT.IPv6 == "yes"
			if len(f.NAT.Addresses) > 0 {
				a := f.NAT.Addresses[0]
				var err error
				if nat.AddrStart, err = netip.ParseAddr(a.Start); err != nil {
					return nil, netxml.Errorf(netxml.KindXML, "network '%s': bad NAT address start '%s'", n.Name, a.Start)
				}
				if a.End != "" {
					if nat.AddrEnd, err = netip.ParseAddr(a.End); err != nil {
						return nil, netxml.Errorf(netxml.KindXML, "network '%s': bad NAT address end '%s'", n.Name, a.End)
					}
				}
			}
			if len(f.NAT.Ports) > 0 {
				pr := f.NAT.Ports[0]
				if pr.Start > 65535 || pr.End > 65535 {
					return nil, netxml.Errorf(netxml.KindInternal, "Invalid port range '%d-%d'.", pr.Start, pr.End)
				}
				nat.PortStart, nat.PortEnd = uint16(pr.Start), uint16(pr.End)
			}
		}
	}

	p.ChecksumFix = true
	br := p.Bridge
	add := func(r Rule) {
		r.Bridge = br
		p.Rules = append(p.Rules, r)
	}

	// General IPv4 rules, always present. The host rules come from the first
	// IPv4 <ip> with DHCP or TFTP (libvirt supports DHCP on one IPv4 only).
	var dhcp4 *ipDef
	for i := range ips {
		if ips[i].family == IPv4 && (ips[i].dhcp || ips[i].tftp) {
			dhcp4 = &ips[i]
			break
		}
	}
	for _, h := range []struct {
		t     RuleType
		proto string
		port  uint16
	}{
		{HostIn, "tcp", 67}, {HostIn, "udp", 67}, {HostOut, "tcp", 68}, {HostOut, "udp", 68},
		{HostIn, "tcp", 53}, {HostIn, "udp", 53}, {HostOut, "tcp", 53}, {HostOut, "udp", 53},
	} {
		add(Rule{Type: h.t, Family: IPv4, Proto: h.proto, Port: h.port})
	}
	if dhcp4 != nil && dhcp4.tftp {
		add(Rule{Type: HostIn, Family: IPv4, Proto: "udp", Port: 69})
		add(Rule{Type: HostOut, Family: IPv4, Proto: "udp", Port: 69})
	}
	add(Rule{Type: RejectOut, Family: IPv4})
	add(Rule{Type: RejectIn, Family: IPv4})
	add(Rule{Type: AllowCross, Family: IPv4})

	// General IPv6 rules: when the network has an IPv6 address, or
	// <network ipv6='yes'> (guest-to-guest IPv6 without a host address).
	hasV6 := false
	for _, d := range ips {
		if d.family == IPv6 {
			hasV6 = true
		}
		if d.family == IPv4 && d.dhcp {
			p.DHCPv4 = true
		}
	}
	if hasV6 || n.IPv6 == "yes" {
		add(Rule{Type: RejectOut, Family: IPv6})
		add(Rule{Type: RejectIn, Family: IPv6})
		add(Rule{Type: AllowCross, Family: IPv6})
		if hasV6 {
			for _, h := range []struct {
				t     RuleType
				proto string
				port  uint16
			}{
				{HostIn, "tcp", 53}, {HostIn, "udp", 53}, {HostOut, "tcp", 53}, {HostOut, "udp", 53},
				{HostIn, "udp", 547}, {HostOut, "udp", 546},
			} {
				add(Rule{Type: h.t, Family: IPv6, Proto: h.proto, Port: h.port})
			}
		}
	}

	// Per-address rules, in document order. IPv6 has no NAT unless
	// <nat ipv6='yes'>: a nat network routes its IPv6 subnets.
	for _, d := range ips {
		switch {
		case mode == "nat" && (d.family == IPv4 || natV6):
			if err := addMasquerade(add, d, dev, nat); err != nil {
				return nil, err
			}
		case mode == "nat" || mode == "route":
			add(Rule{Type: AllowOut, Family: d.family, Subnet: d.subnet, Dev: dev})
			add(Rule{Type: AllowIn, Family: d.family, Subnet: d.subnet, Dev: dev})
		}
	}
	return p, nil
}

// addMasquerade adds libvirt's seven NAT rules of one subnet. In command order:
// forward out, related in, then the masquerade rules in reverse of their live
// order (plain, udp, tcp, exemptions).
func addMasquerade(add func(Rule), d ipDef, dev string, nat NAT) error {
	f := d.family
	add(Rule{Type: AllowOut, Family: f, Subnet: d.subnet, Dev: dev})
	add(Rule{Type: AllowRelatedIn, Family: f, Subnet: d.subnet, Dev: dev})

	// The <address> range applies to its own family only; an IPv6 subnet
	// with an IPv4 range is masqueraded.
	var base NAT
	if nat.AddrStart.IsValid() && nat.AddrStart.Is4() == (f == IPv4) {
		base.AddrStart = nat.AddrStart
		if nat.AddrEnd.IsValid() && nat.AddrEnd.Is4() == (f == IPv4) {
			base.AddrEnd = nat.AddrEnd
		}
	}
	ported := base
	ported.PortStart, ported.PortEnd = nat.PortStart, nat.PortEnd
	if ported.PortStart == 0 && ported.PortEnd == 0 {
		ported.PortStart, ported.PortEnd = 1024, 65535
	}
	if ported.PortStart >= ported.PortEnd {
		return netxml.Errorf(netxml.KindInternal, "Invalid port range '%d-%d'.", ported.PortStart, ported.PortEnd)
	}
	add(Rule{Type: Masquerade, Family: f, Subnet: d.subnet, Dev: dev, NAT: base})
	add(Rule{Type: Masquerade, Family: f, Subnet: d.subnet, Dev: dev, Proto: "udp", NAT: ported})
	add(Rule{Type: Masquerade, Family: f, Subnet: d.subnet, Dev: dev, Proto: "tcp", NAT: ported})
	if f == IPv4 {
		add(Rule{Type: NoMasquerade, Family: f, Subnet: d.subnet, Dev: dev, Dest: localBroadcast})
		add(Rule{Type: NoMasquerade, Family: f, Subnet: d.subnet, Dev: dev, Dest: localMulticastV4})
	} else {
		add(Rule{Type: NoMasquerade, Family: f, Subnet: d.subnet, Dev: dev, Dest: localMulticastV6})
	}
	return nil
}

// parseIP reduces an <ip> element to its family, subnet and services.
func parseIP(bridge string, ip *libvirtxml.NetworkIP) (ipDef, error) {
	var d ipDef
	addr, err := netip.ParseAddr(ip.Address)
	if err != nil {
		return d, netxml.Errorf(netxml.KindXML, "invalid IP address '%s' on bridge '%s'", ip.Address, bridge)
	}
	addr = addr.Unmap()
	switch strings.ToLower(ip.Family) {
	case "", "ipv4", "ipv6":
	default:
		return d, netxml.Errorf(netxml.KindUnsupported, "unsupported IP address family '%s'", ip.Family)
	}
	if addr.Is6() {
		d.family = IPv6
	}
	bits, err := netxml.PrefixLen(addr, ip.Prefix, ip.Netmask)
	if err != nil {
		return d, netxml.Errorf(netxml.KindInternal, "Invalid prefix or netmask for '%s'", bridge)
	}
	d.subnet = netip.PrefixFrom(addr, bits).Masked()
	if ip.DHCP != nil && (len(ip.DHCP.Ranges) > 0 || len(ip.DHCP.Hosts) > 0) {
		d.dhcp = true
	}
	d.tftp = ip.TFTP != nil && ip.TFTP.Root != ""
	return d, nil
}
