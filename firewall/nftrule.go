package firewall

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
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

// The nftables layout. The networks share nftBuckets tables per family,
// "vnet_<h>" (ip, and ip6 when some network has IPv6 rules), a network's
// bucket h given by nftTable, so that the kernel's hooks hold a bounded
// number of base chains however many networks run: a packet costs at most
// one map look-up per bucket table and hook instead of one chain per
// network (with a table per network, 1000 networks made every forwarded
// packet run 1000 chains, and the kernel refuses more than 1024 base chains
// per hook). Why several tables rather than one: each commit that adds a
// jump makes the kernel validate every chain reachable from the base chains
// of the table (nft_chain_validate, per table), which grew a network start
// linearly with the number of networks; a bucket holds a 16th of them. Each
// bucket table is the whole layout below, created with its first network
// and deleted with its last.
//
//	chain forward     (filter, hook forward, priority 0):  iifname vmap @bridges; oifname vmap @bridges
//	chain postrouting (nat, hook postrouting, priority 100): ip saddr vmap @subnets
//	map bridges: bridge name -> jump fwd-<bridge>
//	map subnets: subnet (interval) -> jump nat-<bridge>
//
// A network's rules live in its regular chains fwd-<bridge> and
// nat-<bridge>, in today's order. This dispatch is exact because of two
// properties of the plans (TestNftDispatchCovers checks them for every
// forward mode and rule type):
//
//   - every forward rule matches the bridge as its input (iif) or output
//     (oif) interface: RejectOut, AllowOut and AllowCross by iif, RejectIn,
//     AllowIn, AllowRelatedIn and AllowCross by oif; a <forward dev> is only
//     an extra condition. So a packet runs the chain of every network it
//     enters or leaves (both for one between two networks), and no rule of
//     any other network could have matched it.
//   - every NAT rule (Masquerade, NoMasquerade, of either family) matches
//     its Subnet as source address. So the network that owns the packet's
//     source subnet is the only one whose NAT rules could match it.
//
// The maps are keyed by interface name, so a re-created bridge needs no
// element change. Subnets of networks must not overlap (an interval map
// cannot hold overlapping keys); starting such a network fails.
//
// Why "return" for accept: in a table per network, an accept ends only that
// network's chain and the other networks' chains still run (a reject in any
// of them is final). Behind one base chain an accept would be final for all
// of them, and a guest of network A could open connections into network B,
// whose reject no longer runs. Written as return, a network's verdict is
// "no objection" and the base chain goes on to the other network's chain
// (oifname) and ends with its policy accept: the same verdicts as before.
//
// The input and output hooks have no chains: those rules only accept, which
// in nftables does not override a drop in another table, so they would
// change no verdict (which is why libvirt's nftables backend leaves them out
// too). The iptables backend keeps them, where they do matter.
const (
	nftTablePrefix = "vnet_" // + the bucket's hex digit, see nftTable
	nftBuckets     = 16
	nftOldShared   = "vnet"  // the single shared table of the previous layout
	nftLegacy      = "vnet-" // the tables of one network each, of earlier versions
	nftForward     = "forward"
	nftPostrouting = "postrouting"
	nftFwdMap      = "bridges" // not "fwd" nor "nat": keywords of nft's parser
	nftNatMap      = "subnets"
	nftFwdPrefix   = "fwd-"
	nftNatPrefix   = "nat-"
)

// nftTable is the name of the bucket table holding the network on bridge:
// "vnet_" and one hex digit, the FNV-1a 32 hash of the bridge name mod
// nftBuckets. It depends on the name only, so every operation (converge,
// dry run, verify, removal, prune) finds the network in the same table.
func nftTable(bridge string) string {
	h := fnv.New32a()
	h.Write([]byte(bridge))
	return fmt.Sprintf("%s%x", nftTablePrefix, h.Sum32()%nftBuckets)
}

// isBucketTable reports whether name is one of the bucket tables.
func isBucketTable(name string) bool {
	h, ok := strings.CutPrefix(name, nftTablePrefix)
	return ok && len(h) == 1 && strings.Contains("0123456789abcdef", h)
}

// nftFwdChain is the name of a network's forward chain in the shared table.
func nftFwdChain(bridge string) string { return nftFwdPrefix + bridge }

// nftNatChain is the name of a network's NAT chain in the shared table.
func nftNatChain(bridge string) string { return nftNatPrefix + bridge }

// legacyTable is the name of the network's own table of earlier versions,
// which a converge and a removal delete.
func legacyTable(bridge string) string { return nftLegacy + bridge }

// forwardRules returns the rules of the network's forward chain in live
// order: libvirt's three forward chains in the order its forward chain
// jumps to them (cross, input, output). None of them returns, so
// concatenating them is the same as jumping.
func (p *Plan) forwardRules(f Family) []Rule {
	var out []Rule
	for _, c := range []Chain{ChainCross, ChainForwardIn, ChainForwardOut} {
		out = append(out, p.Live(f, c)...)
	}
	return out
}

// natRules returns the rules of the network's NAT chain in live order.
func (p *Plan) natRules(f Family) []Rule { return p.Live(f, ChainNAT) }

// natSubnets returns the distinct source subnets of the network's NAT rules:
// the keys of its elements in the map subnets.
func (p *Plan) natSubnets(f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range p.natRules(f) {
		if !slices.Contains(out, r.Subnet) {
			out = append(out, r.Subnet)
		}
	}
	return out
}

// nftWants reports whether the network has chains in the family's table.
func nftWants(p *Plan, f Family) bool {
	return len(p.forwardRules(f)) > 0 || len(p.natRules(f)) > 0
}

// chainRuleArgs is nftRuleArgs with accept written as return (see above).
func chainRuleArgs(r Rule) []string {
	a := nftRuleArgs(r)
	if a[len(a)-1] == "accept" {
		a[len(a)-1] = "return"
	}
	return a
}

// chainRuleExprs is ruleExprs with accept written as return (see above).
func chainRuleExprs(r Rule, bridge uint32) []expr.Any {
	e := ruleExprs(r, bridge)
	if v, ok := e[len(e)-1].(*expr.Verdict); ok && v.Kind == expr.VerdictAccept {
		e[len(e)-1] = &expr.Verdict{Kind: expr.VerdictReturn}
	}
	return e
}
