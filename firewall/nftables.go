package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"net/netip"
	"reflect"
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

// nftBackend is the nftables backend on google/nftables. Each network owns the
// tables "vnet-<bridge>" (family ip, and ip6 when it has IPv6 rules) with one
// base chain per hook it needs.
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
	// clean remembers, per table name, the ruleset generation at which
	// the network's tables were found as planned: while the kernel's
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

// adoptOrphans takes ownership of the tables "vnet-*" whose owner (an
// earlier run) is gone, in one batch: NEWTABLE with the owner flag on an
// orphaned table changes its owner and nothing else (no flap, counters kept).
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

func isVnetTable(t *nftables.Table) bool {
	return strings.HasPrefix(t.Name, "vnet-") &&
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

// nftSteps is what Apply does for one plan, computed against the live state
// by prepare; Apply carries it out (build, then the tc steps), Describe
// renders it (script). Both go through here so that a dry run prints exactly
// what a start does.
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
}

// prepare computes the steps of Apply. It returns the backend's rtnetlink
// handle (nil when the plan needs none; callers hold mu). With
// describe, a bridge that does not exist yet is no error: the steps are
// then those for a new bridge, and when no tc step can arise no handle is
// opened at all (the rule text names the bridge, it needs no index).
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

// build adds the batch to c: for both families, delete the network's table
// if it exists (add-then-delete, or DESTROYTABLE when owned, so a missing
// table is no error) and re-create it with the plan's chains and rules.
func (s *nftSteps) build(c *nftables.Conn) {
	for _, f := range []Family{IPv4, IPv6} {
		t := &nftables.Table{Name: s.p.TableName(), Family: nftFamily[f]}
		delTable(c, t, s.owned)
		if !familyHasRules(s.p, f) {
			continue
		}
		c.AddTable(t)
		for _, spec := range nftChains {
			rules := s.p.chainRules(f, spec)
			if len(rules) == 0 {
				continue
			}
			ch := c.AddChain(nftChain(t, spec))
			for _, r := range rules {
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ruleExprs(r, s.ifindex)})
			}
		}
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
	for _, f := range []Family{IPv4, IPv6} {
		table := "table " + f.String() + " " + s.p.TableName()
		if s.owned {
			w.WriteString("destroy " + table + "\n")
		} else {
			w.WriteString("add " + table + "\ndelete " + table + "\n")
		}
		if !familyHasRules(s.p, f) {
			continue
		}
		if s.owned {
			w.WriteString("add " + table + " { flags owner,persist; }\n")
		} else {
			w.WriteString("add " + table + "\n")
		}
		for _, spec := range nftChains {
			rules := s.p.chainRules(f, spec)
			if len(rules) == 0 {
				continue
			}
			chain := "add chain " + f.String() + " " + s.p.TableName() + " " + spec.name
			fmt.Fprintf(&w, "%s { type %s hook %s priority %d; policy accept; }\n", chain, spec.typ, spec.hook, spec.priority)
			for _, r := range rules {
				w.WriteString("add rule " + f.String() + " " + s.p.TableName() + " " + spec.name + " " + strings.Join(nftRuleArgs(r), " ") + "\n")
			}
		}
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

// Apply implements Backend: one batch that replaces the network's tables
// (see nftSteps.build; the kernel applies it atomically: there is no moment
// without rules), then the parts of the tc checksum fix the bridge lacks.
// Its debug log holds the steps as Describe renders them.
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
	if err := b.write(s.build); err != nil {
		return fmt.Errorf("replace nftables table %s: %w", p.TableName(), err)
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
	b.log.Debug("firewall applied", "network", p.Network, "table", p.TableName(), "rules", len(p.Rules),
		"took", time.Since(start), "steps", scriptValue{s})
	return nil
}

// Describe implements Backend: the steps Apply would run now, as a shell
// script of nft and tc commands (see nftSteps.script).
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
	return s.script(), nil
}

// Remove implements Backend: one batch deleting the network's tables of both
// families (add-then-delete, so absent tables are no error). The tc checksum
// fix stays: the kernel removes it with the bridge.
func (b *nftBackend) Remove(p *Plan) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	err := b.write(func(c *nftables.Conn) {
		for _, f := range []Family{IPv4, IPv6} {
			delTable(c, &nftables.Table{Name: p.TableName(), Family: nftFamily[f]}, b.owner != nil)
		}
	})
	if err != nil {
		return fmt.Errorf("delete nftables table %s: %w", p.TableName(), err)
	}
	b.log.Debug("firewall removed", "network", p.Network, "table", p.TableName(), "took", time.Since(start))
	return nil
}

// Verify implements Backend. It compares tables, base chains and every rule's
// expressions (ignoring counter values) with what Apply would install, and
// checks the tc checksum fix on the bridge.
func (b *nftBackend) Verify(p *Plan) error { return b.VerifyPass(p, nil) }

// VerifyPass implements PassVerifier.
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
	if genErr != nil || b.clean[p.TableName()] != mark {
		delete(b.clean, p.TableName())
		c, err := b.conn()
		if err != nil {
			return err
		}
		for _, f := range []Family{IPv4, IPv6} {
			if err := b.verifyFamily(c, p, f, s.ifindex, drift); err != nil {
				return err
			}
		}
		if drift.empty() && genErr == nil {
			if b.clean == nil {
				b.clean = map[string]cleanMark{}
			}
			b.clean[p.TableName()] = mark
		}
	}
	drift.Missing = append(drift.Missing, s.tc.missing(p.Bridge)...)
	if drift.empty() {
		return nil
	}
	return drift
}

// verifyFamily compares the network's table of one family with the plan.
// It asks the kernel for that table and its chains by name, so its cost does
// not grow with the number of networks (a listing of every table and chain
// per network made the periodic check of N networks O(N²)); only when the
// table holds more chains than vnet's does it list the family's chains to
// name them.
func (b *nftBackend) verifyFamily(c *nftables.Conn, p *Plan, f Family, ifindex uint32, drift *DriftError) error {
	name := p.TableName()
	tableID := "table " + f.String() + " " + name
	table, err := c.ListTableOfFamily(name, nftFamily[f])
	if notFound(err) {
		table, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", tableID, err)
	}
	want := familyHasRules(p, f)
	switch {
	case table == nil && want:
		drift.Missing = append(drift.Missing, tableID)
		return nil
	case table != nil && !want:
		drift.Unexpected = append(drift.Unexpected, tableID)
		return nil
	case table == nil:
		return nil
	}
	if b.owner != nil && liveFlags(table)&nftOwnedFlags != nftOwnedFlags {
		// Plain (an earlier vnet without owned tables) or orphaned (its
		// owner exited after New adopted the others): Apply re-creates it
		// owned.
		drift.Missing = append(drift.Missing, tableID+" ownership (flags owner,persist)")
	}

	found := uint32(0) // chains of ours in the table
	for _, spec := range nftChains {
		rules := p.chainRules(f, spec)
		chainID := tableID + " chain " + spec.name
		ch, err := c.ListChain(table, spec.name)
		if notFound(err) {
			ch, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", chainID, err)
		}
		if ch != nil {
			found++
		}
		switch {
		case len(rules) == 0 && ch != nil:
			drift.Unexpected = append(drift.Unexpected, chainID)
			continue
		case len(rules) == 0:
			continue
		case ch == nil:
			drift.Missing = append(drift.Missing, chainID)
			continue
		}
		if !sameChain(ch, nftChain(table, spec)) {
			drift.Missing = append(drift.Missing, chainID+" (hook, type, priority or policy differ)")
			continue
		}
		got, err := c.GetRules(table, ch)
		if err != nil {
			return fmt.Errorf("list rules of %s: %w", chainID, err)
		}
		compareRules(chainID, rules, got, ifindex, drift)
	}
	if tableUse(table) <= found {
		return nil
	}
	// Someone added chains (or sets) to our table: name the chains.
	chains, err := c.ListChainsOfTableFamily(nftFamily[f])
	if err != nil {
		return fmt.Errorf("list %s chains: %w", f, err)
	}
	ours := map[string]bool{}
	for _, spec := range nftChains {
		ours[spec.name] = true
	}
	for _, ch := range chains {
		if ch.Table.Name == name && !ours[ch.Name] {
			drift.Unexpected = append(drift.Unexpected, tableID+" chain "+ch.Name)
		}
	}
	return nil
}

// tableUse is the number of chains (and sets, objects, flowtables) in the
// table. Why the swap: google/nftables v0.3.0 decodes NFTA_TABLE_USE, which
// the kernel sends big-endian, in host order; no table holds 65536 objects,
// so a larger value is a swapped one.
func tableUse(t *nftables.Table) uint32 {
	if t.Use > 0xffff {
		return bits.ReverseBytes32(t.Use)
	}
	return t.Use
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
		w := ruleExprs(r, ifindex)
		found := -1
		for j := range got {
			if !used[j] && reflect.DeepEqual(w, gotExprs[j]) {
				found = j
				break
			}
		}
		if found < 0 {
			drift.Missing = append(drift.Missing, chainID+" rule: "+strings.Join(nftRuleArgs(r), " "))
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

func sameChain(got, want *nftables.Chain) bool {
	if got.Type != want.Type || got.Hooknum == nil || *got.Hooknum != *want.Hooknum ||
		got.Priority == nil || *got.Priority != *want.Priority {
		return false
	}
	return got.Policy != nil && *got.Policy == *want.Policy
}

func familyHasRules(p *Plan, f Family) bool {
	for _, r := range p.Rules {
		if r.Family == f {
			return true
		}
	}
	return false
}

// nftChain returns the base chain object of a spec in table t.
func nftChain(t *nftables.Table, spec nftChainSpec) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	ch := &nftables.Chain{
		Name:     spec.name,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(spec.priority)),
		Policy:   &accept,
	}
	if spec.typ == "nat" {
		ch.Type = nftables.ChainTypeNAT
	}
	switch spec.hook {
	case "input":
		ch.Hooknum = nftables.ChainHookInput
	case "output":
		ch.Hooknum = nftables.ChainHookOutput
	case "forward":
		ch.Hooknum = nftables.ChainHookForward
	case "postrouting":
		ch.Hooknum = nftables.ChainHookPostrouting
	}
	return ch
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
