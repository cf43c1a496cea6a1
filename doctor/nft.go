package doctor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"vnet/firewall"
)

// ReadNFT reads every ip, ip6 and inet table of the calling thread's network
// namespace (iptables-nft's included) into the model, leaving out vnet's own
// tables (the bucket tables "vnet_<h>", the shared table "vnet" and
// "vnet-…" of earlier versions and of overlays): their rules are vnet's to verify and repair.
func ReadNFT() ([]*Table, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("nftables: list tables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	var out []*Table
	for _, nt := range tables {
		fam := familyName(nt.Family)
		if fam == "" || firewall.IsVnetTable(nt.Name) {
			continue
		}
		t := &Table{Source: SourceNFT, Family: fam, Name: nt.Name, Chains: map[string]*Chain{}}
		sets := &setCache{conn: c, table: nt}
		for _, nc := range chains {
			if nc.Table.Name != nt.Name || nc.Table.Family != nt.Family {
				continue
			}
			ch := &Chain{Name: nc.Name, Type: string(nc.Type), Policy: VerdictAccept}
			if nc.Hooknum != nil {
				h, ok := hookOf(*nc.Hooknum)
				if !ok {
					continue // a hook no guest packet we check passes
				}
				ch.Base, ch.Hook = true, h
				if nc.Priority != nil {
					ch.Priority = int(*nc.Priority)
				}
				if nc.Policy != nil && *nc.Policy == nftables.ChainPolicyDrop {
					ch.Policy = VerdictDrop
				}
			}
			rules, err := c.GetRules(nt, nc)
			if err != nil {
				return nil, fmt.Errorf("nftables: table %s %s chain %s: list rules: %w", fam, nt.Name, nc.Name, err)
			}
			for _, r := range rules {
				ch.Rules = append(ch.Rules, compileNFT(r.Handle, r.Exprs, sets))
			}
			t.Chains[ch.Name] = ch
		}
		out = append(out, t)
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return ""
}

func hookOf(h nftables.ChainHook) (Hook, bool) {
	switch uint32(h) {
	case unix.NF_INET_LOCAL_IN:
		return HookInput, true
	case unix.NF_INET_FORWARD:
		return HookForward, true
	case unix.NF_INET_POST_ROUTING:
		return HookPostrouting, true
	}
	return 0, false
}

// setCache loads a table's sets (anonymous ones too) on first use.
type setCache struct {
	conn   *nftables.Conn
	table  *nftables.Table
	loaded bool
	sets   map[string]*set
}

// set is a set's elements: exact keys, or intervals [from, to).
type set struct {
	interval bool
	keys     [][]byte
	ranges   [][2][]byte // inclusive ranges (pipapo key..keyEnd)
	isMap    bool
}

func (sc *setCache) get(name string) *set {
	if sc == nil {
		return nil
	}
	if !sc.loaded {
		sc.loaded = true
		sc.sets = map[string]*set{}
		all, err := sc.conn.GetSets(sc.table)
		if err != nil {
			return nil
		}
		for _, s := range all {
			els, err := sc.conn.GetSetElements(s)
			if err != nil {
				continue
			}
			sc.sets[s.Name] = newSet(s.Interval, s.IsMap, els)
		}
	}
	return sc.sets[name]
}

// newSet builds the lookup structure of a set's elements. An interval set
// lists each interval as its start and an IntervalEnd element at the first
// key after it.
func newSet(interval, isMap bool, els []nftables.SetElement) *set {
	s := &set{interval: interval, isMap: isMap}
	if !interval {
		for _, e := range els {
			if e.KeyEnd != nil {
				s.ranges = append(s.ranges, [2][]byte{e.Key, e.KeyEnd})
				continue
			}
			s.keys = append(s.keys, e.Key)
		}
		return s
	}
	sorted := append([]nftables.SetElement(nil), els...)
	sort.Slice(sorted, func(i, j int) bool {
		if c := bytes.Compare(sorted[i].Key, sorted[j].Key); c != 0 {
			return c < 0
		}
		return sorted[i].IntervalEnd && !sorted[j].IntervalEnd
	})
	for i, e := range sorted {
		if e.IntervalEnd {
			continue
		}
		if e.KeyEnd != nil {
			s.ranges = append(s.ranges, [2][]byte{e.Key, e.KeyEnd})
			continue
		}
		end := bytes.Repeat([]byte{0xff}, len(e.Key))
		if i+1 < len(sorted) && sorted[i+1].IntervalEnd {
			end = decrement(sorted[i+1].Key)
		}
		s.ranges = append(s.ranges, [2][]byte{e.Key, end})
	}
	return s
}

// decrement returns b-1 as a big-endian number.
func decrement(b []byte) []byte {
	out := append([]byte(nil), b...)
	for i := len(out) - 1; i >= 0; i-- {
		if out[i] > 0 {
			out[i]--
			return out
		}
		out[i] = 0xff
	}
	return out
}

func (s *set) contains(key []byte) bool {
	for _, k := range s.keys {
		if bytes.Equal(k, key) {
			return true
		}
	}
	for _, r := range s.ranges {
		if bytes.Compare(key, r[0]) >= 0 && bytes.Compare(key, r[1]) <= 0 {
			return true
		}
	}
	return false
}

func (s *set) keyLen() int {
	if len(s.keys) > 0 {
		return len(s.keys[0])
	}
	if len(s.ranges) > 0 {
		return len(s.ranges[0][0])
	}
	return 0
}

// regs is nftables' register file: the verdict register (0) is not data;
// registers 1–4 are 16 bytes each and alias the 4-byte registers 8–23.
type regs struct {
	b     [80]byte
	known [80]bool
}

func regOff(r uint32) (int, bool) {
	switch {
	case r >= 1 && r <= 4:
		return int(r) * 16, true
	case r >= 8 && r <= 23:
		return 16 + int(r-8)*4, true
	}
	return 0, false
}

func (rg *regs) store(r uint32, v []byte) bool {
	off, ok := regOff(r)
	if !ok || v == nil || off+len(v) > len(rg.b) {
		return false
	}
	copy(rg.b[off:], v)
	for i := range v {
		rg.known[off+i] = true
	}
	return true
}

func (rg *regs) load(r uint32, n int) ([]byte, bool) {
	off, ok := regOff(r)
	if !ok || off+n > len(rg.b) {
		return nil, false
	}
	for i := 0; i < n; i++ {
		if !rg.known[off+i] {
			return nil, false
		}
	}
	return rg.b[off : off+n], true
}

// compileNFT turns a rule's expressions into a Rule: its verdict is decided
// by its last verdict-like statement, its match interprets the loads and
// comparisons against the packet.
func compileNFT(handle uint64, exprs []expr.Any, sets *setCache) Rule {
	r := Rule{Handle: handle, Text: fmt.Sprintf("rule handle %d", handle)}
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				r.Verdict = VerdictAccept
			case expr.VerdictDrop:
				r.Verdict = VerdictDrop
			case expr.VerdictJump:
				r.Verdict, r.Target = VerdictJump, e.Chain
			case expr.VerdictGoto:
				r.Verdict, r.Target = VerdictGoto, e.Chain
			case expr.VerdictReturn:
				r.Verdict = VerdictReturn
			}
		case *expr.Reject:
			r.Verdict = VerdictDrop
		case *expr.Masq, *expr.NAT, *expr.Redir:
			r.Verdict = VerdictAccept
		case *expr.Target:
			switch e.Name {
			case "REJECT", "DROP":
				r.Verdict = VerdictDrop
			case "MASQUERADE", "SNAT", "DNAT", "ACCEPT":
				r.Verdict = VerdictAccept
			}
		}
	}
	r.Match = func(p *Packet) (bool, bool) { return interpret(exprs, p, sets) }
	return r
}

// interpret runs the rule's expressions: false at the first comparison that
// fails; known=false at the first expression the model cannot evaluate.
func interpret(exprs []expr.Any, p *Packet, sets *setCache) (match, known bool) {
	var rg regs
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				continue // meta … set: a statement
			}
			if !rg.store(e.Register, metaValue(e.Key, p)) {
				return false, false
			}
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad {
				continue
			}
			var hdr []byte
			switch e.Base {
			case expr.PayloadBaseNetworkHeader:
				hdr = p.networkHeader()
			case expr.PayloadBaseTransportHeader:
				hdr = p.transportHeader()
			}
			end := int(e.Offset + e.Len)
			if hdr == nil || end > len(hdr) {
				return false, false
			}
			rg.store(e.DestRegister, hdr[e.Offset:end])
		case *expr.Ct:
			if e.SourceRegister {
				continue
			}
			var v []byte
			switch e.Key {
			case expr.CtKeySTATE:
				v = binary.NativeEndian.AppendUint32(nil, p.CtState)
			case expr.CtKeyDIRECTION:
				v = []byte{0}
			}
			if !rg.store(e.Register, v) {
				return false, false
			}
		case *expr.Immediate:
			if !rg.store(e.Register, e.Data) {
				return false, false
			}
		case *expr.Bitwise:
			v, ok := rg.load(e.SourceRegister, int(e.Len))
			if !ok || len(e.Mask) < int(e.Len) || len(e.Xor) < int(e.Len) {
				return false, false
			}
			out := make([]byte, e.Len)
			for i := range out {
				out[i] = v[i]&e.Mask[i] ^ e.Xor[i]
			}
			rg.store(e.DestRegister, out)
		case *expr.Cmp:
			v, ok := rg.load(e.Register, len(e.Data))
			if !ok {
				return false, false
			}
			if !cmpOp(e.Op, bytes.Compare(v, e.Data)) {
				return false, true
			}
		case *expr.Range:
			v, ok := rg.load(e.Register, len(e.FromData))
			if !ok {
				return false, false
			}
			in := bytes.Compare(v, e.FromData) >= 0 && bytes.Compare(v, e.ToData) <= 0
			if in != (e.Op == expr.CmpOpEq) {
				return false, true
			}
		case *expr.Lookup:
			if e.IsDestRegSet {
				return false, false // a map: the verdict depends on the element
			}
			s := sets.get(e.SetName)
			if s == nil {
				return false, false
			}
			v, ok := rg.load(e.SourceRegister, s.keyLen())
			if !ok {
				return false, false
			}
			if s.contains(v) == e.Invert {
				return false, true
			}
		case *expr.Match:
			m, ok := xtMatch(e, p)
			if !ok {
				return false, false
			}
			if !m {
				return false, true
			}
		case *expr.Target:
			switch e.Name {
			case "REJECT", "DROP", "MASQUERADE", "SNAT", "DNAT", "ACCEPT",
				"LOG", "MARK", "CONNMARK", "TCPMSS", "CHECKSUM", "NFLOG":
			default:
				return false, false
			}
		case *expr.Verdict, *expr.Counter, *expr.Log, *expr.Limit, *expr.Quota,
			*expr.Notrack, *expr.Dynset, *expr.Objref, *expr.Reject, *expr.Masq,
			*expr.NAT, *expr.Redir:
			// statements; a limit or quota is taken as not yet reached
		default:
			return false, false
		}
	}
	return true, true
}

func cmpOp(op expr.CmpOp, c int) bool {
	switch op {
	case expr.CmpOpEq:
		return c == 0
	case expr.CmpOpNeq:
		return c != 0
	case expr.CmpOpLt:
		return c < 0
	case expr.CmpOpLte:
		return c <= 0
	case expr.CmpOpGt:
		return c > 0
	case expr.CmpOpGte:
		return c >= 0
	}
	return false
}

// metaValue is the packet's value of a meta key (nil: unknown).
func metaValue(k expr.MetaKey, p *Packet) []byte {
	ifname := func(s string) []byte {
		b := make([]byte, 16)
		copy(b, s)
		return b
	}
	switch k {
	case expr.MetaKeyIIFNAME:
		if p.IIf == "" {
			return nil
		}
		return ifname(p.IIf)
	case expr.MetaKeyOIFNAME:
		if p.OIf == "" {
			return nil
		}
		return ifname(p.OIf)
	case expr.MetaKeyIIF:
		if p.IIfIndex == 0 {
			return nil
		}
		return binary.NativeEndian.AppendUint32(nil, uint32(p.IIfIndex))
	case expr.MetaKeyOIF:
		if p.OIfIndex == 0 {
			return nil
		}
		return binary.NativeEndian.AppendUint32(nil, uint32(p.OIfIndex))
	case expr.MetaKeyL4PROTO:
		return []byte{p.Proto}
	case expr.MetaKeyNFPROTO:
		if p.v6() {
			return []byte{unix.NFPROTO_IPV6}
		}
		return []byte{unix.NFPROTO_IPV4}
	case expr.MetaKeyPROTOCOL:
		if p.v6() {
			return []byte{0x86, 0xdd}
		}
		return []byte{0x08, 0x00}
	case expr.MetaKeyMARK:
		return make([]byte, 4)
	case expr.MetaKeyIIFTYPE, expr.MetaKeyOIFTYPE:
		return binary.NativeEndian.AppendUint16(nil, unix.ARPHRD_ETHER)
	case expr.MetaKeySKUID, expr.MetaKeySKGID:
		return nil
	}
	return nil
}

// xtMatch evaluates an iptables-nft compat match (ok=false: not modelled).
func xtMatch(m *expr.Match, p *Packet) (match, ok bool) {
	switch info := m.Info.(type) {
	case *xt.Comment:
		return true, true
	case *xt.Udp:
		if p.Proto != protoUDP {
			return false, true
		}
		return portsMatch(p, info.SrcPorts, info.DstPorts, info.InvFlags&xt.UdpInvSrcPorts != 0, info.InvFlags&xt.UdpInvDestPorts != 0), true
	case *xt.Tcp:
		if p.Proto != protoTCP {
			return false, true
		}
		if info.FlagsMask != 0 || info.Option != 0 {
			return false, false
		}
		return portsMatch(p, info.SrcPorts, info.DstPorts, info.InvFlags&xt.TcpInvSrcPorts != 0, info.InvFlags&xt.TcpInvDestPorts != 0), true
	case *xt.ConntrackMtinfo1:
		return ctMatch(info.MatchFlags, info.InvertFlags, uint16(info.StateMask), p)
	case *xt.ConntrackMtinfo2:
		return ctMatch(info.MatchFlags, info.InvertFlags, info.StateMask, p)
	case *xt.ConntrackMtinfo3:
		return ctMatch(info.MatchFlags, info.InvertFlags, info.StateMask, p)
	case *xt.Unknown:
		if m.Name == "state" && len(*info) >= 4 {
			mask := binary.NativeEndian.Uint32((*info)[:4])
			return xtStateBits(p.CtState)&mask != 0, true
		}
	}
	return false, false
}

func portsMatch(p *Packet, src, dst [2]uint16, invSrc, invDst bool) bool {
	in := func(v uint16, r [2]uint16) bool { return v >= r[0] && v <= r[1] }
	return in(p.SPort, src) != invSrc && in(p.DPort, dst) != invDst
}

func ctMatch(flags, inv uint16, mask uint16, p *Packet) (bool, bool) {
	const state = uint16(xt.ConntrackState | xt.ConntrackStateAlias)
	if flags&^state != 0 {
		return false, false
	}
	m := uint32(mask)&xtStateBits(p.CtState) != 0
	return m != (inv&uint16(xt.ConntrackState) != 0), true
}

// xtStateBits maps nft's ct state bits to xt's: they are the same bits
// (NF_CT_STATE_BIT, XT_STATE_BIT: 1 << (ctinfo+1), invalid 1, untracked 64).
func xtStateBits(s uint32) uint32 { return s }
