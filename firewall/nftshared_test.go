package firewall

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"vnet/internal/netnstest"
	"vnet/internal/testdata"
	netxml "vnet/xml"
)

// natXML is a NAT network on bridge br with subnet 10.<a>.<b>.0/24.
func natXML(name, br string, a, b int) string {
	return fmt.Sprintf(`<network><name>%s</name><bridge name='%s'/><forward mode='nat'/>
<ip address='10.%d.%d.1' prefix='24'><dhcp><range start='10.%d.%d.10' end='10.%d.%d.20'/></dhcp></ip></network>`,
		name, br, a, b, a, b, a, b)
}

// TestNftDispatchCovers checks the two properties the shared table's
// dispatch rests on (see the layout in nftrule.go), for every network of
// libvirt's firewall test data and every forward mode: each forward rule
// matches its bridge as input or output interface, and each NAT rule its
// subnet as source address.
func TestNftDispatchCovers(t *testing.T) {
	dir := testdata.Dir(t)
	files, err := filepath.Glob(filepath.Join(dir, "networkxml2firewalldata", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test networks: %v", err)
	}
	const index = 7
	rules := 0
	for _, f := range files {
		f, _ = filepath.Rel(dir, f)
		n, err := netxml.Parse(testdata.Read(t, dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		p, err := PlanFor(n)
		if err != nil {
			continue // a case of a plan error
		}
		for _, fam := range []Family{IPv4, IPv6} {
			for _, r := range p.forwardRules(fam) {
				rules++
				if !matchesBridge(chainRuleExprs(r, index), index) {
					t.Errorf("%s: forward rule %q matches neither iif nor oif %s", f, strings.Join(chainRuleArgs(r), " "), p.Bridge)
				}
			}
			for _, r := range p.natRules(fam) {
				rules++
				if !r.Subnet.IsValid() || !strings.Contains(strings.Join(nftRuleArgs(r), " "), fam.String()+" saddr "+r.Subnet.String()+" ") {
					t.Errorf("%s: NAT rule %q does not match its subnet as source", f, strings.Join(nftRuleArgs(r), " "))
				}
			}
		}
	}
	if rules < 100 {
		t.Errorf("only %d rules checked in %d networks", rules, len(files))
	}
}

// matchesBridge reports whether the expressions compare iif or oif with
// the bridge's index.
func matchesBridge(e []expr.Any, index uint32) bool {
	for i := 0; i+1 < len(e); i++ {
		m, ok := e[i].(*expr.Meta)
		c, ok2 := e[i+1].(*expr.Cmp)
		if ok && ok2 && (m.Key == expr.MetaKeyIIF || m.Key == expr.MetaKeyOIF) && c.Op == expr.CmpOpEq &&
			string(c.Data) == string(ifIndex(m.Key, index)[1].(*expr.Cmp).Data) {
			return true
		}
	}
	return false
}

// sharedNS is a router namespace with the nftables backend, guests on two
// NAT networks A (vbr-a, 10.61.1.0/24) and B (vbr-b, 10.61.2.0/24), and an
// upstream namespace that knows no route back to the guests: only
// masqueraded traffic gets answers.
type sharedNS struct {
	host, ga, gb, up *netnstest.NS
	b                Backend
	a, bp            *Plan
}

func newSharedNS(t testing.TB) *sharedNS {
	t.Helper()
	host, b := nsBackend(t, "fwsh")
	s := &sharedNS{host: host, b: b}
	host.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	s.up = netnstest.New(t, "fwshup")
	netnstest.Veth(t, host, "uplink", s.up, "eth0")
	host.MustRun("ip", "addr", "add", "203.0.113.1/24", "dev", "uplink")
	s.up.MustRun("ip", "addr", "add", "203.0.113.2/24", "dev", "eth0")
	for _, g := range []struct {
		guest **netnstest.NS
		br    string
		net   int
	}{{&s.ga, "vbr-a", 1}, {&s.gb, "vbr-b", 2}} {
		*g.guest = netnstest.New(t, "fwshg")
		host.MustRun("ip", "link", "add", g.br, "type", "bridge")
		host.MustRun("ip", "addr", "add", fmt.Sprintf("10.61.%d.1/24", g.net), "dev", g.br)
		host.MustRun("ip", "link", "set", g.br, "up")
		netnstest.Veth(t, host, g.br+"-p", *g.guest, "eth0")
		host.MustRun("ip", "link", "set", g.br+"-p", "master", g.br)
		(*g.guest).MustRun("ip", "addr", "add", fmt.Sprintf("10.61.%d.2/24", g.net), "dev", "eth0")
		(*g.guest).MustRun("ip", "route", "add", "default", "via", fmt.Sprintf("10.61.%d.1", g.net))
	}
	s.a = planOf(t, natXML("a", "vbr-a", 61, 1))
	s.bp = planOf(t, natXML("b", "vbr-b", 61, 2))
	return s
}

// reaches pings dst from ns once and reports whether it answered.
func reaches(ns *netnstest.NS, dst string) bool {
	_, err := ns.Run("ping", "-c", "1", "-W", "1", dst)
	return err == nil
}

// TestSharedTableTraffic checks the shared table's verdicts with real
// packets: a guest of A reaches upstream through NAT (its answers are
// established traffic into A); a new connection from A to B, or B to A, is
// rejected although each network's own chain lets its side through;
// removing B leaves A working; removing A, the last, deletes the table.
func TestSharedTableTraffic(t *testing.T) {
	s := newSharedNS(t)
	if reaches(s.ga, "203.0.113.2") {
		t.Fatal("upstream answered without NAT: the topology is wrong")
	}
	for _, p := range []*Plan{s.a, s.bp} {
		if err := s.b.Apply(p); err != nil {
			t.Fatalf("apply %s: %v", p.Network, err)
		}
	}
	if !reaches(s.ga, "203.0.113.2") || !reaches(s.gb, "203.0.113.2") {
		t.Fatalf("guests do not reach upstream through NAT:\n%s", s.host.MustRun("nft", "list", "ruleset"))
	}
	out, err := s.ga.Run("ping", "-c", "1", "-W", "1", "10.61.2.2")
	if err == nil || !strings.Contains(out, "Unreachable") {
		t.Errorf("A -> B: %v %s, want rejected (port unreachable)", err, out)
	}
	if reaches(s.gb, "10.61.1.2") {
		t.Error("B -> A: answered, want rejected")
	}
	// The rejects ran in the networks' chains: their counters moved.
	if got := s.host.MustRun("nft", "list", "chain", "ip", nftTable("vbr-b"), "fwd-vbr-b"); !regexp.MustCompile(`oif "vbr-b" counter packets [1-9]`).MatchString(got) {
		t.Errorf("no packet counted by B's reject of A's ping:\n%s", got)
	}

	if err := s.b.Remove(s.bp); err != nil {
		t.Fatal(err)
	}
	if !reaches(s.ga, "203.0.113.2") {
		t.Error("A does not reach upstream after B's removal")
	}
	if err := s.b.Verify(s.a); err != nil {
		t.Errorf("verify A after B's removal: %v", err)
	}
	if got := s.host.MustRun("nft", "list", "ruleset"); strings.Contains(got, "vbr-b") || strings.Contains(got, "10.61.2.") {
		t.Errorf("B's part left in the shared table:\n%s", got)
	}
	if err := s.b.Remove(s.a); err != nil {
		t.Fatal(err)
	}
	if got := s.host.MustRun("nft", "list", "tables"); got != "table ip other\n" {
		t.Errorf("tables after the last removal:\n%s", got)
	}
}

// TestSharedTableUpgrade: a network's table of an earlier version
// ("vnet-<bridge>", with its own base chains) is drift, and the converge
// deletes it in the batch that moves the network into the shared table.
func TestSharedTableUpgrade(t *testing.T) {
	ns, b := nsBackend(t, "fwup")
	p := planOf(t, "nat-default.xml")
	ns.MustRun("nft", "add table ip vnet-virbr0")
	ns.MustRun("nft", "add chain ip vnet-virbr0 forward { type filter hook forward priority 0; policy accept; }")
	ns.MustRun("nft", "add rule ip vnet-virbr0 forward iif virbr0 counter reject")
	if err := b.Apply(p); err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("nft", "list", "tables"); got != "table ip other\ntable ip "+nftTable(p.Bridge)+"\n" {
		t.Errorf("tables after converging over an earlier version's:\n%s", got)
	}
	ns.MustRun("nft", "add table ip vnet-virbr0")
	wantDrift(t, b.Verify(p), "unexpected table ip vnet-virbr0")
	if err := b.Remove(p); err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("nft", "list", "tables"); got != "table ip other\n" {
		t.Errorf("tables after remove:\n%s", got)
	}
}

// TestSharedTableManyNetworks applies 200 NAT networks: the forward and
// postrouting hooks hold one vnet base chain each (read back from the
// kernel), a check of all of them with one Pass is clean and reads the
// maps once, and removing them all leaves no vnet table.
func TestSharedTableManyNetworks(t *testing.T) {
	const n = 200
	ns, b := nsBackend(t, "fwmany")
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "link add vbr%d type bridge\nlink set vbr%d up\n", i, i)
	}
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create bridges: %v %s", err, out)
	}
	plans := make([]*Plan, n)
	for i := range n {
		plans[i] = planOf(t, natXML("n"+strconv.Itoa(i), "vbr"+strconv.Itoa(i), 70+i/250, i%250))
		if err := b.Apply(plans[i]); err != nil {
			t.Fatalf("apply network %d: %v", i, err)
		}
	}
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	hooks := map[string]int{}
	tables := map[string]bool{}
	regular := 0
	for _, ch := range chains {
		if !isBucketTable(ch.Table.Name) {
			continue
		}
		tables[ch.Table.Name] = true
		if ch.Hooknum == nil {
			regular++
			continue
		}
		hooks[map[nftables.ChainHook]string{*nftables.ChainHookForward: "forward", *nftables.ChainHookPostrouting: "postrouting"}[*ch.Hooknum]]++
	}
	if hooks["forward"] != len(tables) || hooks["postrouting"] != len(tables) || hooks["forward"] > nftBuckets || len(hooks) != 2 {
		t.Errorf("vnet base chains per hook with %d networks in %d tables: %v, want one forward and one postrouting per table, at most %d", n, len(tables), hooks, nftBuckets)
	}
	if len(tables) < 2 {
		t.Errorf("%d networks in %d bucket tables, want them spread", n, len(tables))
	}
	if regular != 2*n {
		t.Errorf("%d regular chains, want %d", regular, 2*n)
	}

	nb := b.(*nftBackend)
	nb.mu.Lock()
	nb.sh.valid = false // as after a change by someone else
	nb.mu.Unlock()
	pass := &Pass{}
	reads := 0
	for _, p := range plans {
		before := nb.sh
		if err := nb.VerifyPass(p, pass); err != nil {
			t.Fatalf("verify %s: %v", p.Network, err)
		}
		if fmt.Sprintf("%p", nb.sh.fam[IPv4]) != fmt.Sprintf("%p", before.fam[IPv4]) {
			reads++
		}
	}
	if reads != 1 {
		t.Errorf("a pass over %d networks read the shared tables %d times, want 1", n, reads)
	}
	for _, p := range plans {
		if err := b.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if got := ns.MustRun("nft", "list", "tables"); got != "table ip other\n" {
		t.Errorf("tables after removing every network:\n%s", got)
	}
}

// TestPrefixInterval checks the interval keys of prefixes, up to the last
// address (no end element).
func TestPrefixInterval(t *testing.T) {
	for _, c := range []struct{ p, start, end string }{
		{"10.0.0.0/24", "10.0.0.0", "10.0.1.0"},
		{"10.0.255.0/24", "10.0.255.0", "10.1.0.0"},
		{"255.255.255.0/24", "255.255.255.0", ""},
		{"2001:db8::/64", "2001:db8::", "2001:db8:0:1::"},
	} {
		s, e := prefixInterval(netip.MustParsePrefix(c.p))
		gs, _ := netip.AddrFromSlice(s)
		ge := ""
		if e != nil {
			a, _ := netip.AddrFromSlice(e)
			ge = a.String()
		}
		if gs.String() != c.start || ge != c.end {
			t.Errorf("%s: [%s, %s), want [%s, %s)", c.p, gs, ge, c.start, c.end)
		}
		if got := (natElem{start: s, end: e}).text(); got != c.p {
			t.Errorf("%s: text %s", c.p, got)
		}
	}
}

// BenchmarkForwardRTT measures the per-packet cost of the firewall on the
// forward path: the mean round trip of a guest of network A pinging
// upstream through NAT (500 pings back to back), with A alone, with
// VNET_BENCH_NETWORKS (default 1000) more NAT networks in the shared table,
// and, for comparison, with as many tables more of the earlier layout (one
// table per network with a base chain on the forward hook, whose rules
// match no packet of A; at most 1000, as the kernel takes at most 1024 base
// chains per hook): the per-packet cost an earlier version paid.
// Run with -benchtime=1x: the setup is the measurement.
func BenchmarkForwardRTT(b *testing.B) {
	n := 1000
	if v := os.Getenv("VNET_BENCH_NETWORKS"); v != "" {
		fmt.Sscan(v, &n)
	}
	s := newSharedNS(b)
	if err := s.b.Apply(s.a); err != nil {
		b.Fatal(err)
	}
	avg := regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)
	rtt := func() float64 {
		out := s.ga.MustRun("ping", "-c", "500", "-i", "0", "-q", "203.0.113.2")
		m := avg.FindStringSubmatch(out)
		if m == nil {
			b.Fatalf("no rtt in %s", out)
		}
		ms, _ := strconv.ParseFloat(m[1], 64)
		return ms * 1000
	}
	alone := rtt()

	var links, legacy strings.Builder
	for i := range n {
		fmt.Fprintf(&links, "link add vbr%d type bridge\nlink set vbr%d up\n", i, i)
		if i >= 1000 {
			continue
		}
		fmt.Fprintf(&legacy, "add table ip vnet-old%d\nadd chain ip vnet-old%d forward { type filter hook forward priority 0; policy accept; }\n", i, i)
		fmt.Fprintf(&legacy, "add rule ip vnet-old%d forward iifname vbr%d counter reject\nadd rule ip vnet-old%d forward oifname vbr%d counter reject\n", i, i, i, i)
	}
	cmd := s.host.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(links.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("create bridges: %v %s", err, out)
	}
	t0 := time.Now()
	for i := range n {
		if err := s.b.Apply(planOf(b, natXML("n"+strconv.Itoa(i), "vbr"+strconv.Itoa(i), 80+i/250, i%250))); err != nil {
			b.Fatalf("apply network %d: %v", i, err)
		}
	}
	applied := time.Since(t0)
	shared := rtt()
	cmd = s.host.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(legacy.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("add tables of the earlier layout: %v %s", err, out)
	}
	old := rtt()
	fmt.Printf("forward rtt: A alone %.1f µs; with %d more networks in the shared table %.1f µs (applied in %.1f s); plus %d tables of the earlier layout %.1f µs\n",
		alone, n, shared, applied.Seconds(), min(n, 1000), old)
	b.ReportMetric(alone, "µs/rtt-alone")
	b.ReportMetric(shared, "µs/rtt-shared")
	b.ReportMetric(old, "µs/rtt-earlier-layout")
}

// TestSharedTableOverlap: the map subnets cannot hold overlapping subnets,
// so a NAT network whose subnet overlaps an applied one's in the same bucket
// table fails to converge (the daemon refuses such a start earlier) and
// changes nothing. Bridges vbr-o3 and virbr0 share a bucket; networks in
// different buckets are not checked here.
func TestSharedTableOverlap(t *testing.T) {
	ns, b := nsBackend(t, "fwovl")
	if nftTable("vbr-o3") != nftTable("virbr0") {
		t.Fatal("vbr-o3 and virbr0 are in different buckets")
	}
	ns.MustRun("ip", "link", "add", "vbr-o3", "type", "bridge")
	if err := b.Apply(planOf(t, natXML("a", "virbr0", 62, 0))); err != nil {
		t.Fatal(err)
	}
	before := ns.MustRun("nft", "list", "ruleset")
	wide := planOf(t, strings.Replace(natXML("o", "vbr-o3", 62, 0), "prefix='24'", "prefix='16'", 1))
	if err := b.Apply(wide); err == nil {
		t.Errorf("apply of an overlapping subnet succeeded:\n%s", ns.MustRun("nft", "list", "ruleset"))
	} else if after := ns.MustRun("nft", "list", "ruleset"); after != before {
		t.Errorf("a failed apply changed the ruleset:\n%s", after)
	} else {
		t.Logf("overlap refused: %v", err)
	}
}
