package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nftBackend is the nftables backend on google/nftables. The networks share
// one table per family, "vnet" (ip, and ip6 when a network has IPv6 rules),
// whose base chains dispatch each packet to the chains of its networks by
// verdict maps (see the layout in nftrule.go).
//
// Where the kernel supports it (owner and persist flags, kernel ≥ 6.9), the
// tables are owned: created with NFT_TABLE_F_OWNER|NFT_TABLE_F_PERSIST over
// one lasting netlink socket (owner), so that no other process can change or
// delete them and a foreign `nft flush ruleset` skips them. When that socket
// closes (the daemon exits or restarts) the tables stay, orphaned, and keep
// filtering; the next backend adopts them without touching their contents.
// Elsewhere the tables are plain, as before.
type nftBackend struct {
	log   *slog.Logger
	netns int
	// owner is the socket owning the tables; nil when the kernel cannot
	// own tables (then every write uses a short-lived connection).
	owner *nftOwner
	// mu serialises operations: they are short, and one at a time keeps the
	// netlink traffic of concurrent callers from interleaving.
	mu sync.Mutex
	// noCsum is set once the kernel refused the tc csum action; the checksum
	// fix is then skipped (and not verified) instead of failing every start.
	noCsum bool
	// clean remembers, per bridge, the ruleset generation at which
	// the network's part of the tables was found as planned: while the kernel's
	// generation (bumped by every change of any table) is the same, they
	// are still as planned and need not be read again. This keeps the
	// periodic check of many networks cheap.
	clean map[string]cleanMark
	// genConn asks for the generation (opened on first use).
	genConn *mnl.Conn
	// rt is the rtnetlink handle of link look-ups and tc (opened on
	// first use, used under mu): one socket for the daemon's life rather
	// than one per network and check.
	rt *netlink.Handle
	// sh is the shared tables' state (see nftShared).
	sh nftShared
}

// cleanMark is what a verification found clean: the generation read before
// it, the bridge's index (rules match it) and the plan's rules.
type cleanMark struct {
	gen     uint32
	ifindex uint32
	plan    uint64 // hash of the rules: a thousand networks' texts add up
}

// planSeed seeds planHash (marks live in memory only).
var planSeed = maphash.MakeSeed()

// planHash identifies a plan's rules. Rules are comparable values, hashed
// as such (printing them for a hash cost more than the rest of a check).
func planHash(p *Plan) uint64 {
	var h maphash.Hash
	h.SetSeed(planSeed)
	for _, r := range p.Rules {
		maphash.WriteComparable(&h, r)
	}
	return h.Sum64()
}

// generation returns the kernel's nftables ruleset generation.
func (b *nftBackend) generation() (uint32, error) {
	if b.genConn == nil {
		c, err := mnl.Dial(unix.NETLINK_NETFILTER, &mnl.Config{NetNS: b.netns})
		if err != nil {
			return 0, fmt.Errorf("open netfilter netlink socket: %w", err)
		}
		b.genConn = c
	}
	msgs, err := b.genConn.Execute(mnl.Message{
		Header: mnl.Header{Type: mnl.HeaderType(nftMsgGetGen), Flags: mnl.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		b.genConn.Close()
		b.genConn = nil
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := mnl.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("get nftables generation: no generation in the reply")
}

// newNftBackend returns the nftables backend, with owned tables when the
// kernel supports them, after adopting the tables an earlier run orphaned.
func newNftBackend(o Options) *nftBackend {
	b := &nftBackend{log: o.Logger, netns: o.NetNS, noCsum: !csumActionAvailable()}
	if b.noCsum {
		b.log.Info("kernel has no tc csum action: the DHCP checksum fix is skipped")
	}
	owner, err := probeOwner(o.NetNS)
	if err != nil {
		b.log.Info("nftables tables are not owned: the kernel cannot own tables (needs kernel 6.9)", "err", err)
		return b
	}
	b.owner = owner
	b.log.Debug("nftables tables are owned", "portid", owner.portid)
	b.adoptOrphans()
	return b
}

// Close closes the socket that owns the tables (if any). The tables stay,
// orphaned, until another backend adopts or deletes them. The daemon never
// needs it: its exit closes the socket.
func (b *nftBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.genConn != nil {
		b.genConn.Close()
		b.genConn = nil
	}
	if b.rt != nil {
		b.rt.Close()
		b.rt = nil
	}
	if b.owner == nil {
		return nil
	}
	return b.owner.Close()
}

// write sends one batch built by build: over the owner socket (NEWTABLE with
// the owner flags, DELTABLE as DESTROYTABLE) when tables are owned, else over
// a short-lived connection. Callers hold b.mu.
func (b *nftBackend) write(build func(c *nftables.Conn)) error {
	if b.owner != nil {
		return b.owner.batch(build)
	}
	c, err := b.conn()
	if err != nil {
		return err
	}
	build(c)
	return c.Flush()
}

// delTable adds to c the deletion of t that is no error when t is absent.
func delTable(c *nftables.Conn, t *nftables.Table, owned bool) {
	if !owned {
		// Add-then-delete. (With owned tables DELTABLE goes as
		// DESTROYTABLE, and the add would be refused on a table that
		// is neither ours nor orphaned.)
		c.AddTable(t)
	}
	c.DelTable(t)
}

// adoptOrphans takes ownership of vnet's tables (the shared ones and those
// of earlier versions, see isVnetTable) whose owner (an earlier run) is
// gone, in one batch: NEWTABLE with the owner flag on an orphaned table
// changes its owner and nothing else (no flap, counters kept).
func (b *nftBackend) adoptOrphans() {
	c, err := b.conn()
	if err != nil {
		b.log.Warn("adopting orphaned nftables tables", "err", err)
		return
	}
	tables, err := c.ListTables()
	if err != nil {
		b.log.Warn("adopting orphaned nftables tables: list tables", "err", err)
		return
	}
	var orphans []*nftables.Table
	var names []string
	for _, t := range tables {
		if isVnetTable(t) && liveFlags(t)&nftOwnedFlags == nftTableFPersist {
			orphans = append(orphans, t)
			names = append(names, nftTableID(t))
		}
	}
	if len(orphans) == 0 {
		return
	}
	err = b.owner.batch(func(c *nftables.Conn) {
		for _, t := range orphans {
			c.AddTable(&nftables.Table{Name: t.Name, Family: t.Family})
		}
	})
	if err != nil {
		b.log.Warn("adopting orphaned nftables tables", "tables", names, "err", err)
		return
	}
	b.log.Info("adopted nftables tables of an earlier run", "tables", names)
}

// probeOwner opens the owner socket and checks, with a table created and
// deleted in one batch (so nothing is left even on a crash), that the kernel
// accepts the owner and persist flags and DESTROYTABLE.
func probeOwner(netns int) (*nftOwner, error) {
	o, err := openNftOwner(netns)
	if err != nil {
		return nil, err
	}
	// ':' cannot be in an interface name, so no bridge's table has this name.
	t := &nftables.Table{Name: "vnet:owner-probe", Family: nftables.TableFamilyIPv4}
	err = o.batch(func(c *nftables.Conn) {
		c.AddTable(t)
		c.DelTable(t)
	})
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("probe table flags owner,persist: %w", err)
	}
	return o, nil
}

// liveFlags returns the flags of a listed table. google/nftables v0.3.0
// decodes NFTA_TABLE_FLAGS (big endian on the wire, like every nftables
// attribute) in native byte order; this undoes that.
func liveFlags(t *nftables.Table) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], t.Flags)
	return binary.BigEndian.Uint32(b[:])
}

// listedFlags is liveFlags' inverse: table flags as a listing holds them.
func listedFlags(flags uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], flags)
	return binary.NativeEndian.Uint32(b[:])
}

// isVnetTable reports whether t is one of vnet's tables: a shared table
// "vnet" or a table "vnet-<bridge>" of an earlier version (ip and ip6 only:
// the overlays' "vnet-overlay-*" guards are bridge tables).
func isVnetTable(t *nftables.Table) bool {
	return IsVnetTable(t.Name) &&
		(t.Family == nftables.TableFamilyIPv4 || t.Family == nftables.TableFamilyIPv6)
}

func nftTableID(t *nftables.Table) string {
	if t.Family == nftables.TableFamilyIPv6 {
		return "ip6 " + t.Name
	}
	return "ip " + t.Name
}

// Name implements Backend.
func (b *nftBackend) Name() string { return "nftables" }

func (b *nftBackend) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if b.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(b.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables connection: %w", err)
	}
	return c, nil
}

func (b *nftBackend) netlinkHandle() (*netlink.Handle, error) {
	if b.rt != nil {
		return b.rt, nil
	}
	var h *netlink.Handle
	var err error
	if b.netns != 0 {
		h, err = netlink.NewHandleAt(netns.NsHandle(b.netns), unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink handle: %w", err)
	}
	b.rt = h
	return h, nil
}

var nftFamily = map[Family]nftables.TableFamily{IPv4: nftables.TableFamilyIPv4, IPv6: nftables.TableFamilyIPv6}

// nftOp is one step of a batch: its nft text (one or more lines) and the
// netlink messages it adds to the batch. Apply sends the messages, Describe
// prints the texts: one list for both, so a dry run prints exactly what a
// start does.
type nftOp struct {
	text string
	add  func(c *nftables.Conn)
}

// nftSteps is what Apply or Remove does for one plan, computed against the
// live state by prepare and the plan's ops; Apply carries it out (build,
// then the tc steps), Describe renders it (script).
type nftSteps struct {
	p *Plan
	// owned says the tables are written over the owner socket: DELTABLE
	// goes as DESTROYTABLE and NEWTABLE carries the flags owner,persist.
	owned bool
	// link is the bridge; nil when Describe runs before the bridge exists.
	link    netlink.Link
	ifindex uint32
	// tc is what the bridge lacks of the checksum fix: nothing when the
	// plan has none or the kernel has no csum action.
	tc tcSteps
	// ops is the nftables batch.
	ops []nftOp
	// after updates the cached shared state with what the batch did; run
	// once it is known to be the only change (see nftShared).
	after []func()
}

func (s *nftSteps) op(text string, add func(c *nftables.Conn)) {
	s.ops = append(s.ops, nftOp{text: text, add: add})
}

// prepare computes the bridge part of the steps (its index, the tc steps).
// It returns the backend's rtnetlink handle (nil when the plan needs none;
// callers hold mu). With describe, a bridge that does not exist yet is no
// error: the steps are then those for a new bridge, and when no tc step can
// arise no handle is opened at all (the rule text names the bridge, it
// needs no index).
//
// pass, when not nil, may give the bridge's index (Verify only: Apply and
// Describe always ask the kernel).
func (b *nftBackend) prepare(p *Plan, describe bool, pass *Pass) (*nftSteps, *netlink.Handle, error) {
	s := &nftSteps{p: p, owned: b.owner != nil}
	tc := p.ChecksumFix && !b.noCsum
	if len(p.Rules) == 0 && !p.ChecksumFix || describe && !tc {
		return s, nil, nil
	}
	h, err := b.netlinkHandle()
	if err != nil {
		return nil, nil, err
	}
	var link netlink.Link
	if idx, ok := passIndex(pass, p.Bridge); ok {
		link = &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Index: idx, Name: p.Bridge}}
	} else {
		link, err = h.LinkByName(p.Bridge)
	}
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil:
		s.link, s.ifindex = link, uint32(link.Attrs().Index)
	case !describe || !errors.As(err, &nf):
		return nil, nil, fmt.Errorf("bridge %q: look up: %w", p.Bridge, err)
	}
	if tc {
		if s.tc, err = checksumFixSteps(h, s.link); err != nil {
			return nil, nil, fmt.Errorf("bridge %q: %w", p.Bridge, err)
		}
	}
	return s, h, nil
}

// passIndex is the bridge's index from the pass, if it has one.
func passIndex(pass *Pass, bridge string) (int, bool) {
	if pass == nil || pass.LinkIndex == nil {
		return 0, false
	}
	return pass.LinkIndex(bridge)
}

// tableText is "table <family> <name>".
func tableText(f Family, name string) string { return "table " + f.String() + " " + name }

// delTableOp adds the deletion of a table that is no error when the table
// is absent (see delTable).
func (s *nftSteps) delTableOp(f Family, name string) {
	t := &nftables.Table{Name: name, Family: nftFamily[f]}
	text := "add " + tableText(f, name) + "\ndelete " + tableText(f, name)
	if s.owned {
		text = "destroy " + tableText(f, name)
	}
	s.op(text, func(c *nftables.Conn) { delTable(c, t, s.owned) })
}

// ensureTableOp adds a shared table (no change when it exists).
func (s *nftSteps) ensureTableOp(f Family, t *nftables.Table) {
	text := "add " + tableText(f, t.Name)
	if s.owned {
		text += " { flags owner,persist; }"
	}
	s.op(text, func(c *nftables.Conn) { c.AddTable(t) })
}

// ensureLayoutOps adds the shared table's layout: both maps, the base
// chains and their dispatch rules. Adding an existing map or chain changes
// nothing; the base chains are flushed before their rules are added, since
// adding a rule twice would run it twice.
func (s *nftSteps) ensureLayoutOps(f Family, t *nftables.Table) {
	for _, m := range []*nftables.Set{fwdMap(t), natMap(t, f)} {
		s.op("add map "+f.String()+" "+t.Name+" "+m.Name+" "+mapDecl(m), func(c *nftables.Conn) {
			// Only an element list google/nftables cannot encode fails here.
			_ = c.AddSet(m, nil)
		})
	}
	for _, spec := range nftBaseChains(f) {
		ch := spec.chain(t)
		chain := f.String() + " " + t.Name + " " + spec.name
		s.op(fmt.Sprintf("add chain %s { type %s hook %s priority %d; policy accept; }", chain, spec.typ, spec.hook, spec.priority),
			func(c *nftables.Conn) { c.AddChain(ch) })
		s.op("flush chain "+chain, func(c *nftables.Conn) { c.FlushChain(ch) })
		for i, e := range spec.exprs {
			s.op("add rule "+chain+" "+spec.rules[i], func(c *nftables.Conn) {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
			})
		}
	}
}

// chainOps adds the replacement of one of the network's chains: add (no-op
// when it exists), flush and add the rules, in one batch, so that the chain
// is never seen empty.
func (s *nftSteps) chainOps(f Family, t *nftables.Table, name string, rules []Rule) {
	ch := &nftables.Chain{Name: name, Table: t}
	chain := f.String() + " " + t.Name + " " + nftString(name)
	s.op("add chain "+chain, func(c *nftables.Conn) { c.AddChain(ch) })
	s.op("flush chain "+chain, func(c *nftables.Conn) { c.FlushChain(ch) })
	for _, r := range rules {
		e := chainRuleExprs(r, s.ifindex)
		s.op("add rule "+chain+" "+strings.Join(chainRuleArgs(r), " "), func(c *nftables.Conn) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
		})
	}
}

func (s *nftSteps) delChainOp(f Family, t *nftables.Table, name string) {
	ch := &nftables.Chain{Name: name, Table: t}
	s.op("delete chain "+f.String()+" "+t.Name+" "+nftString(name), func(c *nftables.Conn) { c.DelChain(ch) })
}

// fwdElemOp adds or deletes the element of a bridge in the map bridges.
func (s *nftSteps) fwdElemOp(f Family, t *nftables.Table, bridge string, add bool) {
	m := fwdMap(t)
	key := `"` + bridge + `"`
	if add {
		e := nftables.SetElement{Key: ifnameKey(bridge), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: nftFwdChain(bridge)}}
		s.op("add element "+f.String()+" "+t.Name+" "+nftFwdMap+" { "+key+" : jump "+nftString(nftFwdChain(bridge))+" }",
			func(c *nftables.Conn) { _ = c.SetAddElements(m, []nftables.SetElement{e}) })
		return
	}
	e := nftables.SetElement{Key: ifnameKey(bridge)}
	s.op("delete element "+f.String()+" "+t.Name+" "+nftFwdMap+" { "+key+" }",
		func(c *nftables.Conn) { _ = c.SetDeleteElements(m, []nftables.SetElement{e}) })
}

// natElemOp adds or deletes one interval of the map subnets.
func (s *nftSteps) natElemOp(f Family, t *nftables.Table, e natElem, add bool) {
	m := natMap(t, f)
	elems := e.elements()
	if add {
		s.op("add element "+f.String()+" "+t.Name+" "+nftNatMap+" { "+e.text()+" : jump "+nftString(e.chain)+" }",
			func(c *nftables.Conn) { _ = c.SetAddElements(m, elems) })
		return
	}
	for i := range elems {
		elems[i].VerdictData = nil
	}
	s.op("delete element "+f.String()+" "+t.Name+" "+nftNatMap+" { "+e.text()+" }",
		func(c *nftables.Conn) { _ = c.SetDeleteElements(m, elems) })
}

// applyOps computes the batch of Apply against the shared state sh: for
// both families, delete the network's table of earlier versions, ensure the
// shared layout where it lacks anything, and replace the network's chains
// and elements. Elements that change are deleted before they are added (an
// element added with another verdict would fail: EEXIST), and before the
// chain they jump to is deleted (a chain in use cannot be). The maps come
// after the network's chains: nft 1.0.6 fails (ENOENT) to add an interval
// map's element jumping to a chain added after the map in the same batch,
// and Describe's script must run with it.
func (s *nftSteps) applyOps(sh *nftShared) {
	br := s.p.Bridge
	name := nftTable(br)
	for _, f := range []Family{IPv4, IPv6} {
		s.delTableOp(f, legacyTable(br))
		s.oldSharedOps(sh, f)
		st := sh.tab(f, name)
		if !nftWants(s.p, f) {
			s.removeFamilyOps(sh, f, name)
			continue
		}
		t := &nftables.Table{Name: name, Family: nftFamily[f]}
		switch {
		case st.table != nil && s.owned && liveFlags(st.table)&nftOwnedFlags == 0:
			// A plain table (from a vnet on a kernel that could not own
			// tables) cannot be made owned: it is re-created owned with
			// this network's part. Deleting it removes the others' parts
			// too; the deletion's event has every network converge and
			// restore its own.
			s.delTableOp(f, name)
			st = emptyFamState()
			s.ensureTableOp(f, t)
		case st.table == nil:
			s.ensureTableOp(f, t)
		case s.owned && liveFlags(st.table)&nftOwnedFlags == nftTableFPersist:
			// Orphaned (an earlier owner went after New adopted the
			// others): adding it with the owner flag adopts it.
			s.op("add "+tableText(f, name)+" { flags owner,persist; }", func(c *nftables.Conn) { c.AddTable(t) })
		}

		fwd, nat := s.p.forwardRules(f), s.p.natRules(f)
		fwdName, natName := nftFwdChain(br), nftNatChain(br)
		cur, has := st.fwd[br]
		fwdAdd := len(fwd) > 0 && (!has || cur != fwdName)
		if has && (len(fwd) == 0 || cur != fwdName) {
			s.fwdElemOp(f, t, br, false)
		}
		var want []natElem
		for _, sub := range s.p.natSubnets(f) {
			start, end := prefixInterval(sub)
			want = append(want, natElem{start: start, end: end, chain: natName})
		}
		old := st.natOf(natName)
		for _, e := range old {
			if !slices.ContainsFunc(want, e.equal) {
				s.natElemOp(f, t, e, false)
			}
		}
		for _, c := range []struct {
			name  string
			rules []Rule
		}{{fwdName, fwd}, {natName, nat}} {
			switch {
			case len(c.rules) > 0:
				s.chainOps(f, t, c.name, c.rules)
			case st.chains[c.name]:
				s.delChainOp(f, t, c.name)
			}
		}
		if st.table == nil || len(st.broken) > 0 {
			s.ensureLayoutOps(f, t)
		}
		if fwdAdd {
			s.fwdElemOp(f, t, br, true)
		}
		var added []natElem
		for _, e := range want {
			if !slices.ContainsFunc(old, e.equal) {
				s.natElemOp(f, t, e, true)
				added = append(added, e)
			}
		}
		s.after = append(s.after, func() {
			// Whatever the table was, the batch left it owned when
			// tables are owned (created, re-created or adopted).
			st.table = t
			if s.owned {
				t.Flags = listedFlags(nftOwnedFlags)
			}
			st.broken = nil
			for _, spec := range nftBaseChains(f) {
				st.chains[spec.name] = true
			}
			for _, c := range []struct {
				name string
				has  bool
			}{{fwdName, len(fwd) > 0}, {natName, len(nat) > 0}} {
				if c.has {
					st.chains[c.name] = true
				} else {
					delete(st.chains, c.name)
				}
			}
			if len(fwd) > 0 {
				st.fwd[br] = fwdName
			} else {
				delete(st.fwd, br)
			}
			st.nat = slices.DeleteFunc(st.nat, func(e natElem) bool {
				return e.chain == natName && !slices.ContainsFunc(want, e.equal)
			})
			st.nat = append(st.nat, added...)
			sh.fam[f][name] = st
		})
	}
}

// oldSharedOps deletes the single shared table of the previous layout,
// nftOldShared, when it holds a chain of the network: the network's bucket
// table takes over its part. The other networks in it lose theirs at once;
// the deletion's event has every network converge into its bucket (an
// upgrade converges them all anyway). Deleting the whole table is simpler
// than taking it apart network by network, and Prune and this are the only
// places that know it.
func (s *nftSteps) oldSharedOps(sh *nftShared, f Family) {
	st := sh.fam[f][nftOldShared]
	br := s.p.Bridge
	if st == nil || st.table == nil || !st.chains[nftFwdChain(br)] && !st.chains[nftNatChain(br)] {
		return
	}
	s.delTableOp(f, nftOldShared)
	s.after = append(s.after, func() { delete(sh.fam[f], nftOldShared) })
}

// removeFamilyOps adds the removal of the network's part of one family's
// shared table name: its elements, then its chains; the whole table when
// no other network has a part in it.
func (s *nftSteps) removeFamilyOps(sh *nftShared, f Family, name string) {
	st := sh.tab(f, name)
	if st.table == nil {
		return
	}
	br := s.p.Bridge
	if !st.othersThan(br) {
		s.delTableOp(f, name)
		s.after = append(s.after, func() { sh.fam[f][name] = emptyFamState() })
		return
	}
	t := &nftables.Table{Name: name, Family: nftFamily[f]}
	if _, ok := st.fwd[br]; ok {
		s.fwdElemOp(f, t, br, false)
	}
	natName := nftNatChain(br)
	for _, e := range st.natOf(natName) {
		s.natElemOp(f, t, e, false)
	}
	for _, name := range []string{nftFwdChain(br), natName} {
		if st.chains[name] {
			s.delChainOp(f, t, name)
		}
	}
	s.after = append(s.after, func() {
		delete(st.fwd, br)
		st.nat = slices.DeleteFunc(st.nat, func(e natElem) bool { return e.chain == natName })
		delete(st.chains, nftFwdChain(br))
		delete(st.chains, natName)
	})
}

// removeOps computes the batch of Remove: for both families, the tables of
// earlier versions and the network's part of its bucket table.
func (s *nftSteps) removeOps(sh *nftShared) {
	for _, f := range []Family{IPv4, IPv6} {
		s.delTableOp(f, legacyTable(s.p.Bridge))
		s.oldSharedOps(sh, f)
		s.removeFamilyOps(sh, f, nftTable(s.p.Bridge))
	}
}

// build adds the batch to c.
func (s *nftSteps) build(c *nftables.Conn) {
	for _, o := range s.ops {
		o.add(c)
	}
}

// script renders the steps as a shell script doing the same with the nft
// and tc tools: the batch as one `nft -f` transaction, then the tc commands.
// Owned tables are written with "destroy" and "flags owner,persist", which
// older nft tools (Debian 12's 1.0.6) do not parse; the text is what Apply
// sends over netlink all the same.
func (s *nftSteps) script() string {
	var w strings.Builder
	w.WriteString("nft -f - <<'EOF'\n")
	for _, o := range s.ops {
		w.WriteString(o.text + "\n")
	}
	w.WriteString("EOF\n")
	for _, c := range s.tc.commands(s.p.Bridge) {
		w.WriteString(c + "\n")
	}
	return w.String()
}

// scriptValue logs the script of steps only when the record is written.
type scriptValue struct{ s *nftSteps }

func (v scriptValue) LogValue() slog.Value { return slog.StringValue(v.s.script()) }

// sharedNow reads the generation and the shared state at it. Callers hold
// b.mu.
func (b *nftBackend) sharedNow() (*nftShared, error) {
	gen, genErr := b.generation()
	c, err := b.conn()
	if err != nil {
		return nil, err
	}
	return b.shared(c, gen, genErr == nil)
}

// commit sends the steps' batch and keeps the cached shared state: updated
// with the steps when the generation moved by exactly this batch, else
// dropped. Callers hold b.mu.
func (b *nftBackend) commit(s *nftSteps) error {
	gen0 := b.sh.gen
	err := b.write(s.build)
	gen1, genErr := b.generation()
	if err != nil || genErr != nil || !b.sh.valid || gen1 != gen0+1 && gen1 != gen0 {
		b.sh.valid = false
		return err
	}
	for _, f := range s.after {
		f()
	}
	b.sh.gen = gen1
	return nil
}

// Apply implements Backend: one batch that converges the shared tables and
// replaces the network's part of them (see applyOps; the kernel applies it
// atomically: there is no moment without rules), then the parts of the tc
// checksum fix the bridge lacks. Start, adoption and repair all converge
// this way. Its debug log holds the steps as Describe renders them.
func (b *nftBackend) Apply(p *Plan) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	s, h, err := b.prepare(p, false, nil)
	if err != nil {
		return err
	}
	sh, err := b.sharedNow()
	if err != nil {
		return err
	}
	s.applyOps(sh)
	if err := b.commit(s); err != nil {
		return fmt.Errorf("converge nftables table %s for bridge %s: %w", nftTable(p.Bridge), p.Bridge, err)
	}
	if s.tc != (tcSteps{}) {
		done, err := s.tc.run(h, s.link)
		s.tc = done
		if errors.Is(err, errNoCsumAction) {
			// Only guests that drop DHCP replies with partial checksums
			// (vhost-net + e.g. FreeBSD) need the fix; failing every
			// network start for it would be worse, so warn once.
			b.noCsum = true
			b.log.Warn("DHCP checksum fix unavailable, skipping it", "bridge", p.Bridge, "err", err)
		} else if err != nil {
			return fmt.Errorf("bridge %q: %w", p.Bridge, err)
		}
	}
	b.log.Debug("firewall applied", "network", p.Network, "bridge", p.Bridge, "rules", len(p.Rules),
		"took", time.Since(start), "steps", scriptValue{s})
	return nil
}

// Describe implements Backend: the steps Apply would run now, as a shell
// script of nft and tc commands (see nftSteps.script). It reads the shared
// tables as Apply does; where it cannot (no permission), it describes them
// as absent.
func (b *nftBackend) Describe(p *Plan) (string, error) {
	if p.Bridge == "" {
		return "", nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s, _, err := b.prepare(p, true, nil)
	if err != nil {
		return "", err
	}
	sh, err := b.sharedNow()
	if errors.Is(err, unix.EPERM) {
		sh, err = &nftShared{}, nil
	}
	if err != nil {
		return "", err
	}
	s.applyOps(sh)
	return s.script(), nil
}

// Remove implements Backend: one batch deleting the network's elements and
// chains of the shared tables (the tables themselves with the last network)
// and its tables of earlier versions. The tc checksum fix stays: the kernel
// removes it with the bridge.
func (b *nftBackend) Remove(p *Plan) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	sh, err := b.sharedNow()
	if err != nil {
		return err
	}
	s := &nftSteps{p: p, owned: b.owner != nil}
	s.removeOps(sh)
	if err := b.commit(s); err != nil {
		return fmt.Errorf("remove bridge %s from nftables table %s: %w", p.Bridge, nftTable(p.Bridge), err)
	}
	b.log.Debug("firewall removed", "network", p.Network, "bridge", p.Bridge, "took", time.Since(start))
	return nil
}

// Verify implements Backend. It compares the shared tables' layout, the
// network's chains (every rule's expressions, ignoring counter values) and
// map elements with what Apply would install, and checks the tc checksum
// fix on the bridge.
func (b *nftBackend) Verify(p *Plan) error { return b.VerifyPass(p, nil) }

// VerifyPass implements PassVerifier. The shared state (layout and maps) is
// read once per ruleset generation, so once per pass however many networks
// it checks; each network's chains are read by name.
func (b *nftBackend) VerifyPass(p *Plan, pass *Pass) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	drift := &DriftError{Network: p.Network}
	s, _, err := b.prepare(p, false, pass)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		drift.Missing = append(drift.Missing, "bridge "+p.Bridge)
		return drift
	}
	if err != nil {
		return err
	}
	var gen uint32
	var genErr error
	switch {
	case pass == nil:
		gen, genErr = b.generation()
	case pass.read:
		gen, genErr = pass.gen, pass.err
	default:
		gen, genErr = b.generation()
		pass.read, pass.gen, pass.err = true, gen, genErr
	}
	mark := cleanMark{gen: gen, ifindex: s.ifindex, plan: planHash(p)}
	if genErr != nil || b.clean[p.Bridge] != mark {
		delete(b.clean, p.Bridge)
		c, err := b.conn()
		if err != nil {
			return err
		}
		sh, err := b.shared(c, gen, genErr == nil)
		if err != nil {
			return err
		}
		for _, f := range []Family{IPv4, IPv6} {
			if err := b.verifyFamily(c, p, f, sh, s.ifindex, drift); err != nil {
				return err
			}
		}
		if drift.empty() && genErr == nil {
			if b.clean == nil {
				b.clean = map[string]cleanMark{}
			}
			b.clean[p.Bridge] = mark
		}
	}
	drift.Missing = append(drift.Missing, s.tc.missing(p.Bridge)...)
	if drift.empty() {
		return nil
	}
	return drift
}

// verifyFamily compares the network's part of one family's shared table
// with the plan. The shared state st comes from the pass; the network's
// chains are asked for by name, so the cost does not grow with the number
// of networks.
func (b *nftBackend) verifyFamily(c *nftables.Conn, p *Plan, f Family, sh *nftShared, ifindex uint32, drift *DriftError) error {
	legacy := tableText(f, legacyTable(p.Bridge))
	_, err := c.ListTableOfFamily(legacyTable(p.Bridge), nftFamily[f])
	switch {
	case err == nil:
		// Left by an earlier version: Apply deletes it.
		drift.Unexpected = append(drift.Unexpected, legacy)
	case !notFound(err):
		return fmt.Errorf("get %s: %w", legacy, err)
	}
	if old := sh.fam[f][nftOldShared]; old != nil && old.table != nil &&
		(old.chains[nftFwdChain(p.Bridge)] || old.chains[nftNatChain(p.Bridge)]) {
		// The previous layout's single table: Apply deletes it.
		drift.Unexpected = append(drift.Unexpected, tableText(f, nftOldShared))
	}
	st := sh.tab(f, nftTable(p.Bridge))
	tableID := tableText(f, nftTable(p.Bridge))
	want := nftWants(p, f)
	if st.table == nil {
		if want {
			drift.Missing = append(drift.Missing, tableID)
		}
		return nil
	}
	if want {
		if b.owner != nil && liveFlags(st.table)&nftOwnedFlags != nftOwnedFlags {
			// Plain (an earlier vnet without owned tables) or orphaned
			// (its owner exited after New adopted the others): Apply
			// re-creates or adopts it.
			drift.Missing = append(drift.Missing, tableID+" ownership (flags owner,persist)")
		}
		drift.Missing = append(drift.Missing, st.broken...)
	}
	br := p.Bridge
	fwd, nat := p.forwardRules(f), p.natRules(f)
	for _, ch := range []struct {
		name  string
		rules []Rule
	}{{nftFwdChain(br), fwd}, {nftNatChain(br), nat}} {
		chainID := tableID + " chain " + ch.name
		switch {
		case len(ch.rules) == 0 && st.chains[ch.name]:
			drift.Unexpected = append(drift.Unexpected, chainID)
			continue
		case len(ch.rules) == 0:
			continue
		case !st.chains[ch.name]:
			drift.Missing = append(drift.Missing, chainID)
			continue
		}
		got, err := c.GetRules(st.table, &nftables.Chain{Name: ch.name, Table: st.table})
		if err != nil {
			return fmt.Errorf("list rules of %s: %w", chainID, err)
		}
		compareRules(chainID, ch.rules, got, ifindex, drift)
	}
	fwdID := tableID + " map " + nftFwdMap + " element \"" + br + "\""
	cur, has := st.fwd[br]
	switch {
	case len(fwd) > 0 && cur != nftFwdChain(br):
		drift.Missing = append(drift.Missing, fwdID+" : jump "+nftFwdChain(br))
	case len(fwd) == 0 && has:
		drift.Unexpected = append(drift.Unexpected, fwdID)
	}
	natID := tableID + " map " + nftNatMap + " element "
	var wantNat []natElem
	for _, sub := range p.natSubnets(f) {
		start, end := prefixInterval(sub)
		wantNat = append(wantNat, natElem{start: start, end: end, chain: nftNatChain(br)})
	}
	got := st.natOf(nftNatChain(br))
	for _, e := range wantNat {
		if !slices.ContainsFunc(got, e.equal) {
			drift.Missing = append(drift.Missing, natID+e.text()+" : jump "+e.chain)
		}
	}
	for _, e := range got {
		if !slices.ContainsFunc(wantNat, e.equal) {
			drift.Unexpected = append(drift.Unexpected, natID+e.text())
		}
	}
	return nil
}

// notFound reports the kernel's ENOENT for a table or chain asked for by
// name. Why the text: google/nftables' ListChain formats the netlink error
// with %v, which drops the errno from the error chain.
func notFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.HasSuffix(err.Error(), unix.ENOENT.Error()))
}

// compareRules matches the live rules of a chain against the plan's, in order.
func compareRules(chainID string, want []Rule, got []*nftables.Rule, ifindex uint32, drift *DriftError) {
	gotExprs := make([][]expr.Any, len(got))
	for i, r := range got {
		gotExprs[i] = normaliseExprs(r.Exprs)
	}
	used := make([]bool, len(got))
	inOrder := len(want) == len(got)
	for i, r := range want {
		w := chainRuleExprs(r, ifindex)
		found := -1
		for j := range got {
			if !used[j] && reflect.DeepEqual(w, gotExprs[j]) {
				found = j
				break
			}
		}
		if found < 0 {
			drift.Missing = append(drift.Missing, chainID+" rule: "+strings.Join(chainRuleArgs(r), " "))
			inOrder = false
			continue
		}
		used[found] = true
		if found != i {
			inOrder = false
		}
	}
	extra := false
	for j, u := range used {
		if !u {
			extra = true
			drift.Unexpected = append(drift.Unexpected, fmt.Sprintf("%s rule handle %d", chainID, got[j].Handle))
		}
	}
	if !inOrder && !extra && len(want) == len(got) {
		drift.Unexpected = append(drift.Unexpected, chainID+": rules out of order")
	}
}

// normaliseExprs drops what the kernel adds or counts on its own (counter
// values), so live expressions compare equal to freshly built ones.
func normaliseExprs(in []expr.Any) []expr.Any {
	out := make([]expr.Any, len(in))
	for i, e := range in {
		if _, ok := e.(*expr.Counter); ok {
			e = &expr.Counter{}
		}
		out[i] = e
	}
	return out
}

// sameExpr compares a live expression with a built one.
func sameExpr(got, want expr.Any) bool { return reflect.DeepEqual(got, want) }

func sameChain(got, want *nftables.Chain) bool {
	if got.Type != want.Type || got.Hooknum == nil || *got.Hooknum != *want.Hooknum ||
		got.Priority == nil || *got.Priority != *want.Priority {
		return false
	}
	return got.Policy != nil && *got.Policy == *want.Policy
}

// ruleExprs builds the nftables expressions of a rule; they are what the nft
// tool generates for the rule text of nftRuleArgs. The bridge is matched by
// interface index (iif/oif), the forward device by name (iifname/oifname).
func ruleExprs(r Rule, bridge uint32) []expr.Any {
	var e []expr.Any
	iif := func() { e = append(e, ifIndex(expr.MetaKeyIIF, bridge)...) }
	oif := func() { e = append(e, ifIndex(expr.MetaKeyOIF, bridge)...) }
	devIn := func() {
		if r.Dev != "" {
			e = append(e, ifName(expr.MetaKeyIIFNAME, r.Dev)...)
		}
	}
	devOut := func() {
		if r.Dev != "" {
			e = append(e, ifName(expr.MetaKeyOIFNAME, r.Dev)...)
		}
	}
	switch r.Type {
	case HostIn:
		iif()
		e = append(e, dport(r.Proto, r.Port)...)
		e = append(e, &expr.Counter{}, accept())
	case HostOut:
		oif()
		e = append(e, dport(r.Proto, r.Port)...)
		e = append(e, &expr.Counter{}, accept())
	case RejectOut:
		iif()
		e = append(e, &expr.Counter{}, reject(r.Family))
	case RejectIn:
		oif()
		e = append(e, &expr.Counter{}, reject(r.Family))
	case AllowCross:
		iif()
		oif()
		e = append(e, &expr.Counter{}, accept())
	case AllowOut:
		e = append(e, addrMatch(r.Family, true, r.Subnet, expr.CmpOpEq)...)
		iif()
		devOut()
		e = append(e, &expr.Counter{}, accept())
	case AllowRelatedIn:
		devIn()
		oif()
		e = append(e, addrMatch(r.Family, false, r.Subnet, expr.CmpOpEq)...)
		e = append(e, ctRelatedEstablished()...)
		e = append(e, &expr.Counter{}, accept())
	case AllowIn:
		e = append(e, addrMatch(r.Family, false, r.Subnet, expr.CmpOpEq)...)
		devIn()
		oif()
		e = append(e, &expr.Counter{}, accept())
	case Masquerade:
		if r.Proto != "" {
			e = append(e, l4proto(r.Proto)...)
		}
		e = append(e, addrMatch(r.Family, true, r.Subnet, expr.CmpOpEq)...)
		e = append(e, addrMatch(r.Family, false, r.Subnet, expr.CmpOpNeq)...)
		devOut()
		e = append(e, &expr.Counter{})
		e = append(e, natExprs(r.Family, r.NAT)...)
	case NoMasquerade:
		devOut()
		e = append(e, addrMatch(r.Family, true, r.Subnet, expr.CmpOpEq)...)
		e = append(e, addrMatch(r.Family, false, r.Dest, expr.CmpOpEq)...)
		e = append(e, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictReturn})
	}
	return e
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

// reject is nft's plain "reject": ICMP port unreachable (ICMPv6 in ip6).
func reject(f Family) expr.Any {
	if f == IPv6 {
		return &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 4} // ICMPV6_PORT_UNREACH
	}
	return &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3} // ICMP_PORT_UNREACH
}

func ifIndex(key expr.MetaKey, index uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(index)},
	}
}

// ifName matches an interface name exactly, as nft does: the name padded
// with NULs to IFNAMSIZ.
func ifName(key expr.MetaKey, name string) []expr.Any {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

func protoNum(proto string) byte {
	if proto == "tcp" {
		return unix.IPPROTO_TCP
	}
	return unix.IPPROTO_UDP
}

func l4proto(proto string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum(proto)}},
	}
}

func dport(proto string, port uint16) []expr.Any {
	return append(l4proto(proto),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	)
}

// addrMatch compares the source (src) or destination address with a prefix.
// Like nft, a byte-aligned prefix loads only its bytes; otherwise the address
// is masked.
func addrMatch(f Family, src bool, pfx netip.Prefix, op expr.CmpOp) []expr.Any {
	off, size := uint32(16), uint32(4)
	if src {
		off = 12
	}
	if f == IPv6 {
		off, size = 24, 16
		if src {
			off = 8
		}
	}
	addr := pfx.Masked().Addr().AsSlice()
	bits := pfx.Bits()
	if bits > 0 && bits%8 == 0 {
		n := uint32(bits / 8)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Cmp{Op: op, Register: 1, Data: addr[:n]},
		}
	}
	m := make([]byte, size)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: m, Xor: make([]byte, size)},
		&expr.Cmp{Op: op, Register: 1, Data: addr},
	}
}

func ctRelatedEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// natExprs is "masquerade [to :ports]" or "snat to addr[-addr][:ports]".
func natExprs(f Family, n NAT) []expr.Any {
	ported := n.PortStart != 0 || n.PortEnd != 0
	if !n.AddrStart.IsValid() {
		if !ported {
			return []expr.Any{&expr.Masq{}}
		}
		return []expr.Any{
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(n.PortStart)},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(n.PortEnd)},
			&expr.Masq{ToPorts: true, RegProtoMin: 1, RegProtoMax: 2},
		}
	}
	fam := uint32(unix.NFPROTO_IPV4)
	if f == IPv6 {
		fam = unix.NFPROTO_IPV6
	}
	nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: fam, RegAddrMin: 1}
	e := []expr.Any{&expr.Immediate{Register: 1, Data: n.AddrStart.AsSlice()}}
	reg := uint32(2)
	if n.AddrEnd.IsValid() {
		e = append(e, &expr.Immediate{Register: reg, Data: n.AddrEnd.AsSlice()})
		nat.RegAddrMax = reg
		reg++
	}
	if ported {
		e = append(e,
			&expr.Immediate{Register: reg, Data: binaryutil.BigEndian.PutUint16(n.PortStart)},
			&expr.Immediate{Register: reg + 1, Data: binaryutil.BigEndian.PutUint16(n.PortEnd)})
		nat.RegProtoMin, nat.RegProtoMax = reg, reg+1
		nat.Specified = true
	}
	return append(e, nat)
}
