package doctor

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The firewall rules of the host, whatever wrote them (nft, iptables-nft,
// iptables-legacy), are read into this one model and evaluated against the
// packets a network's guests really send. Evaluation is pure.

// Hook is a netfilter hook the checks care about.
type Hook int

// Hooks a guest's packets pass.
const (
	HookInput Hook = iota
	HookForward
	HookPostrouting
)

// String returns nft's name of the hook.
func (h Hook) String() string {
	return [...]string{"input", "forward", "postrouting"}[h]
}

// Verdict is what a rule or chain decides.
type Verdict int

// Verdicts. VerdictNone is a rule that decides nothing (a counter, a log).
const (
	VerdictNone Verdict = iota
	VerdictAccept
	VerdictDrop
	VerdictJump
	VerdictGoto
	VerdictReturn
)

// Source says which tool's tables a Table is.
type Source int

// Sources of rulesets.
const (
	// SourceNFT is an nftables table (including iptables-nft's).
	SourceNFT Source = iota
	// SourceLegacy is a legacy (x_tables) iptables table.
	SourceLegacy
)

// Table is one firewall table.
type Table struct {
	Source Source
	// Family is nft's family name: "ip", "ip6", "inet" (legacy: "ip", "ip6").
	Family string
	Name   string
	Chains map[string]*Chain
}

// Chain is a chain of a table; base chains have a hook.
type Chain struct {
	Name     string
	Base     bool
	Hook     Hook
	Priority int
	// Type is the base chain type: "filter", "nat", "route".
	Type string
	// Policy is the base chain's policy (VerdictAccept or VerdictDrop).
	Policy Verdict
	Rules  []Rule
}

// Rule is one rule: every condition must hold for its verdict to apply.
type Rule struct {
	// Handle is nft's rule handle (0 for legacy rules).
	Handle uint64
	// Text describes the rule (iptables-save's line for legacy rules).
	Text string
	// Match evaluates the rule's conditions. known is false when the rule
	// has something the model cannot evaluate: such a rule never matches,
	// so the doctor never blames a rule it does not understand.
	Match   func(p *Packet) (match, known bool)
	Verdict Verdict
	// Target is the chain of a jump or goto.
	Target string
}

// Packet is one packet a guest's traffic consists of.
type Packet struct {
	Hook Hook
	// What names the traffic in messages ("DHCP (udp 67)").
	What string
	// Kind groups packets of one purpose ("dhcp", "dns", "forward", …).
	Kind             string
	IIf, OIf         string
	IIfIndex         int
	OIfIndex         int
	Src, Dst         netip.Addr
	Proto            uint8
	SPort, DPort     uint16
	CtState          uint32
	networkHeaderBuf []byte
}

// Conntrack states as nftables' ct state bits.
const (
	CtInvalid     = 1
	CtEstablished = 2
	CtRelated     = 4
	CtNew         = 8
	CtUntracked   = 64
)

// IP protocol numbers.
const (
	protoTCP    = 6
	protoUDP    = 17
	protoICMP   = 1
	protoICMPv6 = 58
)

func (p *Packet) v6() bool { return p.Src.Is6() && !p.Src.Is4In6() }

// networkHeader synthesises the packet's IP header.
func (p *Packet) networkHeader() []byte {
	if p.networkHeaderBuf != nil {
		return p.networkHeaderBuf
	}
	if p.v6() {
		h := make([]byte, 40)
		h[0] = 0x60
		h[6] = p.Proto
		h[7] = 64
		s, d := p.Src.As16(), p.Dst.As16()
		copy(h[8:], s[:])
		copy(h[24:], d[:])
		p.networkHeaderBuf = h
		return h
	}
	h := make([]byte, 20)
	h[0] = 0x45
	h[8] = 64
	h[9] = p.Proto
	s, d := p.Src.As4(), p.Dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	p.networkHeaderBuf = h
	return h
}

// transportHeader synthesises the packet's TCP/UDP header.
func (p *Packet) transportHeader() []byte {
	switch p.Proto {
	case protoUDP:
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], p.SPort)
		binary.BigEndian.PutUint16(h[2:], p.DPort)
		return h
	case protoTCP:
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], p.SPort)
		binary.BigEndian.PutUint16(h[2:], p.DPort)
		h[12] = 0x50
		if p.CtState&CtNew != 0 {
			h[13] = 0x02 // SYN
		} else {
			h[13] = 0x10 // ACK
		}
		return h
	}
	return nil
}

// Drop is a base chain that drops a packet.
type Drop struct {
	Table *Table
	// Chain is the base chain on the hook.
	Chain *Chain
	// In is the chain holding the dropping rule (Chain itself, or one
	// reached by jump); nil when Chain's policy drops.
	In   *Chain
	Rule *Rule
}

// Drops returns every base chain of the tables on the packet's hook (and
// family) that drops it.
func Drops(tables []*Table, p *Packet) []Drop {
	var out []Drop
	for _, t := range tables {
		if !familyApplies(t.Family, p) {
			continue
		}
		for _, c := range sortedChains(t) {
			if !c.Base || c.Hook != p.Hook {
				continue
			}
			// nat chains only see a connection's first packet.
			if c.Type == "nat" && p.CtState&CtNew == 0 {
				continue
			}
			v, in, r := evalChain(t, c, p, 0)
			if v == VerdictReturn || v == VerdictNone {
				v = c.Policy
				in, r = nil, nil
			}
			if v == VerdictDrop {
				out = append(out, Drop{Table: t, Chain: c, In: in, Rule: r})
			}
		}
	}
	return out
}

func familyApplies(fam string, p *Packet) bool {
	switch fam {
	case "inet":
		return true
	case "ip":
		return !p.v6()
	case "ip6":
		return p.v6()
	}
	return false
}

// maxDepth bounds jumps (the kernel allows 16).
const maxDepth = 16

// evalChain runs the packet through c: accept or drop (with the chain and
// rule that decided), or return/none when it fell off the end.
func evalChain(t *Table, c *Chain, p *Packet, depth int) (Verdict, *Chain, *Rule) {
	if depth > maxDepth {
		return VerdictNone, nil, nil
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.Match == nil {
			continue
		}
		m, known := r.Match(p)
		if !known || !m {
			continue
		}
		switch r.Verdict {
		case VerdictAccept, VerdictDrop:
			return r.Verdict, c, r
		case VerdictReturn:
			return VerdictReturn, c, r
		case VerdictJump, VerdictGoto:
			sub := t.Chains[r.Target]
			if sub == nil {
				continue
			}
			v, in, rr := evalChain(t, sub, p, depth+1)
			if v == VerdictAccept || v == VerdictDrop {
				return v, in, rr
			}
			if r.Verdict == VerdictGoto {
				return VerdictReturn, in, rr
			}
		}
	}
	return VerdictNone, nil, nil
}

// sortedChains returns the base chains by priority, then name.
func sortedChains(t *Table) []*Chain {
	cs := make([]*Chain, 0, len(t.Chains))
	for _, c := range t.Chains {
		cs = append(cs, c)
	}
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && less(cs[j], cs[j-1]); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	return cs
}

func less(a, b *Chain) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	return a.Name < b.Name
}

// IsDocker reports whether the table carries Docker's chains.
func (t *Table) IsDocker() bool {
	return t.Chains["DOCKER-USER"] != nil || t.Chains["DOCKER"] != nil || t.Chains["DOCKER-FORWARD"] != nil
}

// IsXtables reports whether the table is iptables' (legacy, or iptables-nft's
// tables with their upper-case built-in chains), so fixes use iptables.
func (t *Table) IsXtables() bool {
	if t.Source == SourceLegacy {
		return true
	}
	if t.Family != "ip" && t.Family != "ip6" {
		return false
	}
	for _, name := range []string{"INPUT", "FORWARD", "OUTPUT", "POSTROUTING", "PREROUTING"} {
		if c := t.Chains[name]; c != nil && c.Base {
			return true
		}
	}
	return false
}

// Describe names the table for people: "nftables table inet filter".
func (t *Table) Describe() string {
	switch {
	case t.Source == SourceLegacy:
		return fmt.Sprintf("legacy %s table %s", iptablesCmd(t), t.Name)
	case t.IsXtables():
		return fmt.Sprintf("iptables-nft table %s %s", t.Family, t.Name)
	}
	return fmt.Sprintf("nftables table %s %s", t.Family, t.Name)
}

// iptablesCmd is the command that edits the table.
func iptablesCmd(t *Table) string {
	cmd := "iptables"
	if t.Family == "ip6" {
		cmd = "ip6tables"
	}
	if t.Source == SourceLegacy {
		cmd += "-legacy"
	}
	return cmd
}
