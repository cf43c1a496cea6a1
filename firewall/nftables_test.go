package firewall

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"vnet/internal/netnstest"
	"vnet/internal/testdata"
	netxml "vnet/xml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// nsBackend creates a namespace with bridge virbr0 and a foreign table, and an
// nftables backend working in it.
func nsBackend(t testing.TB, tag string) (*netnstest.NS, Backend) {
	t.Helper()
	return nsBackendLog(t, tag, nil)
}

// nsBackendLog is nsBackend with the backend logging to log.
func nsBackendLog(t testing.TB, tag string, log *slog.Logger) (*netnstest.NS, Backend) {
	t.Helper()
	for _, tool := range []string{"nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs the %s tool", tool)
		}
	}
	ns := netnstest.New(t, tag)
	ns.MustRun("ip", "link", "add", "virbr0", "type", "bridge")
	ns.MustRun("ip", "link", "set", "virbr0", "up")
	ns.MustRun("nft", "add", "table", "ip", "other")
	ns.MustRun("nft", "add", "chain", "ip", "other", "guard", "{ type filter hook forward priority 10; policy accept; }")
	h, err := ns.Handle()
	if err != nil {
		t.Fatalf("open netns: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	b, err := New("nftables", Options{NetNS: int(h), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.(io.Closer).Close() })
	return ns, b
}

// tamper changes the backend's tables behind its back, as drift: with owned
// tables only the owner socket may, so it goes through the backend's own
// writer.
func tamper(t testing.TB, b Backend, build func(c *nftables.Conn)) {
	t.Helper()
	if err := b.(*nftBackend).write(build); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

func owned(b Backend) bool { return b.(*nftBackend).owner != nil }

// ownerMarks are what `nft list` prints for an owned table: the owner's
// program name and the flags line (nft 1.0.6 prints "flags owner"; newer
// ones "flags owner,persist").
var ownerMarks = regexp.MustCompile(`(?m)( # progname \S+$|^\tflags owner.*\n\n?)`)

// unowned strips ownerMarks from a listing.
func unowned(s string) string { return ownerMarks.ReplaceAllString(s, "") }

// planOf parses a network XML from libvirt's firewall test data, or inline XML.
func planOf(t testing.TB, src string) *Plan {
	t.Helper()
	var data []byte
	if strings.HasPrefix(src, "<") {
		data = []byte(src)
	} else {
		data = testdata.Read(t, testdata.Dir(t), "networkxml2firewalldata/"+src)
	}
	n, err := netxml.Parse(data)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	p, err := PlanFor(n)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p
}

const foreignOnly = "table ip other {\n\tchain guard {\n\t\ttype filter hook forward priority filter + 10; policy accept;\n\t}\n}\n"

// TestNftablesNetns applies real plans in a throwaway namespace and checks
// the ruleset against golden files, idempotence, drift detection, repair and
// removal that spares foreign tables.
func TestNftablesNetns(t *testing.T) {
	cases := []struct{ name, src string }{
		{"nat", "nat-default.xml"},
		{"nat-ipv6", "nat-port-range-ipv6.xml"},
		{"nat-dev", "forward-dev.xml"},
		{"route", "route-default.xml"},
		{"isolated", "isolated.xml"},
		{"snat", `<network><name>snat</name><bridge name='virbr0'/>
<forward mode='nat'><nat><address start='172.31.255.1' end='172.31.255.9'/><port start='20000' end='30000'/></nat></forward>
<ip address='10.55.0.1' netmask='255.255.255.0'><tftp root='/srv'/><dhcp><range start='10.55.0.2' end='10.55.0.9'/></dhcp></ip></network>`},
		{"open", `<network><name>open</name><bridge name='virbr0'/><forward mode='open'/><ip address='10.9.0.1' prefix='24'/></network>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns, b := nsBackend(t, "fw")
			p := planOf(t, c.src)

			if err := b.Apply(p); err != nil {
				t.Fatalf("apply: %v", err)
			}
			first := ns.MustRun("nft", "list", "ruleset")
			// The golden files hold the rules; ownership is checked here.
			golden(t, filepath.Join("testdata", "netns-"+c.name+".nft"), unowned(first))
			if want := owned(b) && !p.Empty(); strings.Contains(first, "\tflags owner") != want {
				t.Errorf("owned table listed: %v, want %v:\n%s", !want, want, first)
			}
			if err := b.Verify(p); err != nil {
				t.Fatalf("verify after apply: %v", err)
			}

			if err := b.Apply(p); err != nil {
				t.Fatalf("apply again: %v", err)
			}
			if again := ns.MustRun("nft", "list", "ruleset"); again != first {
				t.Errorf("second apply changed the ruleset:\n%s", again)
			}

			if !p.Empty() {
				table := &nftables.Table{Name: nftTable("virbr0"), Family: nftables.TableFamilyIPv4}
				fwd := &nftables.Chain{Name: nftFwdChain("virbr0"), Table: table}
				base := &nftables.Chain{Name: nftForward, Table: table}
				acceptAll := &nftables.Rule{Table: table, Chain: fwd, Exprs: []expr.Any{accept()}}
				fwdElem := func(c *nftables.Conn) {
					_ = c.SetDeleteElements(fwdMap(table), []nftables.SetElement{{Key: ifnameKey("virbr0")}})
				}
				tamper(t, b, func(c *nftables.Conn) { c.DelTable(table) })
				wantDrift(t, b.Verify(p), "table ip "+nftTable("virbr0"))
				if err := b.Apply(p); err != nil {
					t.Fatalf("repair: %v", err)
				}
				tamper(t, b, func(c *nftables.Conn) { c.FlushChain(fwd) })
				wantDrift(t, b.Verify(p), "chain fwd-virbr0 rule: iif virbr0 oif virbr0 counter return")
				tamper(t, b, func(c *nftables.Conn) { c.AddRule(acceptAll) })
				if err := b.Apply(p); err != nil {
					t.Fatalf("repair: %v", err)
				}
				tamper(t, b, func(c *nftables.Conn) { c.AddRule(acceptAll) })
				wantDrift(t, b.Verify(p), "rule handle")
				// The shared layout: a dispatch rule, a map element, the
				// network's chain.
				tamper(t, b, func(c *nftables.Conn) { c.FlushChain(base) })
				wantDrift(t, b.Verify(p), "chain forward rules: iifname vmap @bridges; oifname vmap @bridges")
				if err := b.Apply(p); err != nil {
					t.Fatalf("repair: %v", err)
				}
				tamper(t, b, fwdElem)
				wantDrift(t, b.Verify(p), `map bridges element "virbr0" : jump fwd-virbr0`)
				tamper(t, b, func(c *nftables.Conn) { c.FlushChain(fwd); c.DelChain(fwd) })
				wantDrift(t, b.Verify(p), "chain fwd-virbr0")
				if err := b.Apply(p); err != nil {
					t.Fatalf("repair: %v", err)
				}
				// Absent when the kernel has no csum action (no fix applied).
				_, _ = ns.Run("tc", "qdisc", "del", "dev", "virbr0", "root")
				if err := b.Apply(p); err != nil {
					t.Fatalf("repair: %v", err)
				}
				if err := b.Verify(p); err != nil {
					t.Fatalf("verify after repair: %v", err)
				}
				// Re-created chains are listed last: compare the lines.
				if again := ns.MustRun("nft", "list", "ruleset"); sortedLines(again) != sortedLines(first) {
					t.Errorf("repair gave a different ruleset:\n%s", again)
				}
			}

			for i := 0; i < 2; i++ {
				if err := b.Remove(p); err != nil {
					t.Fatalf("remove #%d: %v", i+1, err)
				}
			}
			if got := ns.MustRun("nft", "list", "ruleset"); got != foreignOnly {
				t.Errorf("after remove, ruleset is\n%s\nwant only the foreign table", got)
			}
			if err := b.Verify(p); !p.Empty() {
				var d *DriftError
				if !errors.As(err, &d) {
					t.Errorf("verify after remove: got %v, want a *DriftError", err)
				}
			} else if err != nil {
				t.Errorf("verify of an empty plan: %v", err)
			}
		})
	}
}

// TestApplyReplacesFamilies checks that re-applying a changed plan replaces
// the network's part: the ip6 table of the old plan goes when the new one has
// no IPv6 (it held no other network).
func TestApplyReplacesFamilies(t *testing.T) {
	ns, b := nsBackend(t, "fwrep")
	if err := b.Apply(planOf(t, "nat-ipv6-masquerade.xml")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ns.MustRun("nft", "list", "tables"), "table ip6 vnet") {
		t.Fatal("no ip6 table after applying an IPv6 plan")
	}
	p := planOf(t, "nat-default.xml")
	if err := b.Apply(p); err != nil {
		t.Fatal(err)
	}
	if got := ns.MustRun("nft", "list", "tables"); got != "table ip other\ntable ip "+nftTable(p.Bridge)+"\n" {
		t.Errorf("tables after re-apply:\n%s", got)
	}
	if err := b.Verify(p); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// TestChecksumFixLikeTc checks that the netlink-built checksum fix is the one
// libvirt's tc commands install.
func TestChecksumFixLikeTc(t *testing.T) {
	nsTc, _ := nsBackend(t, "fwtc")
	for _, c := range (tcSteps{addQdisc: true, addFilter: true}).commands("virbr0") {
		if out, err := nsTc.Run(strings.Fields(c)...); err != nil {
			if strings.Contains(out, "Failed to load TC action module") {
				t.Skip("kernel has no tc csum action (CONFIG_NET_ACT_CSUM)")
			}
			t.Fatal(err)
		}
	}
	nsVnet, b := nsBackend(t, "fwtc")
	if err := b.Apply(planOf(t, "nat-default.xml")); err != nil {
		t.Fatal(err)
	}
	for _, show := range [][]string{
		{"tc", "qdisc", "show", "dev", "virbr0"},
		{"tc", "filter", "show", "dev", "virbr0"},
	} {
		want := nsTc.MustRun(show...)
		if got := nsVnet.MustRun(show...); got != want {
			t.Errorf("%s:\ngot\n%s\nwant (tc)\n%s", strings.Join(show, " "), got, want)
		}
	}
}

// TestBridgeMissing checks the errors when the bridge does not exist.
func TestBridgeMissing(t *testing.T) {
	ns, b := nsBackend(t, "fwnobr")
	ns.MustRun("ip", "link", "del", "virbr0")
	p := planOf(t, "nat-default.xml")
	// The caller names the network: the backend names only the bridge.
	if err := b.Apply(p); err == nil || !strings.HasPrefix(err.Error(), `bridge "virbr0": look up: `) {
		t.Errorf("apply without bridge: %v", err)
	}
	if _, err := b.Describe(p); err != nil {
		t.Errorf("describe before the bridge exists: %v", err)
	}
	wantDrift(t, b.Verify(p), "bridge virbr0")
	if err := b.Remove(p); err != nil {
		t.Errorf("remove without bridge: %v", err)
	}
}

// sortedLines is s with its lines sorted.
func sortedLines(s string) string {
	l := strings.Split(s, "\n")
	slices.Sort(l)
	return strings.Join(l, "\n")
}

func wantDrift(t *testing.T, err error, substr string) {
	t.Helper()
	var d *DriftError
	if !errors.As(err, &d) {
		t.Fatalf("verify: got %v, want a *DriftError", err)
	}
	if !strings.Contains(d.Error(), substr) {
		t.Errorf("drift %q does not mention %q", d.Error(), substr)
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\ngot\n%s\nwant\n%s", path, got, want)
	}
}

// BenchmarkApplyRemove measures one Apply and one Remove of the default NAT
// network in a namespace.
func BenchmarkApplyRemove(b *testing.B) {
	_, be := nsBackend(b, "fwbench")
	p := planOf(b, "nat-default.xml")
	var apply, remove time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := be.Apply(p); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := be.Remove(p); err != nil {
			b.Fatal(err)
		}
		apply += t1.Sub(t0)
		remove += time.Since(t1)
	}
	b.ReportMetric(float64(apply.Microseconds())/float64(b.N), "µs/apply")
	b.ReportMetric(float64(remove.Microseconds())/float64(b.N), "µs/remove")
}

// stepsLog records the "steps" of every "firewall applied" debug record.
type stepsLog struct {
	mu    sync.Mutex
	steps []string
}

func (l *stepsLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *stepsLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "firewall applied" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "steps" {
			l.mu.Lock()
			l.steps = append(l.steps, a.Value.Resolve().String())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *stepsLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *stepsLog) WithGroup(string) slog.Handler      { return l }

// last returns the steps of the latest Apply.
func (l *stepsLog) last(t *testing.T) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.steps) == 0 {
		t.Fatal("Apply logged no steps")
	}
	return l.steps[len(l.steps)-1]
}

// TestDescribeMatchesApply checks that Describe prints what Apply then does:
// in one namespace Describe, then Apply, whose debug log records the steps it
// ran, twice (the second time the checksum fix, if any, is in place); in
// another, Describe's script is run with the nft and tc tools. The rulesets
// and tc state must be the same, and Verify must accept the tools' result.
func TestDescribeMatchesApply(t *testing.T) {
	for _, src := range []string{"nat-default.xml", "nat-port-range-ipv6.xml", "forward-dev.xml", "route-default.xml", "isolated.xml", "nat-tftp.xml",
		`<network><name>open</name><bridge name='virbr0'/><forward mode='open'/><ip address='10.9.0.1' prefix='24'/></network>`} {
		name := strings.TrimSuffix(src, ".xml")
		if strings.HasPrefix(src, "<") {
			name = src[strings.Index(src, "<name>")+6 : strings.Index(src, "</name>")]
		}
		t.Run(name, func(t *testing.T) {
			p := planOf(t, src)
			log := &stepsLog{}
			nsAPI, bAPI := nsBackendLog(t, "fwapi", slog.New(log))
			for i := 0; i < 2; i++ {
				want, err := bAPI.Describe(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := bAPI.Apply(p); err != nil {
					t.Fatal(err)
				}
				if got := log.last(t); got != want {
					t.Errorf("apply #%d ran\n%s\nDescribe said\n%s", i+1, got, want)
				}
			}

			// The nft tool of Debian 12 knows neither table ownership nor
			// "destroy": describe for plain tables there.
			nsCLI, _ := nsBackend(t, "fwcli")
			h, err := nsCLI.Handle()
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			bCLI := &nftBackend{log: slogDiscard(), netns: int(h), noCsum: bAPI.(*nftBackend).noCsum}
			script, err := bCLI.Describe(p)
			if err != nil {
				t.Fatal(err)
			}
			nsCLI.MustRun("sh", "-ec", script)
			want := nsCLI.MustRun("nft", "list", "ruleset")
			if got := unowned(nsAPI.MustRun("nft", "list", "ruleset")); got != want {
				t.Errorf("Apply gave\n%s\nDescribe's script gave\n%s", got, want)
			}
			for _, show := range [][]string{{"tc", "qdisc", "show", "dev", "virbr0"}, {"tc", "filter", "show", "dev", "virbr0"}} {
				if got, want := nsAPI.MustRun(show...), nsCLI.MustRun(show...); got != want {
					t.Errorf("%s: Apply gave\n%s\nDescribe's script gave\n%s", strings.Join(show, " "), got, want)
				}
			}
			if err := bCLI.Verify(p); err != nil {
				t.Errorf("verify of the script's result: %v", err)
			}
		})
	}
}

// TestOwnedTables checks the owned tables: other processes cannot change or
// delete them, a foreign ruleset flush leaves them, and when the owner goes
// (daemon restart) the next backend adopts them without replacing anything,
// or deletes them (Prune, CleanupOthers).
func TestOwnedTables(t *testing.T) {
	ns, b := nsBackend(t, "fwown")
	if !owned(b) {
		t.Skip("the kernel cannot own nftables tables (needs 6.9)")
	}
	ns.MustRun("ip", "link", "add", "virbr2", "type", "bridge")
	nat, iso := planOf(t, "nat-default.xml"), planOf(t, xmlIsolated)
	for _, p := range []*Plan{nat, iso} {
		if err := b.Apply(p); err != nil {
			t.Fatal(err)
		}
	}
	before := ns.MustRun("nft", "-a", "list", "ruleset")
	for _, cmd := range [][]string{
		{"nft", "delete", "table", "ip", nftTable("virbr0")},
		{"nft", "flush", "chain", "ip", nftTable("virbr0"), "fwd-virbr0"},
		{"nft", "add", "rule", "ip", nftTable("virbr0"), "fwd-virbr0", "accept"},
		{"nft", "delete", "element", "ip", nftTable("virbr0"), "bridges", `{ "virbr0" }`},
		{"nft", "add", "table", "ip", nftTable("virbr0")},
	} {
		out, err := ns.Run(cmd...)
		if err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("%s: %v %s, want refused (EPERM)", strings.Join(cmd, " "), err, out)
		}
	}
	ns.MustRun("nft", "flush", "ruleset")
	if got := ns.MustRun("nft", "-a", "list", "ruleset"); got != strings.Replace(before, foreignAnnotated(ns, before), "", 1) {
		t.Errorf("after a foreign flush ruleset:\n%s\nwant our tables untouched, the foreign one gone", got)
	}
	if err := b.Verify(nat); err != nil {
		t.Errorf("verify after flush ruleset: %v", err)
	}
	before = ns.MustRun("nft", "-a", "list", "ruleset")

	// The owner goes: the tables stay, orphaned, and keep their rules.
	if err := b.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	orphaned := ns.MustRun("nft", "-a", "list", "ruleset")
	if strings.Contains(orphaned, "progname") || !strings.Contains(orphaned, "masquerade") {
		t.Errorf("orphaned tables:\n%s", orphaned)
	}
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b2, err := New("nftables", Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.(io.Closer).Close()
	// Same handles: adopted, not re-created.
	if got := ns.MustRun("nft", "-a", "list", "ruleset"); got != before {
		t.Errorf("after adoption:\n%s\nwant as before the restart:\n%s", got, before)
	}
	if d := nftDrift(t, b2.Verify(nat)); len(d) > 0 {
		t.Errorf("verify after adoption: %v", d)
	}
	if err := Prune(b2, []*Plan{nat}); err != nil {
		t.Fatalf("prune adopted tables: %v", err)
	}
	if err := b2.Remove(nat); err != nil {
		t.Fatalf("remove adopted table: %v", err)
	}
	if got := ns.MustRun("nft", "list", "ruleset"); got != "" {
		t.Errorf("after prune and remove:\n%s", got)
	}

	// A plain table (from a vnet without owned tables) is drift: Apply
	// re-creates it owned.
	ns.MustRun("nft", "-f", filepath.Join("testdata", "netns-nat.nft"))
	wantDrift(t, b2.Verify(nat), "ownership")
	if err := b2.Apply(nat); err != nil {
		t.Fatal(err)
	}
	if d := nftDrift(t, b2.Verify(nat)); len(d) > 0 {
		t.Errorf("verify after re-applying a plain table: %v", d)
	}

	// A table some other live process owns is refused, by name.
	b3, err := New("nftables", Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	defer b3.(io.Closer).Close()
	err = b3.Apply(nat)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "ip "+nftTable(nat.Bridge)+": operation not permitted") {
		t.Errorf("apply over a table another process owns: %v", err)
	}
}

// foreignAnnotated returns the foreign table "other" of an `nft -a` listing.
func foreignAnnotated(ns *netnstest.NS, listing string) string {
	i := strings.Index(listing, "table ip other")
	j := strings.Index(listing[i:], "\n}\n")
	return listing[i : i+j+3]
}

// nftDrift returns the nftables items of a Verify result: a fresh backend
// reports the tc checksum fix missing where the kernel has no csum action.
func nftDrift(t *testing.T, err error) []string {
	t.Helper()
	var d *DriftError
	if err == nil {
		return nil
	}
	if !errors.As(err, &d) {
		t.Fatalf("verify: %v", err)
	}
	var nft []string
	for _, m := range append(d.Missing, d.Unexpected...) {
		if !strings.HasPrefix(m, "tc ") {
			nft = append(nft, m)
		}
	}
	return nft
}

// TestDescribeChecksumSteps checks that Describe reads the bridge: where
// the kernel has the csum action, it describes the tc steps the bridge
// lacks, all of them for a bridge that does not exist yet (the start creates
// it), and none where the kernel has no csum action.
func TestDescribeChecksumSteps(t *testing.T) {
	ns, _ := nsBackend(t, "fwdtc")
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b := &nftBackend{log: slogDiscard(), netns: int(h)}
	p := planOf(t, "nat-default.xml")
	qdisc := "tc qdisc add dev virbr0 root handle 1: htb default 2\n"
	filter := "tc filter add dev virbr0 prio 2 protocol ip parent 1: u32 match ip dport 68 ffff action csum ip and udp\n"
	describe := func() string {
		t.Helper()
		s, err := b.Describe(p)
		if err != nil {
			t.Fatal(err)
		}
		return s[strings.Index(s, "EOF\n")+4:]
	}
	if got := describe(); got != qdisc+filter {
		t.Errorf("bare bridge: tc steps %q", got)
	}
	ns.MustRun("tc", "qdisc", "add", "dev", "virbr0", "root", "handle", "1:", "htb", "default", "2")
	if got := describe(); got != filter {
		t.Errorf("bridge with the qdisc: tc steps %q", got)
	}
	ns.MustRun("ip", "link", "del", "virbr0")
	if got := describe(); got != qdisc+filter {
		t.Errorf("no bridge yet: tc steps %q", got)
	}
	b.noCsum = true
	if got := describe(); got != "" {
		t.Errorf("no csum action: tc steps %q", got)
	}
}

// TestVerifyPass: verifications sharing a Pass read the generation once; a
// table found clean is not read again at that generation, and a new pass
// after a change finds the drift.
func TestVerifyPass(t *testing.T) {
	ns, b := nsBackend(t, "fwp")
	p := planOf(t, "nat-default.xml")
	if err := b.Apply(p); err != nil {
		t.Fatalf("apply: %v", err)
	}
	pass := &Pass{}
	for range 2 {
		if err := b.(PassVerifier).VerifyPass(p, pass); err != nil {
			t.Fatalf("verify with a pass: %v", err)
		}
	}
	if !pass.read || pass.err != nil {
		t.Fatalf("pass after verify: %+v", pass)
	}
	// The bridge's index from the pass: the real one is clean, another
	// one is not.
	idx := 0
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName(p.Bridge)
		if err == nil {
			idx = l.Attrs().Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	index := func(i int) func(string) (int, bool) { return func(string) (int, bool) { return i, true } }
	if err := b.(PassVerifier).VerifyPass(p, &Pass{LinkIndex: index(idx)}); err != nil {
		t.Fatalf("verify with the bridge's index from the pass: %v", err)
	}
	if err := b.(PassVerifier).VerifyPass(p, &Pass{LinkIndex: index(idx + 1000)}); err == nil {
		t.Fatal("verify with another index from the pass found the rules clean")
	}
	table := &nftables.Table{Name: nftTable(p.Bridge), Family: nftables.TableFamilyIPv4}
	tamper(t, b, func(c *nftables.Conn) { c.DelTable(table) })
	wantDrift(t, b.(PassVerifier).VerifyPass(p, &Pass{}), "table ip "+nftTable(p.Bridge))
	wantDrift(t, b.Verify(p), "table ip "+nftTable(p.Bridge))
}
