package firewall

import (
	"regexp"
	"strconv"
)

// nftWord matches the strings nft's parser reads unquoted.
var nftWord = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_./-]*$`)

// nftString returns s as an nft string: unchanged when it is a plain word,
// else in double quotes.
func nftString(s string) string {
	if s == "" || nftWord.MatchString(s) {
		return s
	}
	return `"` + s + `"`
}

// nftRuleArgs returns the body of an nft rule (matches, counter, verdict) as
// nft arguments, in the order libvirt writes them; ruleExprs builds the same
// rule's expressions. Interface names are quoted for nft where its parser
// would not take them as a plain word.
func nftRuleArgs(r Rule) []string {
	fam := r.Family.String()
	var a []string
	r.Bridge, r.Dev = nftString(r.Bridge), nftString(r.Dev)
	switch r.Type {
	case HostIn:
		a = append(a, "iif", r.Bridge, r.Proto, "dport", strconv.Itoa(int(r.Port)), "counter", "accept")
	case HostOut:
		a = append(a, "oif", r.Bridge, r.Proto, "dport", strconv.Itoa(int(r.Port)), "counter", "accept")
	case RejectOut:
		a = append(a, "iif", r.Bridge, "counter", "reject")
	case RejectIn:
		a = append(a, "oif", r.Bridge, "counter", "reject")
	case AllowCross:
		a = append(a, "iif", r.Bridge, "oif", r.Bridge, "counter", "accept")
	case AllowOut:
		a = append(a, fam, "saddr", r.Subnet.String(), "iif", r.Bridge)
		if r.Dev != "" {
			a = append(a, "oifname", r.Dev)
		}
		a = append(a, "counter", "accept")
	case AllowRelatedIn:
		if r.Dev != "" {
			a = append(a, "iifname", r.Dev)
		}
		a = append(a, "oif", r.Bridge, fam, "daddr", r.Subnet.String(),
			"ct", "state", "related,established", "counter", "accept")
	case AllowIn:
		a = append(a, fam, "daddr", r.Subnet.String())
		if r.Dev != "" {
			a = append(a, "iifname", r.Dev)
		}
		a = append(a, "oif", r.Bridge, "counter", "accept")
	case Masquerade:
		if r.Proto != "" {
			a = append(a, "meta", "l4proto", r.Proto)
		}
		a = append(a, fam, "saddr", r.Subnet.String(), fam, "daddr", "!=", r.Subnet.String())
		if r.Dev != "" {
			a = append(a, "oifname", r.Dev)
		}
		ports := ""
		if r.NAT.PortStart != 0 || r.NAT.PortEnd != 0 {
			ports = ":" + strconv.Itoa(int(r.NAT.PortStart)) + "-" + strconv.Itoa(int(r.NAT.PortEnd))
		}
		if r.NAT.AddrStart.IsValid() {
			to := r.NAT.AddrStart.String()
			if r.NAT.AddrEnd.IsValid() {
				to += "-" + r.NAT.AddrEnd.String()
			}
			a = append(a, "counter", "snat", "to", to+ports)
		} else {
			a = append(a, "counter", "masquerade")
			if ports != "" {
				a = append(a, "to", ports)
			}
		}
	case NoMasquerade:
		if r.Dev != "" {
			a = append(a, "oifname", r.Dev)
		}
		a = append(a, fam, "saddr", r.Subnet.String(), fam, "daddr", r.Dest.String(), "counter", "return")
	}
	return a
}

// Names of the chains in vnet's own nftables tables, one base chain per hook.
const (
	nftChainInput       = "input"
	nftChainOutput      = "output"
	nftChainForward     = "forward"
	nftChainPostrouting = "postrouting"
)

// nftChainSpec is one base chain of a vnet table: its hook and the abstract
// chains it holds, concatenated in this order.
type nftChainSpec struct {
	name     string
	typ      string // "filter" or "nat"
	hook     string
	priority int
	holds    []Chain
}

// nftChains is the layout of a vnet table. The forward chain holds libvirt's
// three forward chains in the order libvirt's forward chain jumps to them
// (cross, input, output); none of them returns, so concatenating them is the
// same as jumping. The input and output chains only accept, which in
// nftables does not override a drop in another table: they document intent
// (and mirror the iptables layout) but change no verdict, which is why
// libvirt's nftables backend leaves them out.
var nftChains = []nftChainSpec{
	{nftChainInput, "filter", "input", 0, []Chain{ChainInput}},
	{nftChainOutput, "filter", "output", 0, []Chain{ChainOutput}},
	{nftChainForward, "filter", "forward", 0, []Chain{ChainCross, ChainForwardIn, ChainForwardOut}},
	{nftChainPostrouting, "nat", "postrouting", 100, []Chain{ChainNAT}},
}

// chainRules returns the live rules of one base chain of a family's table.
func (p *Plan) chainRules(f Family, c nftChainSpec) []Rule {
	var out []Rule
	for _, ac := range c.holds {
		out = append(out, p.Live(f, ac)...)
	}
	return out
}
