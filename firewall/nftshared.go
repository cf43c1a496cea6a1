package firewall

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The shared table (see the layout in nftrule.go): what it holds, read from
// the kernel once per ruleset generation, and the steps that converge it.

// nftShared is the backend's knowledge of the shared tables (the bucket
// tables and the old single table nftOldShared): valid while the kernel's
// ruleset generation is gen. A converge updates it with what it wrote when
// its batch was the only change (the generation moved by one), so that
// starting N networks one after the other reads the tables once rather
// than N times; any other change makes the next operation read again.
type nftShared struct {
	valid bool
	gen   uint32
	fam   [2]map[string]*nftFamState // by Family, then table name
}

// tab returns the state of one family's table name, empty when the table
// does not exist (then recorded, so that a converge's update sticks).
func (sh *nftShared) tab(f Family, name string) *nftFamState {
	if sh.fam[f] == nil {
		sh.fam[f] = map[string]*nftFamState{}
	}
	st := sh.fam[f][name]
	if st == nil {
		st = emptyFamState()
		sh.fam[f][name] = st
	}
	return st
}

// names returns the family's tables with a state, sorted.
func (sh *nftShared) names(f Family) []string {
	var out []string
	for name, st := range sh.fam[f] {
		if st.table != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// nftFamState is what the shared table of one family holds.
type nftFamState struct {
	// table is the live table; nil when there is none.
	table *nftables.Table
	// chains are the names of the table's chains.
	chains map[string]bool
	// broken lists the parts of the shared layout (base chains, dispatch
	// rules, maps) that are missing or differ; empty when it is complete.
	broken []string
	// fwd is the map bridges: interface name to the chain it jumps to.
	fwd map[string]string
	// nat is the map subnets, as intervals.
	nat []natElem
}

// natElem is one interval of the map subnets: [start, end) jumps to chain.
// end is nil for an interval up to the last address (it has no end
// element).
type natElem struct {
	start, end []byte
	chain      string
}

// emptyFamState is the state of a family without a shared table.
func emptyFamState() *nftFamState {
	return &nftFamState{chains: map[string]bool{}, fwd: map[string]string{}}
}

// natOf returns the elements of the map subnets jumping to chain.
func (st *nftFamState) natOf(chain string) []natElem {
	var out []natElem
	for _, e := range st.nat {
		if e.chain == chain {
			out = append(out, e)
		}
	}
	return out
}

// bridges returns the bridges that have a part in the table, sorted.
func (st *nftFamState) bridges() []string {
	seen := map[string]bool{}
	var out []string
	add := func(br string) {
		if !seen[br] {
			seen[br] = true
			out = append(out, br)
		}
	}
	for name := range st.chains {
		for _, pfx := range []string{nftFwdPrefix, nftNatPrefix} {
			if br, ok := strings.CutPrefix(name, pfx); ok {
				add(br)
			}
		}
	}
	for k := range st.fwd {
		add(k)
	}
	for _, e := range st.nat {
		if br, ok := strings.CutPrefix(e.chain, nftNatPrefix); ok {
			add(br)
		}
	}
	slices.Sort(out)
	return out
}

// othersThan reports whether a network other than bridge has a part in the
// table (a chain or an element): the table goes with the last one.
func (st *nftFamState) othersThan(bridge string) bool {
	for name := range st.chains {
		for _, pfx := range []string{nftFwdPrefix, nftNatPrefix} {
			if br, ok := strings.CutPrefix(name, pfx); ok && br != bridge {
				return true
			}
		}
	}
	for k := range st.fwd {
		if k != bridge {
			return true
		}
	}
	for _, e := range st.nat {
		if e.chain != nftNatChain(bridge) {
			return true
		}
	}
	return false
}

// shared returns the shared tables' state at generation gen (known), reading
// it when the cached one is of another generation: every bucket table and
// the old shared table, each once. Callers hold b.mu.
func (b *nftBackend) shared(c *nftables.Conn, gen uint32, known bool) (*nftShared, error) {
	// A state of a later generation than asked for serves too: a check
	// pass asks at the generation it read when it began, and our own
	// commits (a destroy, a start) keep the cache current in between;
	// reading every table again for each network of such a pass made each
	// destroy during it cost as much as a read of all networks.
	if known && b.sh.valid && int32(b.sh.gen-gen) >= 0 {
		return &b.sh, nil
	}
	sh := nftShared{valid: known, gen: gen}
	tables, err := c.ListTables()
	if err != nil {
		b.sh.valid = false
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, f := range []Family{IPv4, IPv6} {
		var chains []*nftables.Chain
		for _, t := range tables {
			if t.Family != nftFamily[f] || !isBucketTable(t.Name) && t.Name != nftOldShared {
				continue
			}
			if chains == nil {
				if chains, err = c.ListChainsOfTableFamily(nftFamily[f]); err != nil {
					b.sh.valid = false
					return nil, fmt.Errorf("list %s chains: %w", f, err)
				}
			}
			st, err := readTable(c, f, t, chains)
			if err != nil {
				b.sh.valid = false
				return nil, err
			}
			if sh.fam[f] == nil {
				sh.fam[f] = map[string]*nftFamState{}
			}
			sh.fam[f][t.Name] = st
		}
	}
	b.sh = sh
	return &b.sh, nil
}

// readTable reads one shared table t of family f: its chains' names (from
// the family's chains), the base chains with their dispatch rules, and both
// maps with their elements.
func readTable(c *nftables.Conn, f Family, t *nftables.Table, chains []*nftables.Chain) (*nftFamState, error) {
	st := emptyFamState()
	tableID := tableText(f, t.Name)
	st.table = t
	base := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == t.Name {
			st.chains[ch.Name] = true
			base[ch.Name] = ch
		}
	}
	for _, spec := range nftBaseChains(f) {
		chainID := tableID + " chain " + spec.name
		ch := base[spec.name]
		switch {
		case ch == nil:
			st.broken = append(st.broken, chainID)
			continue
		case !sameChain(ch, spec.chain(t)):
			st.broken = append(st.broken, chainID+" (hook, type, priority or policy differ)")
			continue
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s: %w", chainID, err)
		}
		if !sameDispatch(rules, spec.rules) {
			st.broken = append(st.broken, chainID+" rules: "+strings.Join(spec.rules, "; "))
		}
	}
	for _, m := range []*nftables.Set{fwdMap(t), natMap(t, f)} {
		mapID := tableID + " map " + m.Name
		s, err := c.GetSetByName(t, m.Name)
		if notFound(err) {
			st.broken = append(st.broken, mapID)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", mapID, err)
		}
		// Why not the key type: google/nftables v0.3.0 decodes it wrongly
		// (as "verdict"); a map of another key type fails the next converge.
		if !s.IsMap || s.Interval != m.Interval {
			st.broken = append(st.broken, mapID+" (type or flags differ)")
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of %s: %w", mapID, err)
		}
		if m.Name == nftFwdMap {
			for _, e := range elems {
				st.fwd[string(bytes.TrimRight(e.Key, "\x00"))] = elemJump(e.Val)
			}
		} else {
			st.nat = natIntervals(elems)
		}
	}
	return st, nil
}

// elemJump returns the chain of a "jump" verdict element's data (the
// nested NFTA_DATA_VERDICT attributes); "" for any other verdict.
func elemJump(val []byte) string {
	ad, err := mnl.NewAttributeDecoder(val)
	if err != nil {
		return ""
	}
	ad.ByteOrder = binary.BigEndian
	jump, chain := false, ""
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			jump = int32(ad.Uint32()) == unix.NFT_JUMP
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	if !jump {
		return ""
	}
	return chain
}

// natIntervals pairs the elements of an interval map into intervals: each
// start element (with its verdict) runs to the next end element. End
// elements without a start before them (nft's leading 0.0.0.0 one) are
// skipped.
func natIntervals(elems []nftables.SetElement) []natElem {
	slices.SortFunc(elems, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		// An interval ending where the next begins: end first.
		switch {
		case a.IntervalEnd == b.IntervalEnd:
			return 0
		case a.IntervalEnd:
			return -1
		}
		return 1
	})
	var out []natElem
	var open *natElem
	for _, e := range elems {
		if e.IntervalEnd {
			if open != nil {
				open.end = e.Key
				out = append(out, *open)
				open = nil
			}
			continue
		}
		if open != nil {
			out = append(out, *open)
		}
		open = &natElem{start: e.Key, chain: elemJump(e.Val)}
	}
	if open != nil {
		out = append(out, *open)
	}
	return out
}

// prefixInterval is the [start, end) interval of a prefix; end is nil when
// the prefix reaches the last address.
func prefixInterval(p netip.Prefix) (start, end []byte) {
	p = p.Masked()
	start = p.Addr().AsSlice()
	last := slices.Clone(start)
	for i := p.Bits(); i < len(last)*8; i++ {
		last[i/8] |= 0x80 >> (i % 8)
	}
	end = slices.Clone(last)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return start, end
		}
	}
	return start, nil
}

// natElements are the set elements of one interval.
func (e natElem) elements() []nftables.SetElement {
	out := []nftables.SetElement{{Key: e.start, VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: e.chain}}}
	if e.end != nil {
		out = append(out, nftables.SetElement{Key: e.end, IntervalEnd: true})
	}
	return out
}

func (e natElem) equal(o natElem) bool {
	return bytes.Equal(e.start, o.start) && bytes.Equal(e.end, o.end) && e.chain == o.chain
}

// text is the interval as nft writes it: the prefix, or start-end when it
// is not one (an element someone else added).
func (e natElem) text() string {
	a, _ := netip.AddrFromSlice(e.start)
	for bits := 0; bits <= a.BitLen(); bits++ {
		p := netip.PrefixFrom(a, bits)
		if s, end := prefixInterval(p); p.Masked() == p && bytes.Equal(s, e.start) && bytes.Equal(end, e.end) {
			return p.String()
		}
	}
	if e.end == nil {
		return a.String() + "-" + netip.IPv6Unspecified().String()
	}
	z, _ := netip.AddrFromSlice(e.end)
	return a.String() + "-" + z.Prev().String()
}

// nftBase is one base chain of the shared table: its hook and its dispatch
// rules (expressions and nft text).
type nftBase struct {
	name     string
	typ      string // "filter" or "nat"
	hook     string
	priority int
	exprs    [][]expr.Any
	rules    []string
}

// chain returns the base chain object in table t.
func (s nftBase) chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	ch := &nftables.Chain{
		Name:     s.name,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(s.priority)),
		Policy:   &accept,
	}
	if s.typ == "nat" {
		ch.Type, ch.Hooknum = nftables.ChainTypeNAT, nftables.ChainHookPostrouting
	}
	return ch
}

// nftBaseChains are the base chains of the family's shared table. forward
// looks up the input interface, then the output interface (see "return" in
// nftrule.go); postrouting the source address.
func nftBaseChains(f Family) []nftBase {
	off, size := uint32(12), uint32(4)
	if f == IPv6 {
		off, size = 8, 16
	}
	vmap := func(set string) *expr.Lookup {
		return &expr.Lookup{SourceRegister: 1, SetName: set, IsDestRegSet: true, DestRegister: 0}
	}
	return []nftBase{
		{name: nftForward, typ: "filter", hook: "forward", priority: 0,
			exprs: [][]expr.Any{
				{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, vmap(nftFwdMap)},
				{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, vmap(nftFwdMap)},
			},
			rules: []string{"iifname vmap @" + nftFwdMap, "oifname vmap @" + nftFwdMap}},
		{name: nftPostrouting, typ: "nat", hook: "postrouting", priority: 100,
			exprs: [][]expr.Any{{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
				vmap(nftNatMap),
			}},
			rules: []string{f.String() + " saddr vmap @" + nftNatMap}},
	}
}

// sameDispatch reports whether a base chain's live rules are exactly its
// dispatch rules. Look-ups compare by set name (the kernel reports its own
// set id).
func sameDispatch(got []*nftables.Rule, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	var spec *nftBase
	for _, f := range []Family{IPv4, IPv6} {
		for _, b := range nftBaseChains(f) {
			if slices.Equal(b.rules, want) {
				spec = &b
			}
		}
	}
	if spec == nil {
		return false
	}
	for i, r := range got {
		w := spec.exprs[i]
		if len(r.Exprs) != len(w) {
			return false
		}
		for j, e := range r.Exprs {
			if l, ok := e.(*expr.Lookup); ok {
				wl, ok := w[j].(*expr.Lookup)
				if !ok || l.SetName != wl.SetName || l.SourceRegister != wl.SourceRegister ||
					l.IsDestRegSet != wl.IsDestRegSet || l.DestRegister != wl.DestRegister || l.Invert {
					return false
				}
				continue
			}
			if !sameExpr(e, w[j]) {
				return false
			}
		}
	}
	return true
}

// fwdMap is the map bridges of table t. Its key byte order (user data for the
// nft tool) is host order, as nft gives its string types: without it nft
// lists every name as "".
func fwdMap(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: nftFwdMap, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict,
		KeyByteOrder: binaryutil.NativeEndian}
}

// natMap is the map subnets of table t.
func natMap(t *nftables.Table, f Family) *nftables.Set {
	key := nftables.TypeIPAddr
	if f == IPv6 {
		key = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: t, Name: nftNatMap, IsMap: true, Interval: true, KeyType: key, DataType: nftables.TypeVerdict}
}

// mapDecl is the nft text declaring a map.
func mapDecl(m *nftables.Set) string {
	key := "ifname"
	switch m.KeyType.GetNFTMagic() {
	case nftables.TypeIPAddr.GetNFTMagic():
		key = "ipv4_addr"
	case nftables.TypeIP6Addr.GetNFTMagic():
		key = "ipv6_addr"
	}
	flags := ""
	if m.Interval {
		flags = " flags interval;"
	}
	return "{ type " + key + " : verdict;" + flags + " }"
}

// ifnameKey is an interface name as a key of type ifname.
func ifnameKey(name string) []byte {
	k := make([]byte, unix.IFNAMSIZ)
	copy(k, name)
	return k
}
