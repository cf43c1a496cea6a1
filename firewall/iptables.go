package firewall

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// The iptables backend keeps libvirt's layout (see libvirt-behaviour.md §1)
// under vnet's own chain names, shared by all networks of a family:
//
//	filter: VNET_INP (from INPUT), VNET_OUT (from OUTPUT), VNET_FWX,
//	        VNET_FWI, VNET_FWO (from FORWARD, in this order)
//	nat:    VNET_PRT (from POSTROUTING)
//	mangle: VNET_PRT (from POSTROUTING; the DHCPv4 CHECKSUM rule)
//
// Every rule of a network carries the comment "vnet:<network>", so a network's
// rules can be told from the others' and from foreign ones.
//
// Reading and writing go through iptables-save and iptables-restore
// --noflush: one process to read a family's tables and, only when something
// must change, one more to write every change of the family as a batch.
// go-iptables execs one process per rule (libvirt's 19 processes for a NAT
// network) and has no batch interface, so it is only used to find and check
// the iptables binaries. The batch holds exactly the difference between the
// live rules and the plan: a second Apply runs no writer at all, and a chain
// whose rules differ is fixed by deleting and re-inserting the network's
// rules in the same batch (iptables-nft applies a batch as one nftables
// transaction; legacy iptables replaces each table in one step), so there is
// never a moment without them.

// Chain names of the iptables backend.
const (
	iptChainInput   = "VNET_INP"
	iptChainOutput  = "VNET_OUT"
	iptChainFwdOut  = "VNET_FWO"
	iptChainFwdIn   = "VNET_FWI"
	iptChainCross   = "VNET_FWX"
	iptChainPostrtg = "VNET_PRT"
	// iptChainPrefix starts every chain vnet creates (CleanupOthers removes
	// them all).
	iptChainPrefix = "VNET_"
	// iptCommentPrefix starts the comment of every rule of a network.
	iptCommentPrefix = "vnet:"
)

// iptTables are the tables the backend uses, in batch order.
var iptTables = []string{"filter", "nat", "mangle"}

// tableChain names a chain of a table.
type tableChain struct{ table, chain string }

// iptChainOf maps the abstract chains to the backend's chains.
var iptChainOf = map[Chain]tableChain{
	ChainInput:      {"filter", iptChainInput},
	ChainOutput:     {"filter", iptChainOutput},
	ChainForwardOut: {"filter", iptChainFwdOut},
	ChainForwardIn:  {"filter", iptChainFwdIn},
	ChainCross:      {"filter", iptChainCross},
	ChainNAT:        {"nat", iptChainPostrtg},
}

// iptOwnChains lists the chains of the structure, in creation order.
var iptOwnChains = []tableChain{
	{"filter", iptChainInput}, {"filter", iptChainOutput},
	{"filter", iptChainFwdOut}, {"filter", iptChainFwdIn}, {"filter", iptChainCross},
	{"nat", iptChainPostrtg}, {"mangle", iptChainPostrtg},
}

// iptJumps lists, per built-in chain, the jumps to the backend's chains in
// the order they must appear (libvirt's FORWARD order: cross, in, out).
var iptJumps = []struct {
	builtin tableChain
	targets []string
}{
	{tableChain{"filter", "INPUT"}, []string{iptChainInput}},
	{tableChain{"filter", "OUTPUT"}, []string{iptChainOutput}},
	{tableChain{"filter", "FORWARD"}, []string{iptChainCross, iptChainFwdIn, iptChainFwdOut}},
	{tableChain{"nat", "POSTROUTING"}, []string{iptChainPostrtg}},
	{tableChain{"mangle", "POSTROUTING"}, []string{iptChainPostrtg}},
}

// iptTool is the iptables or ip6tables command set of one family.
type iptTool struct {
	name    string // "iptables" or "ip6tables", for messages
	save    string // path of <name>-save
	restore string // path of <name>-restore
	err     error  // why the family cannot be used, nil when it can
}

// iptBackend is the iptables backend.
type iptBackend struct {
	log   *slog.Logger
	netns int
	tools [2]iptTool
	// mu serialises operations: each one reads the state and then writes the
	// difference, which must not interleave with another. Within an
	// operation the two families run in parallel.
	mu sync.Mutex
	// noCsum is set once the kernel refused the CHECKSUM target; the rule is
	// then left out (and not verified) instead of failing every start.
	noCsum atomic.Bool
	// clean[f] is set when the last read or write of family f left no
	// VNET_ chain in it. Only vnet creates those, so an operation that
	// wants no rules in f skips reading it: a network without IPv6 costs
	// no ip6tables process.
	clean [2]atomic.Bool
}

// newIptBackend finds the iptables and ip6tables tools. A family whose tools
// are missing is only an error when a plan has rules in it.
func newIptBackend(o Options) (*iptBackend, error) {
	b := &iptBackend{log: o.Logger, netns: o.NetNS}
	for _, f := range []Family{IPv4, IPv6} {
		b.tools[f] = findIptTool(f)
	}
	if b.tools[IPv4].err != nil {
		return nil, fmt.Errorf("firewall backend 'iptables': %w", b.tools[IPv4].err)
	}
	if err := b.tools[IPv6].err; err != nil {
		b.log.Warn("IPv6 firewall unavailable", "err", err)
	}
	return b, nil
}

// findIptTool checks one family's binaries: go-iptables locates iptables (or
// ip6tables) and reads its version; the save and restore tools are looked up
// beside it on PATH.
func findIptTool(f Family) iptTool {
	t := iptTool{name: "iptables"}
	proto := iptables.ProtocolIPv4
	if f == IPv6 {
		t.name, proto = "ip6tables", iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.IPFamily(proto))
	if err != nil {
		t.err = fmt.Errorf("%s: %w", t.name, err)
		return t
	}
	// iptables-restore learnt -w (wait for the xtables lock) in 1.6.2.
	if v1, v2, v3 := ipt.GetIptablesVersion(); v1 < 1 || (v1 == 1 && (v2 < 6 || (v2 == 6 && v3 < 2))) {
		t.err = fmt.Errorf("%s %d.%d.%d is too old (need 1.6.2)", t.name, v1, v2, v3)
		return t
	}
	if t.save, err = exec.LookPath(t.name + "-save"); err != nil {
		t.err = err
		return t
	}
	if t.restore, err = exec.LookPath(t.name + "-restore"); err != nil {
		t.err = err
	}
	return t
}

// Name implements Backend.
func (b *iptBackend) Name() string { return "iptables" }

// Apply implements Backend: per family (both in parallel), one
// iptables-save and, when the live rules differ from the plan, one
// iptables-restore --noflush that creates the missing chains and jump rules
// and replaces the network's rules in the chains where they differ (see
// applyDiff). A family without rules in the plan loses the network's rules
// (and the whole structure when no other network uses it). Its debug log
// holds the batches written, as Describe renders them.
func (b *iptBackend) Apply(p *Plan) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	comment, err := iptComment(p.Network)
	if err != nil {
		return err
	}
	var written [2]string
	err = b.eachFamily(p, func(f Family) error {
		var err error
		written[f], err = b.sync(f, b.applyDiff(p, f, comment), familyHasRules(p, f))
		return err
	})
	if err != nil {
		return err
	}
	b.log.Debug("firewall applied", "network", p.Network, "backend", "iptables",
		"took", time.Since(start), "steps", iptScriptValue{b, written})
	return nil
}

// applyDiff returns the computation of what Apply writes in family f.
func (b *iptBackend) applyDiff(p *Plan, f Family, comment string) func(*iptState) *iptDiff {
	return func(st *iptState) *iptDiff {
		want := b.wantRules(p, f, comment)
		if len(want) == 0 {
			return diffRemove(st, comment)
		}
		return diffApply(st, comment, want)
	}
}

// Describe implements Backend: per family, the iptables-restore batch Apply
// would write now (none when the live rules already match), computed from
// the same iptables-save reading and difference as Apply, as a shell script.
func (b *iptBackend) Describe(p *Plan) (string, error) {
	if p.Bridge == "" {
		return "", nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	comment, err := iptComment(p.Network)
	if err != nil {
		return "", err
	}
	var batches [2]string
	err = b.eachFamily(p, func(f Family) error {
		t := &b.tools[f]
		if t.err != nil {
			if familyHasRules(p, f) {
				return t.err
			}
			return nil
		}
		st, err := b.read(t)
		if err != nil {
			return err
		}
		batches[f], _ = b.applyDiff(p, f, comment)(st).restoreInput()
		return nil
	})
	if err != nil {
		return "", err
	}
	return b.script(batches), nil
}

// script renders the batches of both families as a shell script feeding
// each to its iptables-restore.
func (b *iptBackend) script(batches [2]string) string {
	var w strings.Builder
	for f, in := range batches {
		if in != "" {
			w.WriteString(b.tools[f].name + "-restore -w --noflush <<'EOF'\n" + in + "EOF\n")
		}
	}
	return w.String()
}

// iptScriptValue logs the script of the batches only when the record is
// written.
type iptScriptValue struct {
	b       *iptBackend
	batches [2]string
}

func (v iptScriptValue) LogValue() slog.Value { return slog.StringValue(v.b.script(v.batches)) }

// Remove implements Backend: it deletes the network's rules of both
// families; when no other network has rules left in a family, it also
// deletes the jump rules and vnet's chains there.
func (b *iptBackend) Remove(p *Plan) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	start := time.Now()
	comment, err := iptComment(p.Network)
	if err != nil {
		return err
	}
	err = b.eachFamily(nil, func(f Family) error {
		_, err := b.sync(f, func(st *iptState) *iptDiff { return diffRemove(st, comment) }, false)
		return err
	})
	if err != nil {
		return err
	}
	b.log.Debug("firewall removed", "network", p.Network, "backend", "iptables", "took", time.Since(start))
	return nil
}

// Verify implements Backend: it reports missing chains, jump rules (also
// when duplicated or out of order) and network rules, the network's rules
// the plan lacks, rules out of order, and rules without a vnet comment in
// vnet's chains.
func (b *iptBackend) Verify(p *Plan) error {
	if p.Bridge == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	comment, err := iptComment(p.Network)
	if err != nil {
		return err
	}
	var diffs [2]*iptDiff
	err = b.eachFamily(p, func(f Family) error {
		t := &b.tools[f]
		want := b.wantRules(p, f, comment)
		if t.err != nil {
			if len(want) > 0 {
				return t.err
			}
			return nil
		}
		st, err := b.read(t)
		if err != nil {
			return err
		}
		if len(want) == 0 {
			diffs[f] = diffRemove(st, comment)
			// Removing the structure of a family nobody uses is tidying,
			// not drift of this network.
			diffs[f].missing = nil
		} else {
			diffs[f] = diffApply(st, comment, want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	drift := &DriftError{Network: p.Network}
	for f, d := range diffs {
		if d == nil {
			continue
		}
		for _, m := range d.missing {
			drift.Missing = append(drift.Missing, b.tools[f].name+" "+m)
		}
		for _, u := range d.unexpected {
			drift.Unexpected = append(drift.Unexpected, b.tools[f].name+" "+u)
		}
	}
	if drift.empty() {
		return nil
	}
	return drift
}

// eachFamily runs fn for IPv4 and IPv6 in parallel (each tool run is a
// process of some milliseconds), skipping a family where p (nil: any plan)
// has no rules and that is known to hold no vnet chain.
func (b *iptBackend) eachFamily(p *Plan, fn func(Family) error) error {
	var errs [2]error
	var wg sync.WaitGroup
	for _, f := range []Family{IPv4, IPv6} {
		if (p == nil || !familyHasRules(p, f)) && b.clean[f].Load() {
			continue
		}
		wg.Go(func() { errs[f] = fn(f) })
	}
	wg.Wait()
	return errors.Join(errs[:]...)
}

// wantRules returns the rules of the network in one family, per chain in
// live order, in iptables-save's form.
func (b *iptBackend) wantRules(p *Plan, f Family, comment string) map[tableChain][]string {
	want := map[tableChain][]string{}
	for c, tc := range iptChainOf {
		for _, r := range p.Live(f, c) {
			want[tc] = append(want[tc], iptSaveSpec(r, comment))
		}
	}
	if f == IPv4 && p.DHCPv4 && len(want) > 0 && !b.noCsum.Load() {
		tc := tableChain{"mangle", iptChainPostrtg}
		want[tc] = append(want[tc], iptChecksumSpec(p.Bridge, comment))
	}
	return want
}

// sync reads family f, computes the changes with diff and writes them in one
// batch. When the batch fails on the CHECKSUM target, the target is marked
// unavailable and the batch recomputed without it; any other failure (most
// likely a concurrent change by another tool) is retried from a fresh read.
// need says the family's tools are required. It returns the batch written
// ("" when nothing had to change).
func (b *iptBackend) sync(f Family, diff func(*iptState) *iptDiff, need bool) (string, error) {
	t := &b.tools[f]
	if t.err != nil {
		if need {
			return "", t.err
		}
		return "", nil
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		st, err := b.read(t)
		if err != nil {
			return "", err
		}
		d := diff(st)
		if len(d.ops) == 0 {
			b.clean[f].Store(!st.hasVnetChain())
			return "", nil
		}
		input, _ := d.restoreInput()
		b.clean[f].Store(false)
		if err = b.write(t, input); err == nil {
			b.clean[f].Store(d.teardown || (!st.hasVnetChain() && !strings.Contains(input, "-N ")))
			return input, nil
		}
		lastErr = err
		if strings.Contains(err.Error(), "CHECKSUM") && !b.noCsum.Swap(true) {
			// Only guests that drop DHCP replies with partial checksums
			// (vhost-net + e.g. FreeBSD) need the rule; failing every
			// network start for it would be worse, so warn once.
			b.log.Warn("iptables CHECKSUM target unavailable, skipping the DHCP checksum fix", "err", err)
		}
	}
	return "", lastErr
}

// read runs <family>-save and parses it.
func (b *iptBackend) read(t *iptTool) (*iptState, error) {
	out, err := b.run(t.save, "")
	if err != nil {
		return nil, err
	}
	st, err := parseIptSave(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.save, err)
	}
	return st, nil
}

// write feeds a batch to <family>-restore --noflush.
func (b *iptBackend) write(t *iptTool, input string) error {
	_, err := b.run(t.restore, input, "-w", "--noflush")
	if err == nil {
		return nil
	}
	// Point at the batch line iptables-restore complains about.
	if m := restoreLineRE.FindStringSubmatch(err.Error()); m != nil {
		if n, _ := strconv.Atoi(m[1]); n > 0 {
			if lines := strings.Split(input, "\n"); n <= len(lines) {
				err = fmt.Errorf("%w (batch line %d: %s)", err, n, lines[n-1])
			}
		}
	}
	return err
}

var restoreLineRE = regexp.MustCompile(`Error occurred at line: (\d+)`)

// run executes a tool (in the backend's namespace) with stdin and returns
// its standard output.
func (b *iptBackend) run(path, stdin string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := inNetNS(b.netns, cmd.Run)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// iptComment returns the comment of a network's rules: "vnet:" and the name,
// with the characters iptables-save would escape (quotes, backslash, control
// characters; and %) written as %XX, so the saved text is predictable. The
// comment match holds at most 255 bytes: a longer one is cut and ends in a
// hash of the full name.
func iptComment(network string) (string, error) {
	if network == "" {
		return "", errors.New("network without a name")
	}
	var b strings.Builder
	b.WriteString(iptCommentPrefix)
	for i := 0; i < len(network); i++ {
		c := network[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '\'' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	s := b.String()
	if len(s) > 255 {
		sum := sha256.Sum256([]byte(network))
		s = s[:255-17] + "~" + hex.EncodeToString(sum[:8])
	}
	return s, nil
}

// iptSaveSpec returns a rule as iptables-save prints it, after "-A CHAIN ":
// addresses, interfaces and protocol first, then the matches, the comment
// and the target. Apply writes exactly this text, so a live rule equals its
// plan rule when the strings are equal.
func iptSaveSpec(r Rule, comment string) string {
	var a []string
	src := func(p string) { a = append(a, "-s", p) }
	dst := func(p string) { a = append(a, "-d", p) }
	in := func(dev string) {
		if dev != "" {
			a = append(a, "-i", dev)
		}
	}
	out := func(dev string) {
		if dev != "" {
			a = append(a, "-o", dev)
		}
	}
	dport := func() {
		a = append(a, "-p", r.Proto, "-m", r.Proto, "--dport", strconv.Itoa(int(r.Port)))
	}
	reject := []string{"-j", "REJECT", "--reject-with", "icmp-port-unreachable"}
	if r.Family == IPv6 {
		reject[3] = "icmp6-port-unreachable"
	}
	accept := []string{"-j", "ACCEPT"}
	var target []string
	switch r.Type {
	case HostIn:
		in(r.Bridge)
		dport()
		target = accept
	case HostOut:
		out(r.Bridge)
		dport()
		target = accept
	case RejectOut:
		in(r.Bridge)
		target = reject
	case RejectIn:
		out(r.Bridge)
		target = reject
	case AllowCross:
		in(r.Bridge)
		out(r.Bridge)
		target = accept
	case AllowOut:
		src(r.Subnet.String())
		in(r.Bridge)
		out(r.Dev)
		target = accept
	case AllowRelatedIn:
		dst(r.Subnet.String())
		in(r.Dev)
		out(r.Bridge)
		a = append(a, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
		target = accept
	case AllowIn:
		dst(r.Subnet.String())
		in(r.Dev)
		out(r.Bridge)
		target = accept
	case Masquerade:
		src(r.Subnet.String())
		a = append(a, "!", "-d", r.Subnet.String())
		out(r.Dev)
		if r.Proto != "" {
			a = append(a, "-p", r.Proto)
		}
		target = iptNATTarget(r)
	case NoMasquerade:
		src(r.Subnet.String())
		dst(r.Dest.String())
		out(r.Dev)
		target = []string{"-j", "RETURN"}
	}
	a = append(a, "-m", "comment", "--comment", `"`+comment+`"`)
	return strings.Join(append(a, target...), " ")
}

// iptNATTarget is MASQUERADE [--to-ports a-b] or SNAT --to-source
// addr[-addr][:a-b] (IPv6 addresses in brackets, as iptables-save prints
// them).
func iptNATTarget(r Rule) []string {
	n := r.NAT
	ports := ""
	if n.PortStart != 0 || n.PortEnd != 0 {
		ports = strconv.Itoa(int(n.PortStart)) + "-" + strconv.Itoa(int(n.PortEnd))
	}
	if !n.AddrStart.IsValid() {
		if ports == "" {
			return []string{"-j", "MASQUERADE"}
		}
		return []string{"-j", "MASQUERADE", "--to-ports", ports}
	}
	addr := func(s string) string {
		if r.Family == IPv6 {
			return "[" + s + "]"
		}
		return s
	}
	to := addr(n.AddrStart.String())
	if n.AddrEnd.IsValid() {
		to += "-" + addr(n.AddrEnd.String())
	}
	if ports != "" {
		to += ":" + ports
	}
	return []string{"-j", "SNAT", "--to-source", to}
}

// iptChecksumSpec is libvirt's DHCPv4 checksum fix, in the mangle table.
func iptChecksumSpec(bridge, comment string) string {
	return "-o " + bridge + " -p udp -m udp --dport 68 -m comment --comment \"" + comment + "\" -j CHECKSUM --checksum-fill"
}

// iptState is the parsed iptables-save output of one family.
type iptState struct {
	// chains lists the chains of each table (built-in and user).
	chains map[string]map[string]bool
	// rules holds the rules of each chain, in order, as the text after
	// "-A CHAIN ".
	rules map[tableChain][]string
	// order lists each table's chains in the order they were declared.
	order map[string][]string
}

func (st *iptState) hasChain(tc tableChain) bool { return st.chains[tc.table][tc.chain] }

// hasVnetChain reports whether any table has a VNET_ chain.
func (st *iptState) hasVnetChain() bool {
	for _, chains := range st.chains {
		for c := range chains {
			if strings.HasPrefix(c, iptChainPrefix) {
				return true
			}
		}
	}
	return false
}

// parseIptSave parses iptables-save output (without counters).
func parseIptSave(out string) (*iptState, error) {
	st := &iptState{chains: map[string]map[string]bool{}, rules: map[tableChain][]string{}, order: map[string][]string{}}
	table := ""
	for i, line := range strings.Split(out, "\n") {
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '*':
			table = line[1:]
			if st.chains[table] == nil {
				st.chains[table] = map[string]bool{}
			}
		case line == "COMMIT":
			table = ""
		case table == "":
			return nil, fmt.Errorf("line %d outside a table: %q", i+1, line)
		case line[0] == ':':
			name, _, _ := strings.Cut(line[1:], " ")
			st.chains[table][name] = true
			st.order[table] = append(st.order[table], name)
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[3:], " ")
			tc := tableChain{table, chain}
			st.rules[tc] = append(st.rules[tc], spec)
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, line)
		}
	}
	return st, nil
}

// ruleComment returns the comment of a rule in iptables-save form.
func ruleComment(spec string) (string, bool) {
	const key = "-m comment --comment "
	i := strings.Index(spec, key)
	if i < 0 {
		return "", false
	}
	rest := spec[i+len(key):]
	if strings.HasPrefix(rest, `"`) {
		end := strings.Index(rest[1:], `"`)
		if end < 0 {
			return "", false
		}
		return rest[1 : end+1], true
	}
	c, _, _ := strings.Cut(rest, " ")
	return c, true
}

// iptDiff is the difference between the live state and the wanted one: the
// batch lines fixing it per table, and readable findings for Verify.
type iptDiff struct {
	ops                 map[string][]string
	missing, unexpected []string
	// teardown says the batch removes the whole structure.
	teardown bool
}

func (d *iptDiff) op(table string, line ...string) {
	if d.ops == nil {
		d.ops = map[string][]string{}
	}
	d.ops[table] = append(d.ops[table], line...)
}

// restoreInput returns the batch for iptables-restore and its number of
// command lines.
func (d *iptDiff) restoreInput() (string, int) {
	var b strings.Builder
	n := 0
	for _, t := range iptTables {
		if len(d.ops[t]) == 0 {
			continue
		}
		b.WriteString("*" + t + "\n")
		for _, l := range d.ops[t] {
			b.WriteString(l + "\n")
			n++
		}
		b.WriteString("COMMIT\n")
	}
	return b.String(), n
}

// diffApply computes what makes the live state hold the whole structure
// and exactly the wanted rules of the network with the given comment.
func diffApply(st *iptState, comment string, want map[tableChain][]string) *iptDiff {
	d := &iptDiff{}
	// Chains first: jump rules and rules need them.
	for _, tc := range iptOwnChains {
		if !st.hasChain(tc) {
			d.missing = append(d.missing, "chain "+tc.table+" "+tc.chain)
			d.op(tc.table, "-N "+tc.chain)
		}
	}
	for _, tc := range iptOwnChains {
		diffChain(d, st, tc, comment, want[tc])
	}
	for _, j := range iptJumps {
		diffJumps(d, st, j.builtin, j.targets)
	}
	return d
}

// diffChain makes one of vnet's chains hold want as the network's rules, at
// the top of the chain when they must be (re)inserted, and removes rules
// that no network owns.
func diffChain(d *iptDiff, st *iptState, tc tableChain, comment string, want []string) {
	id := tc.table + " " + tc.chain
	var ours []string
	for _, spec := range st.rules[tc] {
		c, ok := ruleComment(spec)
		switch {
		case ok && c == comment:
			ours = append(ours, spec)
		case !ok || !strings.HasPrefix(c, iptCommentPrefix):
			d.unexpected = append(d.unexpected, id+" rule without a vnet comment: "+spec)
			d.op(tc.table, "-D "+tc.chain+" "+spec)
		}
	}
	if equalStrings(ours, want) {
		return
	}
	left := map[string]int{}
	for _, s := range ours {
		left[s]++
	}
	missing := false
	for _, s := range want {
		if left[s] > 0 {
			left[s]--
			continue
		}
		missing = true
		d.missing = append(d.missing, id+" rule: "+s)
	}
	extra := false
	for _, s := range ours {
		if left[s] > 0 {
			left[s]--
			extra = true
			d.unexpected = append(d.unexpected, id+" rule: "+s)
		}
	}
	if !missing && !extra {
		d.unexpected = append(d.unexpected, id+": rules out of order")
	}
	for _, s := range ours {
		d.op(tc.table, "-D "+tc.chain+" "+s)
	}
	for i := len(want) - 1; i >= 0; i-- {
		d.op(tc.table, "-I "+tc.chain+" 1 "+want[i])
	}
}

// diffJumps makes a built-in chain jump to targets exactly once each, in
// this order. Jumps that are present and in order stay where they are, even
// below rules other tools inserted since: moving them back to the top would
// fight those tools forever.
func diffJumps(d *iptDiff, st *iptState, builtin tableChain, targets []string) {
	want := map[string]bool{}
	for _, t := range targets {
		want["-j "+t] = true
	}
	var live []string
	for _, spec := range st.rules[builtin] {
		if want[spec] {
			live = append(live, spec)
		}
	}
	id := builtin.table + " " + builtin.chain
	ok := len(live) == len(targets)
	for i := 0; ok && i < len(live); i++ {
		ok = live[i] == "-j "+targets[i]
	}
	if ok {
		return
	}
	seen := map[string]bool{}
	for _, s := range live {
		seen[s] = true
	}
	for _, t := range targets {
		if !seen["-j "+t] {
			d.missing = append(d.missing, id+" jump to "+t)
		}
	}
	if len(seen) == len(targets) {
		d.unexpected = append(d.unexpected, id+": vnet jumps duplicated or out of order")
	}
	for _, s := range live {
		d.op(builtin.table, "-D "+builtin.chain+" "+s)
	}
	for i := len(targets) - 1; i >= 0; i-- {
		d.op(builtin.table, "-I "+builtin.chain+" 1 -j "+targets[i])
	}
}

// diffRemove computes what deletes the network's rules. When no rule of
// another network is left in vnet's chains, it removes the structure
// instead: every rule jumping to a VNET_ chain, then the chains. The
// structure's removal is listed in missing (Verify ignores it).
func diffRemove(st *iptState, comment string) *iptDiff {
	return diffRemoveWhere(st, func(c string) bool { return c == comment })
}

// diffRemoveWhere is diffRemove for the networks whose comment drop
// selects.
func diffRemoveWhere(st *iptState, drop func(comment string) bool) *iptDiff {
	d := &iptDiff{}
	others := false
	for _, tc := range iptOwnChains {
		for _, spec := range st.rules[tc] {
			c, ok := ruleComment(spec)
			if !ok || !strings.HasPrefix(c, iptCommentPrefix) {
				continue
			}
			if drop(c) {
				d.unexpected = append(d.unexpected, tc.table+" "+tc.chain+" rule: "+spec)
				d.op(tc.table, "-D "+tc.chain+" "+spec)
			} else {
				others = true
			}
		}
	}
	if others {
		return d
	}
	unexpected := d.unexpected
	d = removeStructure(st, func(chain string) bool {
		for _, tc := range iptOwnChains {
			if tc.chain == chain {
				return true
			}
		}
		return false
	})
	d.unexpected = unexpected
	return d
}

// prune deletes the rules of every network whose plan is not in keep.
func (b *iptBackend) prune(keep []*Plan) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := map[string]bool{}
	for _, p := range keep {
		c, err := iptComment(p.Network)
		if err != nil {
			return err
		}
		kept[c] = true
	}
	var dropped [2]string
	err := b.eachFamily(nil, func(f Family) error {
		var err error
		dropped[f], err = b.sync(f, func(st *iptState) *iptDiff {
			return diffRemoveWhere(st, func(c string) bool { return !kept[c] })
		}, false)
		return err
	})
	if err != nil {
		return fmt.Errorf("prune iptables rules: %w", err)
	}
	if n := strings.Count(dropped[IPv4]+dropped[IPv6], "\n-"); n > 0 {
		b.log.Info("removed iptables rules of networks that are not active", "changes", n)
	}
	return nil
}

// removeStructure deletes, in every table, each rule jumping to a chain
// that owned selects, then flushes and deletes those chains.
func removeStructure(st *iptState, owned func(chain string) bool) *iptDiff {
	d := &iptDiff{teardown: true}
	for _, table := range iptTables {
		var chains []string
		for _, c := range st.order[table] {
			if owned(c) {
				chains = append(chains, c)
			}
		}
		if len(chains) == 0 {
			continue
		}
		var from []string
		for tc := range st.rules {
			if tc.table == table && !owned(tc.chain) {
				from = append(from, tc.chain)
			}
		}
		sort.Strings(from)
		for _, c := range from {
			for _, spec := range st.rules[tableChain{table, c}] {
				if to := jumpTarget(spec); to != "" && owned(to) {
					d.op(table, "-D "+c+" "+spec)
					d.missing = append(d.missing, table+" "+c+" jump to "+to)
				}
			}
		}
		for _, c := range chains {
			d.op(table, "-F "+c)
		}
		for _, c := range chains {
			d.op(table, "-X "+c)
			d.missing = append(d.missing, "chain "+table+" "+c)
		}
	}
	return d
}

// jumpTarget returns the chain a rule jumps or goes to ("-j X" / "-g X"),
// or "".
func jumpTarget(spec string) string {
	// The target comes last, after any comment (which may hold "-j").
	f := strings.Fields(spec)
	for i := len(f) - 2; i >= 0; i-- {
		if f[i] == "-j" || f[i] == "-g" {
			return f[i+1]
		}
	}
	return ""
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// familyHasRules reports whether the plan has rules of family f.
func familyHasRules(p *Plan, f Family) bool {
	for _, r := range p.Rules {
		if r.Family == f {
			return true
		}
	}
	return false
}
