package firewall

import (
	"strconv"
	"strings"
)

// nftRuleArgs returns the body of an nft rule (matches, counter, verdict) as
// nft command-line arguments, in the order libvirt writes them.
func nftRuleArgs(r Rule) []string {
	fam := r.Family.String()
	var a []string
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

// libvirtChain names the abstract chains as libvirt's nftables backend does.
var libvirtChain = map[Chain]string{
	ChainForwardOut: "guest_output",
	ChainForwardIn:  "guest_input",
	ChainCross:      "guest_cross",
	ChainNAT:        "guest_nat",
}

// tcChecksumArgs returns libvirt's three tc commands of the DHCP checksum fix:
// show the qdisc, add the htb root qdisc, add the u32 csum filter.
func tcChecksumArgs(bridge string) [][]string {
	return [][]string{
		{"tc", "qdisc", "show", "dev", bridge, "handle", "1:"},
		{"tc", "qdisc", "add", "dev", bridge, "root", "handle", "1:", "htb", "default", "2"},
		{"tc", "filter", "add", "dev", bridge, "prio", "2", "protocol", "ip", "parent", "1:",
			"u32", "match", "ip", "dport", "68", "ffff", "action", "csum", "ip", "and", "udp"},
	}
}

// renderLibvirtNft renders the plan exactly as libvirt's nftables backend
// logs the commands adding a network's rules (libvirt's test format, see
// formatCommand): the tc checksum commands, then one "nft -ae insert rule"
// per rule into table libvirt_network, in command order. HostIn/HostOut rules
// are left out because libvirt's nftables backend has no input/output chains:
// its own table has policy accept, so accepting there changes nothing.
func renderLibvirtNft(p *Plan) string {
	var b strings.Builder
	if p.ChecksumFix {
		for _, c := range tcChecksumArgs(p.Bridge) {
			b.WriteString(formatCommand(c, true))
		}
	}
	for _, r := range p.Rules {
		chain, ok := libvirtChain[r.Chain()]
		if !ok {
			continue
		}
		args := append([]string{"nft", "-ae", "insert", "rule", r.Family.String(), "libvirt_network", chain}, nftRuleArgs(r)...)
		b.WriteString(formatCommand(args, true))
	}
	return b.String()
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

// RenderNft renders the plan as the commands it amounts to with the nftables
// backend, one per line, for a dry run: the tc checksum fix, then per family
// the batch that replaces the network's table (add, delete and re-create the
// table so an existing one is replaced; Apply sends all nft lines as one atomic
// batch), its base chains and their rules in live order. An empty plan renders
// as "".
func RenderNft(p *Plan) string {
	var b strings.Builder
	if p.ChecksumFix {
		for _, c := range tcChecksumArgs(p.Bridge)[1:] {
			b.WriteString(formatCommand(c, false))
		}
	}
	table := p.TableName()
	for _, f := range p.Families() {
		fam := f.String()
		b.WriteString(formatCommand([]string{"nft", "add", "table", fam, table}, false))
		b.WriteString(formatCommand([]string{"nft", "delete", "table", fam, table}, false))
		b.WriteString(formatCommand([]string{"nft", "add", "table", fam, table}, false))
		for _, c := range nftChains {
			rules := p.chainRules(f, c)
			if len(rules) == 0 {
				continue
			}
			spec := "{ type " + c.typ + " hook " + c.hook + " priority " + strconv.Itoa(c.priority) + "; policy accept; }"
			b.WriteString(formatCommand([]string{"nft", "add", "chain", fam, table, c.name, spec}, false))
			for _, r := range rules {
				b.WriteString(formatCommand(append([]string{"nft", "add", "rule", fam, table, c.name}, nftRuleArgs(r)...), false))
			}
		}
	}
	return b.String()
}

// formatCommand writes argv (program first) the way libvirt's test harness
// logs a command: arguments shell-quoted when needed and, with breaks, each
// on its own line behind " \" except an option's value, which stays on the
// option's line. Without breaks the command is one line. The result ends in
// a newline.
func formatCommand(argv []string, breaks bool) string {
	var b strings.Builder
	b.WriteString(argv[0])
	args := argv[1:]
	seenOpt := false
	for i, a := range args {
		b.WriteByte(' ')
		if breaks {
			join := false
			if !isOpt(a) && seenOpt {
				if i > 0 && isOpt(args[i-1]) {
					join = true
				}
				for _, later := range args[i+1:] {
					if isOpt(later) {
						join = true
						break
					}
				}
			}
			if !join {
				b.WriteString("\\\n")
			}
		}
		if isOpt(a) {
			seenOpt = true
		}
		b.WriteString(shellQuote(a))
	}
	b.WriteByte('\n')
	return b.String()
}

func isOpt(s string) bool { return strings.HasPrefix(s, "-") }

// shellQuote returns s, single-quoted when it is empty or holds a character a
// shell would interpret.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, "\r\t\n !\"#$&'()*;<>?[\\]^`{|}~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
