package firewall

import (
	"strconv"
	"strings"
)

// libvirtIptChain names the abstract chains as libvirt's iptables backend
// does, with their table.
var libvirtIptChain = map[Chain][2]string{
	ChainInput:      {"filter", "LIBVIRT_INP"},
	ChainOutput:     {"filter", "LIBVIRT_OUT"},
	ChainForwardOut: {"filter", "LIBVIRT_FWO"},
	ChainForwardIn:  {"filter", "LIBVIRT_FWI"},
	ChainCross:      {"filter", "LIBVIRT_FWX"},
	ChainNAT:        {"nat", "LIBVIRT_PRT"},
}

// iptRuleArgs returns the match and target arguments of a rule in the order
// libvirt's iptables backend writes them.
func iptRuleArgs(r Rule) []string {
	var a []string
	devIn := func() {
		if r.Dev != "" {
			a = append(a, "--in-interface", r.Dev)
		}
	}
	devOut := func() {
		if r.Dev != "" {
			a = append(a, "--out-interface", r.Dev)
		}
	}
	switch r.Type {
	case HostIn:
		a = append(a, "--in-interface", r.Bridge, "--protocol", r.Proto, "--destination-port", strconv.Itoa(int(r.Port)), "--jump", "ACCEPT")
	case HostOut:
		a = append(a, "--out-interface", r.Bridge, "--protocol", r.Proto, "--destination-port", strconv.Itoa(int(r.Port)), "--jump", "ACCEPT")
	case RejectOut:
		a = append(a, "--in-interface", r.Bridge, "--jump", "REJECT")
	case RejectIn:
		a = append(a, "--out-interface", r.Bridge, "--jump", "REJECT")
	case AllowCross:
		a = append(a, "--in-interface", r.Bridge, "--out-interface", r.Bridge, "--jump", "ACCEPT")
	case AllowOut:
		a = append(a, "--source", r.Subnet.String(), "--in-interface", r.Bridge)
		devOut()
		a = append(a, "--jump", "ACCEPT")
	case AllowRelatedIn:
		a = append(a, "--destination", r.Subnet.String())
		devIn()
		a = append(a, "--out-interface", r.Bridge, "--match", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "--jump", "ACCEPT")
	case AllowIn:
		a = append(a, "--destination", r.Subnet.String())
		devIn()
		a = append(a, "--out-interface", r.Bridge, "--jump", "ACCEPT")
	case Masquerade:
		a = append(a, "--source", r.Subnet.String())
		if r.Proto != "" {
			a = append(a, "-p", r.Proto)
		}
		a = append(a, "!", "--destination", r.Subnet.String())
		devOut()
		ports := ""
		if r.NAT.PortStart != 0 || r.NAT.PortEnd != 0 {
			ports = strconv.Itoa(int(r.NAT.PortStart)) + "-" + strconv.Itoa(int(r.NAT.PortEnd))
		}
		if r.NAT.AddrStart.IsValid() {
			to := r.NAT.AddrStart.String()
			if r.NAT.AddrEnd.IsValid() {
				to += "-" + r.NAT.AddrEnd.String()
			}
			if ports != "" {
				to += ":" + ports
			}
			a = append(a, "--jump", "SNAT", "--to-source", to)
		} else {
			a = append(a, "--jump", "MASQUERADE")
			if ports != "" {
				a = append(a, "--to-ports", ports)
			}
		}
	case NoMasquerade:
		devOut()
		a = append(a, "--source", r.Subnet.String(), "--destination", r.Dest.String(), "--jump", "RETURN")
	}
	return a
}

// renderLibvirtIptables renders the plan exactly as libvirt's iptables
// backend logs the commands adding a network's rules: one "--insert" per rule
// in command order, then the mangle CHECKSUM rule when the network serves
// DHCPv4. It documents the plan's iptables semantics until vnet has an
// iptables backend.
func renderLibvirtIptables(p *Plan) string {
	var b strings.Builder
	for _, r := range p.Rules {
		prog := "iptables"
		if r.Family == IPv6 {
			prog = "ip6tables"
		}
		tc := libvirtIptChain[r.Chain()]
		args := append([]string{prog, "-w", "--table", tc[0], "--insert", tc[1]}, iptRuleArgs(r)...)
		b.WriteString(formatCommand(args, true))
	}
	if p.DHCPv4 {
		b.WriteString(formatCommand([]string{"iptables", "-w", "--table", "mangle", "--insert", "LIBVIRT_PRT",
			"--out-interface", p.Bridge, "--protocol", "udp", "--destination-port", "68",
			"--jump", "CHECKSUM", "--checksum-fill"}, true))
	}
	return b.String()
}
