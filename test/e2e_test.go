package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// TestDefaultNetworkEndToEnd: vnetd brings up the embedded default network; a
// guest gets a DHCP lease, resolves a <dns><host> name through the network's
// dnsmasq and reaches an upstream host through NAT, which sees the host's
// address, not the guest's. net-destroy then leaves nothing behind.
func TestDefaultNetworkEndToEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "host")
	up := addUpstream(t, host)
	d := newDaemon(t, host)
	d.start()

	out := d.mustCtl("net-list", "--all")
	want := " Name      State    Autostart   Persistent\n" +
		"--------------------------------------------\n" +
		" default   active   yes         yes\n\n"
	if out != want {
		t.Fatalf("net-list:\n%q\nwant\n%q", out, want)
	}
	addrs := host.MustRun("ip", "-br", "addr", "show", "virbr0")
	if !strings.Contains(addrs, "192.168.122.1/24") {
		t.Fatalf("virbr0 addresses: %s", addrs)
	}

	// Add a DNS host record to the definition; it applies at the next start.
	xml := d.mustCtl("net-dumpxml", "--inactive", "default")
	xml = strings.Replace(xml, "<ip ", "<dns>\n    <host ip='192.168.122.50'>\n      <hostname>files.example</hostname>\n    </host>\n  </dns>\n  <ip ", 1)
	d.mustCtl("net-define", writeFile(t, "default.xml", xml))
	if live := d.mustCtl("net-dumpxml", "default"); strings.Contains(live, "files.example") {
		t.Fatal("redefinition changed the live network")
	}
	d.mustCtl("net-destroy", "default")
	if got := d.mustCtl("net-start", "default"); got != "Network default started\n\n" {
		t.Fatalf("net-start printed %q", got)
	}

	g := addGuest(t, host, "virbr0", "g1")
	took := g.dhcp(t)
	t.Logf("DHCP lease after %v", took)
	gaddr := g.MustRun("ip", "-4", "-br", "addr", "show", "eth0")
	if !regexp.MustCompile(`192\.168\.122\.\d+/24`).MatchString(gaddr) {
		t.Fatalf("guest address: %s", gaddr)
	}
	ans := g.MustRun("dig", "+short", "+time=2", "+tries=2", "@192.168.122.1", "files.example")
	if strings.TrimSpace(ans) != "192.168.122.50" {
		t.Fatalf("dig files.example: %q", ans)
	}

	peers := listenTCP(t, up, "172.31.255.2:8080")
	if err := connect(g.NS, "172.31.255.2:8080"); err != nil {
		t.Fatalf("guest → upstream: %v", err)
	}
	select {
	case src := <-peers:
		if src != "172.31.255.1" {
			t.Fatalf("upstream saw %s, want the host's 172.31.255.1 (NAT)", src)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("upstream saw no connection")
	}
	g.MustRun("ping", "-c", "2", "-W", "2", "-i", "0.2", "172.31.255.2")

	// net-destroy removes exactly what the start made.
	d.mustCtl("net-destroy", "default")
	// When net-destroy returns the bridge is down without addresses; the
	// kernel finishes unregistering it in the background (README: speed).
	if out, err := host.Run("ip", "-o", "addr", "show", "dev", "virbr0"); err == nil && strings.Contains(out, "inet") {
		t.Fatalf("virbr0 still has addresses after net-destroy: %s", out)
	}
	waitGone(t, host, "virbr0")
	if rules := host.MustRun("nft", "list", "ruleset"); strings.Contains(rules, "virbr0") {
		t.Fatalf("rules left:\n%s", rules)
	}
	if pids := host.MustRun("ip", "netns", "pids", host.Name()); countDnsmasq(t, pids) != 0 {
		t.Fatal("dnsmasq still running")
	}
	assertNoFiles(t, filepath.Join(d.runDir, "networks"))
	assertNoFiles(t, filepath.Join(d.runDir, "dnsmasq"))
}

func countDnsmasq(t *testing.T, pids string) int {
	n := 0
	for _, p := range strings.Fields(pids) {
		comm, err := os.ReadFile("/proc/" + p + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "dnsmasq" {
			n++
		}
	}
	return n
}

func assertNoFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Fatalf("files left in %s: %v", dir, names)
	}
}

const isolatedXML = `<network>
  <name>iso</name>
  <bridge name='vbr-iso' stp='off'/>
  <ip address='10.77.0.1' prefix='24'/>
</network>
`

const routedXML = `<network>
  <name>routed</name>
  <forward mode='route'/>
  <bridge name='vbr-rt' stp='off'/>
  <ip address='10.88.0.1' prefix='24'/>
</network>
`

// staticGuest plugs a guest into br with a fixed address and default route.
func staticGuest(t *testing.T, host *netnstest.NS, br, tag, cidr, gw string) *guest {
	g := addGuest(t, host, br, tag)
	g.MustRun("ip", "addr", "add", cidr, "dev", "eth0")
	g.MustRun("ip", "route", "add", "default", "via", gw)
	return g
}

// TestIsolatedAndRouted: guests on an isolated network reach each other and
// the host but not upstream; a routed network forwards without NAT.
func TestIsolatedAndRouted(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "host")
	up := addUpstream(t, host)
	d := newDaemon(t, host)
	d.start("--no-default-network")

	d.mustCtl("net-create", writeFile(t, "iso.xml", isolatedXML))
	a := staticGuest(t, host, "vbr-iso", "ia", "10.77.0.10/24", "10.77.0.1")
	b := staticGuest(t, host, "vbr-iso", "ib", "10.77.0.11/24", "10.77.0.1")
	a.MustRun("ping", "-c", "1", "-W", "2", "10.77.0.11")
	b.MustRun("ping", "-c", "1", "-W", "2", "10.77.0.1")
	if out, err := a.Run("ping", "-c", "1", "-W", "1", "172.31.255.2"); err == nil {
		t.Fatalf("isolated guest reached upstream:\n%s", out)
	}
	peers := listenTCP(t, up, "172.31.255.2:8081")
	if err := connect(a.NS, "172.31.255.2:8081"); err == nil {
		t.Fatal("isolated guest connected upstream")
	}

	d.mustCtl("net-create", writeFile(t, "routed.xml", routedXML))
	up.MustRun("ip", "route", "add", "10.88.0.0/24", "via", "172.31.255.1")
	r := staticGuest(t, host, "vbr-rt", "rt", "10.88.0.10/24", "10.88.0.1")
	if err := connect(r.NS, "172.31.255.2:8081"); err != nil {
		t.Fatalf("routed guest → upstream: %v", err)
	}
	select {
	case src := <-peers:
		if src != "10.88.0.10" {
			t.Fatalf("upstream saw %s, want the guest's own 10.88.0.10 (no NAT)", src)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("upstream saw no connection")
	}
	// An isolated guest cannot reach the routed network either.
	if err := connect(a.NS, "10.88.0.10:1"); err == nil {
		t.Fatal("isolated guest reached the routed network")
	}

	// Transient networks vanish on destroy.
	d.mustCtl("net-destroy", "iso")
	d.mustCtl("net-destroy", "routed")
	if out := d.mustCtl("net-list", "--all", "--name"); out != "\n" {
		t.Fatalf("transient networks left: %q", out)
	}
}

// TestBadXMLChangesNothing: rejected definitions print libvirt's messages and
// leave the host and the stored state as they were.
func TestBadXMLChangesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "host")
	d := newDaemon(t, host)
	d.start("--no-default-network")
	before := host.MustRun("ip", "-d", "link", "show") + host.MustRun("nft", "list", "ruleset")

	cases := []struct{ name, xml, stderr string }{
		{"range-outside.xml", `<network><name>e1</name><ip address='10.201.0.1' prefix='24'><dhcp><range start='10.202.0.10' end='10.202.0.20'/></dhcp></ip></network>`,
			"error: Failed to define network from range-outside.xml\nerror: internal error: range 10.202.0.10 - 10.202.0.20 is not entirely within network 10.201.0.1/24\n"},
		{"reversed.xml", `<network><name>e2</name><ip address='10.206.0.1' prefix='24'><dhcp><range start='10.206.0.200' end='10.206.0.100'/></dhcp></ip></network>`,
			"error: Failed to define network from reversed.xml\nerror: internal error: range 10.206.0.200 - 10.206.0.100 is reversed \n"},
		{"slash.xml", `<network><name>a/b</name></network>`,
			"error: Failed to define network from slash.xml\nerror: invalid char in name: /\n"},
		{"badaddr.xml", `<network><name>ref-e09</name><ip address='10.209.0.300' prefix='24'/></network>`,
			"error: Failed to define network from badaddr.xml\nerror: XML error: Invalid address '10.209.0.300' in network 'ref-e09'\n"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		if err := os.WriteFile(filepath.Join(dir, c.name), []byte(c.xml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		cmd := d.ctlIn(dir, "net-define", c.name)
		if cmd.code != 1 || cmd.stderr != c.stderr {
			t.Errorf("%s: exit %d, stderr %q, want %q", c.name, cmd.code, cmd.stderr, c.stderr)
		}
	}
	after := host.MustRun("ip", "-d", "link", "show") + host.MustRun("nft", "list", "ruleset")
	if before != after {
		t.Fatalf("host changed:\n%s\n---\n%s", before, after)
	}
	if out := d.mustCtl("net-list", "--all", "--name"); out != "\n" {
		t.Fatalf("networks defined: %q", out)
	}
	assertNoFiles(t, filepath.Join(d.configDir, "networks", "autostart"))
}

// waitGone waits (up to 2 s) until a link no longer exists.
func waitGone(t *testing.T, ns *netnstest.NS, link string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := ns.Run("ip", "link", "show", link); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 2 s after net-destroy", link)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
