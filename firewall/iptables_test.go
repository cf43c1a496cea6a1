package firewall

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// iptNS creates a namespace with bridges virbr0..virbr2 and a foreign rule
// in FORWARD, and an iptables backend working in it.
func iptNS(t testing.TB, tag string) (*netnstest.NS, Backend) {
	t.Helper()
	for _, tool := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	ns := netnstest.New(t, tag)
	for _, br := range []string{"virbr0", "virbr1", "virbr2"} {
		ns.MustRun("ip", "link", "add", br, "type", "bridge")
	}
	ns.MustRun("iptables", "-w", "-A", "FORWARD", "-i", "eth9", "-j", "DROP")
	h, err := ns.Handle()
	if err != nil {
		t.Fatalf("open netns: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	b, err := New("iptables", Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "iptables" {
		t.Fatalf("New(iptables) gave %s", b.Name())
	}
	return ns, b
}

var saveCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// saved returns iptables-save (tool "iptables") or ip6tables-save output
// without its dated comment lines and with zero counters.
func saved(ns *netnstest.NS, tool string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(ns.MustRun(tool+"-save"), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString(saveCounters.ReplaceAllString(l, "[0:0]"))
	}
	return b.String()
}

func withoutLines(s, substr string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, substr) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// Three networks sharing vnet's chains: NAT, routed with IPv6, isolated.
const (
	xmlRouted = `<network><name>routed</name><bridge name='virbr1'/><forward mode='route'/>
<ip address='10.20.0.1' prefix='24'><dhcp><range start='10.20.0.2' end='10.20.0.9'/></dhcp></ip>
<ip family='ipv6' address='fd00:20::1' prefix='64'><dhcp><range start='fd00:20::10' end='fd00:20::ff'/></dhcp></ip></network>`
	xmlIsolated = `<network><name>iso</name><bridge name='virbr2'/>
<ip address='10.30.0.1' prefix='24'><dhcp><range start='10.30.0.2' end='10.30.0.9'/></dhcp></ip></network>`
)

// TestIptablesNetns applies three networks' plans in a namespace and checks
// the result against golden files, idempotence, drift detection and repair
// (including `iptables -F`), and removal network by network.
func TestIptablesNetns(t *testing.T) {
	ns, b := iptNS(t, "ipt")
	nat, routed, iso := planOf(t, "nat-default.xml"), planOf(t, xmlRouted), planOf(t, xmlIsolated)
	plans := []*Plan{nat, routed, iso}
	applyAll := func(what string) {
		t.Helper()
		for _, p := range plans {
			if err := b.Apply(p); err != nil {
				t.Fatalf("%s: apply %s: %v", what, p.Network, err)
			}
		}
	}
	verifyAll := func(what string) {
		t.Helper()
		for _, p := range plans {
			if err := b.Verify(p); err != nil {
				t.Errorf("%s: verify %s: %v", what, p.Network, err)
			}
		}
	}

	applyAll("first apply")
	v4, v6 := saved(ns, "iptables"), saved(ns, "ip6tables")
	golden(t, filepath.Join("testdata", "netns-iptables.save"), v4)
	golden(t, filepath.Join("testdata", "netns-ip6tables.save"), v6)
	verifyAll("after apply")

	applyAll("second apply")
	if got := saved(ns, "iptables"); got != v4 {
		t.Errorf("second apply changed iptables:\n%s", got)
	}
	if got := saved(ns, "ip6tables"); got != v6 {
		t.Errorf("second apply changed ip6tables:\n%s", got)
	}

	// libvirt's failure: after a flush of the filter table its jump rules
	// never come back.
	ns.MustRun("iptables", "-w", "-F")
	ns.MustRun("iptables", "-w", "-A", "FORWARD", "-i", "eth9", "-j", "DROP")
	wantDrift(t, b.Verify(nat), "iptables filter FORWARD jump to VNET_FWX")
	wantDrift(t, b.Verify(iso), "iptables filter VNET_FWO rule: -i virbr2 -m comment --comment \"vnet:iso\" -j REJECT")
	applyAll("repair after flush")
	if got := saved(ns, "iptables"); got != v4 {
		t.Errorf("repair after flush gave\n%s\nwant\n%s", got, v4)
	}

	// Other kinds of drift: a lost rule, a stray rule, a duplicated jump,
	// a lost chain in another family.
	ns.MustRun("iptables", "-w", "-t", "nat", "-D", "VNET_PRT", "-s", "192.168.122.0/24", "!", "-d", "192.168.122.0/24",
		"-m", "comment", "--comment", "vnet:default", "-j", "MASQUERADE")
	wantDrift(t, b.Verify(nat), "missing iptables nat VNET_PRT rule: -s 192.168.122.0/24 ! -d 192.168.122.0/24 -m comment")
	ns.MustRun("iptables", "-w", "-I", "VNET_FWX", "-j", "ACCEPT")
	wantDrift(t, b.Verify(iso), "VNET_FWX rule without a vnet comment: -j ACCEPT")
	ns.MustRun("iptables", "-w", "-A", "FORWARD", "-j", "VNET_FWI")
	wantDrift(t, b.Verify(routed), "jumps duplicated or out of order")
	ns.MustRun("ip6tables", "-w", "-D", "INPUT", "-j", "VNET_INP")
	ns.MustRun("ip6tables", "-w", "-F", "VNET_INP")
	ns.MustRun("ip6tables", "-w", "-X", "VNET_INP")
	wantDrift(t, b.Verify(routed), "ip6tables chain filter VNET_INP")
	applyAll("repair")
	verifyAll("after repair")
	if got := saved(ns, "iptables"); got != v4 {
		t.Errorf("repair gave\n%s\nwant\n%s", got, v4)
	}
	if got := saved(ns, "ip6tables"); got != v6 {
		t.Errorf("repair gave\n%s\nwant\n%s", got, v6)
	}

	// Removing one network leaves the others' rules as they were; the
	// IPv6 structure goes with its only user.
	for i := 0; i < 2; i++ {
		if err := b.Remove(routed); err != nil {
			t.Fatalf("remove routed #%d: %v", i+1, err)
		}
	}
	if got, want := saved(ns, "iptables"), withoutLines(v4, `"vnet:routed"`); got != want {
		t.Errorf("after removing routed:\n%s\nwant\n%s", got, want)
	}
	if got := saved(ns, "ip6tables"); strings.Contains(got, "VNET_") {
		t.Errorf("ip6tables still has vnet chains after its last network went:\n%s", got)
	}
	wantDrift(t, b.Verify(routed), "iptables filter VNET_FWI rule: -d 10.20.0.0/24 -o virbr1")
	verifyAll2 := []*Plan{nat, iso}
	for _, p := range verifyAll2 {
		if err := b.Verify(p); err != nil {
			t.Errorf("verify %s after removing routed: %v", p.Network, err)
		}
	}

	for _, p := range []*Plan{nat, iso} {
		if err := b.Remove(p); err != nil {
			t.Fatalf("remove %s: %v", p.Network, err)
		}
	}
	got := saved(ns, "iptables")
	if strings.Contains(got, "VNET_") || strings.Contains(got, "vnet:") {
		t.Errorf("vnet chains or rules left after the last network went:\n%s", got)
	}
	if !strings.Contains(got, "-A FORWARD -i eth9 -j DROP\n") {
		t.Errorf("the foreign rule is gone:\n%s", got)
	}
}

// TestIptablesNATv6 applies a NAT network with IPv6 masquerading and a port
// range, and a network whose plan changes from IPv4+IPv6 to IPv4 only.
func TestIptablesNATv6(t *testing.T) {
	ns, b := iptNS(t, "ipt6")
	p := planOf(t, "nat-port-range-ipv6.xml")
	if err := b.Apply(p); err != nil {
		t.Fatal(err)
	}
	v6 := saved(ns, "ip6tables")
	golden(t, filepath.Join("testdata", "netns-ip6tables-nat.save"), v6)
	if err := b.Apply(p); err != nil {
		t.Fatal(err)
	}
	if got := saved(ns, "ip6tables"); got != v6 {
		t.Errorf("second apply changed ip6tables:\n%s", got)
	}
	if err := b.Verify(p); err != nil {
		t.Errorf("verify: %v", err)
	}

	// The same network without IPv6: Apply drops its IPv6 rules.
	p4 := planOf(t, "nat-default.xml")
	if err := b.Apply(p4); err != nil {
		t.Fatal(err)
	}
	if got := saved(ns, "ip6tables"); strings.Contains(got, "VNET_") {
		t.Errorf("IPv6 structure left after the plan lost IPv6:\n%s", got)
	}
	if err := b.Verify(p4); err != nil {
		t.Errorf("verify: %v", err)
	}
	wantDrift(t, b.Verify(p), "ip6tables chain filter VNET_INP")
	if err := b.Remove(p4); err != nil {
		t.Fatal(err)
	}
	if got := saved(ns, "iptables"); strings.Contains(got, "VNET_") {
		t.Errorf("vnet chains left:\n%s", got)
	}
}

// TestIptablesSNAT checks the SNAT forms (address range with ports, IPv6 in
// brackets) and a network name iptables-save would escape: Apply then Verify
// must agree with the saved text.
func TestIptablesSNAT(t *testing.T) {
	ns, b := iptNS(t, "iptsnat")
	p := planOf(t, `<network><name>it's "odd" 100%</name><bridge name='virbr0'/>
<forward mode='nat'><nat ipv6='yes'><address start='172.31.255.1' end='172.31.255.9'/><port start='20000' end='30000'/></nat></forward>
<ip address='10.55.0.1' prefix='24'><tftp root='/srv'/><dhcp><range start='10.55.0.2' end='10.55.0.9'/></dhcp></ip>
<ip family='ipv6' address='fd00:55::1' prefix='64'/></network>`)
	if err := b.Apply(p); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(p); err != nil {
		t.Errorf("verify: %v", err)
	}
	got := saved(ns, "iptables")
	for _, want := range []string{
		`-A VNET_PRT -s 10.55.0.0/24 ! -d 10.55.0.0/24 -p tcp -m comment --comment "vnet:it%27s %22odd%22 100%25" -j SNAT --to-source 172.31.255.1-172.31.255.9:20000-30000`,
		`--dport 69 -m comment`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("iptables-save lacks %q:\n%s", want, got)
		}
	}
	before := got + saved(ns, "ip6tables")
	if err := b.Apply(p); err != nil {
		t.Fatal(err)
	}
	if after := saved(ns, "iptables") + saved(ns, "ip6tables"); after != before {
		t.Errorf("second apply changed the rules:\n%s", after)
	}
}

// TestIptablesDataPlane checks that the rules work: a guest behind the
// bridge of a NAT network reaches an upstream host over TCP, which sees the
// host's address.
func TestIptablesDataPlane(t *testing.T) {
	host, b := iptNS(t, "ipdp")
	guest := netnstest.New(t, "ipdpg")
	up := netnstest.New(t, "ipdpu")
	host.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	host.MustRun("ip", "addr", "add", "192.168.122.1/24", "dev", "virbr0")
	host.MustRun("ip", "link", "set", "virbr0", "up")
	netnstest.Veth(t, host, "vnet0", guest, "eth0")
	host.MustRun("ip", "link", "set", "vnet0", "master", "virbr0")
	guest.MustRun("ip", "addr", "add", "192.168.122.50/24", "dev", "eth0")
	guest.MustRun("ip", "route", "add", "default", "via", "192.168.122.1")
	netnstest.Veth(t, host, "up0", up, "eth0")
	host.MustRun("ip", "addr", "add", "10.88.0.1/24", "dev", "up0")
	up.MustRun("ip", "addr", "add", "10.88.0.2/24", "dev", "eth0")

	if err := b.Apply(planOf(t, "nat-default.xml")); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := up.Do(func() (err error) { ln, err = net.Listen("tcp", "10.88.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	err := guest.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("guest connect upstream: %v", err)
	}
	select {
	case got := <-peer:
		if got != "10.88.0.1" {
			t.Errorf("upstream saw %s, want the host address 10.88.0.1", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("upstream accepted nothing")
	}
}

// TestNewAuto checks that auto picks nftables where it works.
func TestNewAuto(t *testing.T) {
	ns := netnstest.New(t, "auto")
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := New("auto", Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "nftables" {
		t.Errorf("auto picked %s, want nftables", b.Name())
	}
	if _, err := New("ebtables", Options{}); err == nil {
		t.Error("New(ebtables) succeeded")
	}
}

// TestCleanupOthers checks that each backend's leftovers go when the other
// one is active, and nothing else.
func TestCleanupOthers(t *testing.T) {
	ns, ipt := iptNS(t, "clean")
	ns.MustRun("nft", "add", "table", "ip", "other")
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	o := Options{NetNS: int(h)}
	nft, err := New("nftables", o)
	if err != nil {
		t.Fatal(err)
	}
	ns.MustRun("ip", "link", "set", "virbr0", "up")
	if err := nft.Apply(planOf(t, "nat-ipv6-masquerade.xml")); err != nil {
		t.Fatal(err)
	}
	iso := planOf(t, xmlIsolated)
	if err := ipt.Apply(iso); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("iptables", "-w", "-t", "nat", "-N", "VNET_OLD")
	ns.MustRun("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-j", "VNET_OLD")

	// The nftables tables are left by an earlier run: their owner is gone.
	if err := nft.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	if err := CleanupOthers("iptables", o); err != nil {
		t.Fatal(err)
	}
	tables := ns.MustRun("nft", "list", "tables")
	if strings.Contains(tables, "vnet-") || !strings.Contains(tables, "table ip other") {
		t.Errorf("nft tables after cleanup for iptables:\n%s", tables)
	}
	if err := ipt.Verify(iso); err != nil {
		t.Errorf("cleanup for iptables touched iptables: %v", err)
	}

	if err := CleanupOthers("nftables", o); err != nil {
		t.Fatal(err)
	}
	if got := saved(ns, "iptables"); strings.Contains(got, "VNET_") || !strings.Contains(got, "-A FORWARD -i eth9 -j DROP") {
		t.Errorf("iptables after cleanup for nftables:\n%s", got)
	}
	if err := CleanupOthers("nftables", o); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// BenchmarkIptablesApplyRemove measures Apply of the default NAT network on
// a clean namespace, a second Apply that finds nothing to change, and Remove.
func BenchmarkIptablesApplyRemove(b *testing.B) {
	for _, src := range []string{"nat-default.xml", "nat-ipv6-masquerade.xml"} {
		b.Run(strings.TrimSuffix(src, ".xml"), func(b *testing.B) { benchIptables(b, src) })
	}
}

func benchIptables(b *testing.B, src string) {
	_, be := iptNS(b, "iptbench")
	p := planOf(b, src)
	var apply, again, remove time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := be.Apply(p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := be.Apply(p); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := be.Remove(p); err != nil {
			b.Fatal(err)
		}
		apply += t1.Sub(t0)
		again += t2.Sub(t1)
		remove += time.Since(t2)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(apply), "ms/apply")
	b.ReportMetric(ms(again), "ms/reapply")
	b.ReportMetric(ms(remove), "ms/remove")
	fmt.Printf("iptables %s: apply %.1f ms, unchanged re-apply %.1f ms, remove %.1f ms\n", src, ms(apply), ms(again), ms(remove))
}

// TestIptablesDescribe pins the dry-run text of the default NAT network on
// a host without vnet's chains (fake tools: save prints nothing), and checks
// that an open network describes nothing.
func TestIptablesDescribe(t *testing.T) {
	dir := t.TempDir()
	save := filepath.Join(dir, "save")
	writeScript(t, save, "#!/bin/sh\nexit 0\n")
	b := &iptBackend{log: slogDiscard()}
	b.tools[IPv4] = iptTool{name: "iptables", save: save, restore: "/bin/false"}
	b.tools[IPv6] = iptTool{name: "ip6tables", save: save, restore: "/bin/false"}
	got, err := b.Describe(planOf(t, "nat-default.xml"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "describe-iptables-nat-default.txt"), got)
	if got, err := b.Describe(planOf(t, "nat-ipv6-masquerade.xml")); err != nil || !strings.Contains(got, "ip6tables-restore -w --noflush <<'EOF'\n*filter\n-N VNET_INP\n") {
		t.Errorf("no IPv6 batch: %v\n%s", err, got)
	}
	if got, err := b.Describe(planOf(t, `<network><name>o</name><bridge name='br9'/><forward mode='open'/><ip address='10.9.0.1' prefix='24'/></network>`)); got != "" || err != nil {
		t.Errorf("open network describes %q, %v", got, err)
	}
	// The caller names the network: the backend names only the tool.
	if err := b.Apply(planOf(t, "nat-default.xml")); err == nil || !strings.HasPrefix(err.Error(), "/bin/false -w --noflush: exit status 1") {
		t.Errorf("apply with a failing iptables-restore: %v", err)
	}
}

// TestIptablesDescribeMatchesApply checks that Describe prints what Apply
// then writes (recorded by its debug log): on a fresh namespace, for a second
// network sharing the chains, and for an unchanged network (nothing). The
// described batches, run with iptables-restore in another namespace, must
// give the same rules.
func TestIptablesDescribeMatchesApply(t *testing.T) {
	log := &stepsLog{}
	ns, _ := iptNS(t, "iptdesc")
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := New("iptables", Options{NetNS: int(h), Logger: slog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	nsCLI, bCLI := iptNS(t, "iptdescc")
	for i, p := range []*Plan{planOf(t, "nat-default.xml"), planOf(t, xmlRouted), planOf(t, "nat-default.xml")} {
		want, err := b.Describe(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Apply(p); err != nil {
			t.Fatal(err)
		}
		if got := log.last(t); got != want {
			t.Errorf("step %d: apply wrote\n%s\nDescribe said\n%s", i+1, got, want)
		}
		if i == 2 && want != "" {
			t.Errorf("unchanged network: Describe said\n%s", want)
		}
		script, err := bCLI.Describe(p)
		if err != nil {
			t.Fatal(err)
		}
		nsCLI.MustRun("sh", "-ec", script)
	}
	for _, tool := range []string{"iptables", "ip6tables"} {
		if got, want := saved(ns, tool), saved(nsCLI, tool); got != want {
			t.Errorf("%s: Apply gave\n%s\nDescribe's batches gave\n%s", tool, got, want)
		}
	}
}

// TestIptComment checks the escaping of network names in rule comments.
func TestIptComment(t *testing.T) {
	for name, want := range map[string]string{
		"default":      "vnet:default",
		`a "b" 'c' \%`: "vnet:a %22b%22 %27c%27 %5C%25",
		"tab\there":    "vnet:tab%09here",
	} {
		got, err := iptComment(name)
		if err != nil || got != want {
			t.Errorf("iptComment(%q) = %q, %v; want %q", name, got, err, want)
		}
		spec := iptSaveSpec(Rule{Type: RejectIn, Bridge: "br0"}, got)
		if c, ok := ruleComment(spec); !ok || c != want {
			t.Errorf("ruleComment(%q) = %q, %v", spec, c, ok)
		}
	}
	long, _ := iptComment(strings.Repeat("x", 300))
	if len(long) != 255 {
		t.Errorf("long comment has %d bytes, want 255", len(long))
	}
	if _, err := iptComment(""); err == nil {
		t.Error("empty name accepted")
	}
}

// TestIptDiffNoRoot checks the diff logic on a parsed iptables-save text:
// the state Apply produces needs no change; a foreign rule order in FORWARD
// above vnet's jumps is accepted.
func TestIptDiffNoRoot(t *testing.T) {
	p := planOf(t, "nat-default.xml")
	b := &iptBackend{}
	comment, _ := iptComment(p.Network)
	want := b.wantRules(p, IPv4, comment)
	st, err := parseIptSave("")
	if err != nil {
		t.Fatal(err)
	}
	d := diffApply(st, comment, want)
	input, n := d.restoreInput()
	if n != 7+7+19 {
		t.Errorf("first apply has %d lines, want 33 (chains, jumps, rules):\n%s", n, input)
	}
	// The state the batch yields, as iptables-save prints it.
	var save strings.Builder
	for _, table := range iptTables {
		save.WriteString("*" + table + "\n")
		for _, tc := range iptOwnChains {
			if tc.table == table {
				save.WriteString(":" + tc.chain + " - [0:0]\n")
			}
		}
		save.WriteString("-A FORWARD -i eth9 -j DROP\n")
		for _, j := range iptJumps {
			if j.builtin.table == table {
				for _, target := range j.targets {
					save.WriteString("-A " + j.builtin.chain + " -j " + target + "\n")
				}
			}
		}
		for _, tc := range iptOwnChains {
			if tc.table == table {
				for _, s := range want[tc] {
					save.WriteString("-A " + tc.chain + " " + s + "\n")
				}
			}
		}
		save.WriteString("COMMIT\n")
	}
	st, err = parseIptSave(save.String())
	if err != nil {
		t.Fatal(err)
	}
	if d := diffApply(st, comment, want); len(d.ops) != 0 || len(d.missing)+len(d.unexpected) != 0 {
		t.Errorf("applied state still differs: %+v", d)
	}
	d = diffRemove(st, comment)
	if in, _ := d.restoreInput(); !strings.Contains(in, "-X VNET_FWX") || !strings.Contains(in, "-D FORWARD -j VNET_FWX") {
		t.Errorf("removing the last network keeps the structure:\n%s", in)
	}
}

// TestIptablesNoChecksumTarget runs the backend on fake tools whose restore
// refuses the CHECKSUM target, as on a kernel without xt_CHECKSUM: Apply must
// succeed without the rule, once, and stop asking for it.
func TestIptablesNoChecksumTarget(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "batches")
	save := filepath.Join(dir, "save")
	restore := filepath.Join(dir, "restore")
	writeScript(t, save, "#!/bin/sh\nexit 0\n")
	writeScript(t, restore, `#!/bin/sh
in=$(cat)
case "$in" in *CHECKSUM*)
	cat >&2 <<'X'
iptables-restore v1.8.9 (nf_tables): Couldn't load target `+"`CHECKSUM'"+`:No such file or directory
Error occurred at line: 30
X
	exit 2;;
esac
printf '%s\n' "$in" >> `+log+`
`)
	b := &iptBackend{log: slogDiscard()}
	b.tools[IPv4] = iptTool{name: "iptables", save: save, restore: restore}
	b.tools[IPv6] = iptTool{name: "ip6tables", save: save, restore: restore}
	p := planOf(t, "nat-default.xml")
	if err := b.Apply(p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if !b.noCsum.Load() {
		t.Error("CHECKSUM not marked unavailable")
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "CHECKSUM") || !strings.Contains(string(data), "-j MASQUERADE") {
		t.Errorf("batches written:\n%s", data)
	}
	if want := b.wantRules(p, IPv4, "vnet:default"); len(want[tableChain{"mangle", iptChainPostrtg}]) != 0 {
		t.Error("the CHECKSUM rule is still wanted")
	}
}

func writeScript(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestPrune checks that Prune drops the rules of networks not kept, with
// both backends, and nothing else.
func TestPrune(t *testing.T) {
	ns, ipt := iptNS(t, "prune")
	nat, iso := planOf(t, "nat-default.xml"), planOf(t, xmlIsolated)
	for _, p := range []*Plan{nat, iso} {
		if err := ipt.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	before := saved(ns, "iptables")
	if err := Prune(ipt, []*Plan{iso}); err != nil {
		t.Fatal(err)
	}
	if got, want := saved(ns, "iptables"), withoutLines(before, `"vnet:default"`); got != want {
		t.Errorf("after pruning all but iso:\n%s\nwant\n%s", got, want)
	}
	if err := Prune(ipt, nil); err != nil {
		t.Fatal(err)
	}
	if got := saved(ns, "iptables"); strings.Contains(got, "VNET_") {
		t.Errorf("vnet chains left after pruning everything:\n%s", got)
	}

	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nft, err := New("nftables", Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	ns.MustRun("nft", "add", "table", "ip", "vnetother")
	ns.MustRun("nft", "add", "table", "ip", "vnet-gone") // of an earlier version
	if err := nft.Apply(nat); err != nil {
		t.Fatal(err)
	}
	if err := nft.Apply(iso); err != nil {
		t.Fatal(err)
	}
	if err := Prune(nft, []*Plan{nat}); err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("nft", "list", "tables"); !strings.HasSuffix(got, "table ip vnetother\ntable ip "+nftTable("virbr0")+"\n") {
		t.Errorf("nft tables after pruning all but nat:\n%s", got)
	}
	if got := ns.MustRun("nft", "list", "table", "ip", nftTable("virbr0")); !strings.Contains(got, "chain fwd-virbr0 {") ||
		strings.Contains(got, "virbr2") {
		t.Errorf("shared table after pruning all but nat:\n%s", got)
	}
	if err := Prune(nft, nil); err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("nft", "list", "tables"); !strings.HasSuffix(got, "table ip vnetother\n") {
		t.Errorf("nft tables after pruning everything:\n%s", got)
	}
}
