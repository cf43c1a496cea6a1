package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"vnet/daemon/api"
	"vnet/daemon/client"
	"vnet/internal/netnstest"
)

// The net-doctor tests: each injects a real fault into the daemon's
// namespace, shows that it breaks a guest (no lease, no ping, no answer),
// asserts that net-doctor names the culprit and exits 1, removes the fault
// and asserts that net-doctor is clean again.

const doctorXML = `<network>
  <name>doc</name>
  <forward mode='nat'/>
  <bridge name='vbr-doc' stp='off'/>
  <ip address='192.168.150.1' prefix='24'>
    <dhcp>
      <range start='192.168.150.2' end='192.168.150.99'/>
    </dhcp>
  </ip>
</network>
`

// doctorHost is a daemon namespace with an upstream namespace that answers
// DNS (so the upstream check has a real server to ask) and the network
// "doc" started.
type doctorHost struct {
	host    *netnstest.NS
	up      *netnstest.NS
	d       *daemon
	stopDNS func()
}

// newDoctorHost starts vnetd in a namespace whose resolv.conf (in vnetd's
// private mount namespace) names a DNS server in the upstream namespace.
func newDoctorHost(t testing.TB, extra ...string) *doctorHost {
	t.Helper()
	return startDoctorHost(t, false, extra...)
}

// newRaceDoctorHost is newDoctorHost with vnetd built with the race
// detector: the checks and live warnings run concurrently in vnetd. A race,
// panic or fatal error in its log fails the test.
func newRaceDoctorHost(t testing.TB, extra ...string) *doctorHost {
	t.Helper()
	return startDoctorHost(t, true, extra...)
}

func startDoctorHost(t testing.TB, race bool, extra ...string) *doctorHost {
	t.Helper()
	host := netnstest.New(t, "dochost")
	up := addUpstream(t, host)
	host.MustRun("ip", "route", "add", "default", "via", "172.31.255.2")
	stopDNS := serveDNS(t, up, "172.31.255.2:53")
	resolv := writeFile(t, "resolv.conf", "nameserver 172.31.255.2\n")
	d := newDaemon(t, host)
	if race {
		d.binary = raceVnetd
		t.Cleanup(func() {
			log := d.log.String()
			for _, bad := range []string{"DATA RACE", "panic:", "fatal error:"} {
				if i := strings.Index(log, bad); i >= 0 {
					t.Errorf("vnetd log has %q:\n%s", bad, log[max(0, i-200):min(len(log), i+6000)])
				}
			}
		})
	}
	d.mountSetup = "mount --bind " + resolv + " /etc/resolv.conf"
	d.start(append([]string{"--no-default-network"}, extra...)...)
	d.mustCtl("net-define", writeFile(t, "doc.xml", doctorXML))
	d.mustCtl("net-start", "doc")
	return &doctorHost{host: host, up: up, d: d, stopDNS: stopDNS}
}

// serveDNS answers every DNS query on addr inside ns with an empty
// NOERROR reply until the returned stop is called (or the test ends).
func serveDNS(t testing.TB, ns *netnstest.NS, addr string) (stop func()) {
	t.Helper()
	var c net.PacketConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatalf("dns server in %s: %v", ns.Name(), err)
	}
	t.Cleanup(func() { c.Close() })
	stop = func() { c.Close() }
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			resp := append([]byte(nil), buf[:n]...)
			resp[2] |= 0x80 // QR
			resp[3] = 0x80  // RA, NOERROR
			c.WriteTo(resp, from)
		}
	}()
	return stop
}

// doctor runs net-doctor (args: a network, --json) and returns its output
// and exit status.
func (h *doctorHost) doctor(args ...string) (string, int) {
	out, errs, code := h.d.ctl(append([]string{"net-doctor"}, args...)...)
	return out + errs, code
}

// assertClean fails unless net-doctor finds no problem.
func (h *doctorHost) assertClean(t testing.TB, args ...string) {
	t.Helper()
	out, code := h.doctor(args...)
	if code != 0 || out != "no problems found\n" {
		t.Fatalf("net-doctor %v on a clean host: exit %d\n%s\nvnetd log:\n%s", args, code, out, h.d.log)
	}
}

// assertProblem fails unless net-doctor exits 1 and reports check id with
// every one of the words in its PROBLEM line; it returns the output.
func (h *doctorHost) assertProblem(t testing.TB, id string, words ...string) string {
	t.Helper()
	out, code := h.doctor()
	if code != 1 {
		t.Fatalf("net-doctor: exit %d, want 1\n%s", code, out)
	}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "PROBLEM "+id+": ") {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "  fix: ") {
				t.Fatalf("net-doctor: no fix line after %q\n%s", l, out)
			}
			if !strings.HasSuffix(strings.TrimSpace(out), "problem(s) found") {
				t.Fatalf("net-doctor: last line is not the count\n%s", out)
			}
			t.Logf("net-doctor:\n%s", out)
			return out
		}
	}
	t.Fatalf("net-doctor: no PROBLEM %s naming %q\n%s", id, words, out)
	return ""
}

// TestDoctorClean: on a healthy host net-doctor says so, exits 0, and its
// JSON lists every check with the DHCP/DNS probe's and upstream's results;
// the probe leaves no lease and no link behind. The read-only socket
// serves it too.
func TestDoctorClean(t *testing.T) {
	for _, fw := range []string{"nftables", "iptables"} {
		t.Run(fw, func(t *testing.T) { testDoctorClean(t, fw) })
	}
}

func testDoctorClean(t *testing.T, fw string) {
	h := newRaceDoctorHost(t, "--firewall", fw)
	// net-doctor changes nothing on the host: rules (without counters),
	// routes of every table, rules, addresses and links (name and MAC; the
	// bridge's carrier follows the probe's port, and so does the "linkdown"
	// flag of its routes, which the kernel sets a moment after the port
	// left) are the same after.
	snapshot := func() string {
		var b strings.Builder
		for _, argv := range [][]string{{"nft", "-s", "list", "ruleset"}, {"ip", "route", "show", "table", "all"},
			{"ip", "-6", "route", "show", "table", "all"}, {"ip", "rule"}, {"ip", "-br", "addr"}} {
			b.WriteString(strings.ReplaceAll(h.host.MustRun(argv...), " linkdown", ""))
		}
		for _, l := range strings.Split(h.host.MustRun("ip", "-br", "link"), "\n") {
			if f := strings.Fields(l); len(f) >= 3 {
				b.WriteString(f[0] + " " + f[2] + "\n")
			}
		}
		return b.String()
	}
	// IPv6 link-local addresses still in DAD get their local route when it
	// ends: wait for that, or the snapshot would catch the kernel at work.
	if !waitFor(10*time.Second, func() bool { return strings.TrimSpace(h.host.MustRun("ip", "-6", "addr", "show", "tentative")) == "" }) {
		t.Fatalf("addresses still tentative:\n%s", h.host.MustRun("ip", "-6", "addr", "show", "tentative"))
	}
	before := snapshot()
	h.assertClean(t)
	if after := snapshot(); after != before {
		t.Fatalf("net-doctor changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	h.assertClean(t, "doc")

	out, code := h.doctor("--json")
	if code != 0 {
		t.Fatalf("net-doctor --json: exit %d\n%s", code, out)
	}
	var rep api.DoctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("net-doctor --json: %v\n%s", err, out)
	}
	ids := map[string]bool{}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("check %s failed: %s", c.ID, c.Detail)
		}
		ids[c.ID] = true
	}
	for _, id := range []string{"fw.foreign-drop", "dns.port-conflict", "route.overlap", "sysctl.ip-forward",
		"sysctl.rp-filter", "brnf.enabled", "dnsmasq.dhcp", "dnsmasq.dns", "dnsmasq.upstream", "resource.inotify", "resource.fds"} {
		if !ids[id] {
			t.Errorf("check %s missing from --json", id)
		}
	}
	t.Logf("net-doctor --json:\n%s", out)

	if leases := h.d.mustCtl("net-dhcp-leases", "doc"); strings.Contains(leases, "192.168.150.") {
		t.Errorf("the probe left a lease:\n%s", leases)
	}
	if links := h.host.MustRun("ip", "-br", "link"); strings.Contains(links, "vdoc") {
		t.Errorf("the probe left a link:\n%s", links)
	}

	ro := exec.Command(binDir+"/vnetctl", "--socket", h.d.runDir+"/vnetd-ro.sock", "net-doctor")
	if b, err := ro.CombinedOutput(); err != nil || string(b) != "no problems found\n" {
		t.Fatalf("net-doctor on the read-only socket: %v\n%s", err, b)
	}

	if fw == "nftables" {
		// An isolated network (DNS without DHCP: the probe takes a fixed
		// address) and a dual-stack one (DHCPv6, IPv6 forwarding) next to
		// it: still clean.
		h.d.mustCtl("net-define", writeFile(t, "iso.xml", isolatedXML))
		h.d.mustCtl("net-start", "iso")
		h.d.mustCtl("net-define", writeFile(t, "v6.xml", v6NatXML))
		h.d.mustCtl("net-start", "v6")
		h.assertClean(t)
		out, _ := h.doctor("--json")
		for _, want := range []string{`"id": "sysctl.ipv6-forward",
      "network": "v6",
      "ok": true`, `"id": "dnsmasq.dns",
      "network": "iso",
      "ok": true`} {
			if !strings.Contains(out, want) {
				t.Errorf("net-doctor --json lacks %s:\n%s", want, out)
			}
		}
	}

	if fw == "iptables" {
		// vnet's own iptables rules sit in the built-in chains' tables:
		// with INPUT and FORWARD policies set to drop, they still let the
		// guests through, and the doctor, which evaluates them with the
		// foreign ones, agrees.
		// (A host firewall lets the host's own connections' answers in:
		// without that, dnsmasq's upstream is unreachable, which the
		// doctor reports.)
		h.host.MustRun("iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		h.host.MustRun("iptables", "-P", "INPUT", "DROP")
		h.host.MustRun("iptables", "-P", "FORWARD", "DROP")
		g := addGuest(t, h.host, "vbr-doc", "clg")
		if err := g.lease(t); err != nil {
			t.Fatalf("no lease with vnet's iptables rules and policy drop: %v", err)
		}
		if err := ping(g.NS, "172.31.255.2"); err != nil {
			t.Fatalf("guest → upstream with vnet's iptables rules and policy drop: %v", err)
		}
		h.assertClean(t)
	}
}

// lease tries to get a DHCP lease in the guest within about 3 s.
func (g *guest) lease(t testing.TB) error {
	t.Helper()
	script := writeFile(t, "udhcpc.sh", udhcpcScript)
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := g.Run("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-A", "1", "-s", script)
	return err
}

// ping sends two pings from ns to addr; nil when one came back.
func ping(ns *netnstest.NS, addr string) error {
	_, err := ns.Run("ping", "-c", "2", "-W", "1", "-i", "0.2", addr)
	return err
}

// resolves asks the network's dnsmasq for a name from the guest.
func resolves(g *guest, server string) error {
	out, err := g.Run("dig", "+time=1", "+tries=1", "@"+server, "doc-probe-name")
	if err == nil && !strings.Contains(out, "status:") {
		err = fmt.Errorf("no answer: %s", out)
	}
	return err
}

// applyFix runs the fix line doctor printed for the problem line matching
// id and words, in the host namespace.
func (h *doctorHost) applyFix(t testing.TB, out, id string, words ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "PROBLEM "+id+": ") {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all && i+1 < len(lines) {
			fix := strings.TrimPrefix(lines[i+1], "  fix: ")
			h.host.MustRun("sh", "-c", fix)
			return
		}
	}
	t.Fatalf("no fix for %s %q in\n%s", id, words, out)
}

// TestDoctorForeignFirewall: foreign tables and chains in several
// spellings (inet/ip/iptables-nft/legacy, policy or explicit rule, sets,
// wildcard interface names, other priorities and hooks) really drop a
// guest's DHCP, DNS, forwarded, masqueraded or bridged traffic; net-doctor
// names the table and chain, and the fix it prints, run as printed, lets
// the guest through and leaves net-doctor clean.
func TestDoctorForeignFirewall(t *testing.T) {
	h := newDoctorHost(t)
	g := addGuest(t, h.host, "vbr-doc", "fwg1")
	if err := g.lease(t); err != nil {
		t.Fatalf("no lease on a clean host: %v", err)
	}
	if err := ping(g.NS, "172.31.255.2"); err != nil {
		t.Fatalf("guest → upstream on a clean host: %v", err)
	}
	h.assertClean(t)

	t.Run("inet-policy-drop-input", func(t *testing.T) {
		h.host.MustRun("nft", "add table inet hostfw")
		h.host.MustRun("nft", "add chain inet hostfw in { type filter hook input priority 0; policy drop; }")
		h.host.MustRun("nft", "add rule inet hostfw in ct state established,related accept")
		h.host.MustRun("nft", "add rule inet hostfw in iif lo accept")
		defer h.host.Run("nft", "delete table inet hostfw")
		g2 := addGuest(t, h.host, "vbr-doc", "fwg2")
		if err := g2.lease(t); err == nil {
			t.Fatal("a guest got a lease through an input chain with policy drop")
		}
		out := h.assertProblem(t, "fw.foreign-drop", "nftables table inet hostfw, chain in (input hook, priority 0)", "drops DHCP (udp 67) from vbr-doc by its policy drop")
		h.assertProblem(t, "fw.foreign-drop", "chain in", "DNS")
		h.applyFix(t, out, "fw.foreign-drop", "chain in", "DHCP")
		h.applyFix(t, out, "fw.foreign-drop", "chain in", "DNS")
		if err := g2.lease(t); err != nil {
			t.Fatalf("no lease after the printed fix: %v", err)
		}
		if err := resolves(g2, "192.168.150.1"); err != nil {
			t.Fatalf("no DNS after the printed fix: %v", err)
		}
		h.assertClean(t)
	})

	t.Run("ip-rule-set-wildcard", func(t *testing.T) {
		h.host.MustRun("nft", "add table ip guard")
		h.host.MustRun("nft", "add chain ip guard filter_in { type filter hook input priority -5; }")
		h.host.MustRun("nft", `add rule ip guard filter_in iifname "vbr-*" udp dport { 53, 67 } counter drop`)
		defer h.host.Run("nft", "delete table ip guard")
		g3 := addGuest(t, h.host, "vbr-doc", "fwg3")
		if err := g3.lease(t); err == nil {
			t.Fatal("a guest got a lease through a rule dropping udp 67")
		}
		h.assertProblem(t, "fw.foreign-drop", "nftables table ip guard, chain filter_in (input hook, priority -5)", "DHCP", "rule handle")
		h.host.MustRun("nft", "delete table ip guard")
		if err := g3.lease(t); err != nil {
			t.Fatalf("no lease after the table was removed: %v", err)
		}
		h.assertClean(t)
	})

	t.Run("docker-forward-drop", func(t *testing.T) {
		for _, c := range [][]string{
			{"-N", "DOCKER"}, {"-N", "DOCKER-USER"}, {"-A", "DOCKER-USER", "-j", "RETURN"},
			{"-A", "FORWARD", "-j", "DOCKER-USER"}, {"-A", "FORWARD", "-o", "docker0", "-j", "DOCKER"},
			{"-P", "FORWARD", "DROP"},
		} {
			h.host.MustRun(append([]string{"iptables"}, c...)...)
		}
		defer h.host.Run("nft", "delete table ip filter")
		if err := ping(g.NS, "172.31.255.2"); err == nil {
			t.Fatal("guest → upstream works through Docker's FORWARD policy drop")
		}
		out := h.assertProblem(t, "fw.foreign-drop", "Docker's iptables-nft table ip filter, chain FORWARD (forward hook", "forwarded guest traffic of vbr-doc by its policy drop")
		if !strings.Contains(out, "iptables -I DOCKER-USER -i vbr-doc -j ACCEPT") {
			t.Fatalf("the fix does not use DOCKER-USER:\n%s", out)
		}
		// br_netfilter (on in a new namespace) sends bridged traffic
		// through the same FORWARD chain.
		h.assertProblem(t, "brnf.enabled", "bridge-nf-call-iptables", "traffic between guests")
		h.applyFix(t, out, "fw.foreign-drop", "chain FORWARD", "forwarded guest traffic")
		if err := ping(g.NS, "172.31.255.2"); err != nil {
			t.Fatalf("guest → upstream after the printed fix: %v", err)
		}
		h.assertClean(t)
	})

	t.Run("legacy-iptables-dns", func(t *testing.T) {
		if _, err := exec.LookPath("iptables-legacy"); err != nil {
			t.Skip("iptables-legacy not installed")
		}
		h.host.MustRun("iptables-legacy", "-A", "INPUT", "-i", "vbr-doc", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "DROP")
		defer h.host.Run("iptables-legacy", "-F", "INPUT")
		if err := resolves(g, "192.168.150.1"); err == nil {
			t.Fatal("guest DNS works through a legacy DROP of udp 53")
		}
		out := h.assertProblem(t, "fw.foreign-drop", "legacy iptables-legacy table filter, chain INPUT", "DNS (udp/tcp 53) from vbr-doc with -A INPUT -i vbr-doc -p udp -m udp --dport 53 -j DROP")
		h.applyFix(t, out, "fw.foreign-drop", "chain INPUT", "DNS")
		if err := resolves(g, "192.168.150.1"); err != nil {
			t.Fatalf("no DNS after the printed fix: %v", err)
		}
		h.assertClean(t)
	})

	t.Run("postrouting-before-masquerade", func(t *testing.T) {
		h.host.MustRun("nft", "add table inet egress")
		h.host.MustRun("nft", "add chain inet egress post { type filter hook postrouting priority 50; }")
		h.host.MustRun("nft", `add rule inet egress post ip saddr 192.168.150.0/24 oifname "up0" drop`)
		defer h.host.Run("nft", "delete table inet egress")
		if err := ping(g.NS, "172.31.255.2"); err == nil {
			t.Fatal("guest → upstream works through a postrouting drop")
		}
		out := h.assertProblem(t, "fw.foreign-drop", "nftables table inet egress, chain post (postrouting hook, priority 50)", "masqueraded traffic of vbr-doc")
		h.applyFix(t, out, "fw.foreign-drop", "chain post")
		if err := ping(g.NS, "172.31.255.2"); err != nil {
			t.Fatalf("guest → upstream after the printed fix: %v", err)
		}
		h.assertClean(t)
	})

	t.Run("br-netfilter-bridged-drop", func(t *testing.T) {
		if v, err := h.host.Run("sysctl", "-n", "net.bridge.bridge-nf-call-iptables"); err != nil || strings.TrimSpace(v) != "1" {
			t.Skip("br_netfilter is not active in a new namespace")
		}
		g4 := addGuest(t, h.host, "vbr-doc", "fwg4")
		g4.MustRun("ip", "addr", "add", "192.168.150.200/24", "dev", "eth0")
		if err := ping(g.NS, "192.168.150.200"); err != nil {
			t.Fatalf("guest → guest on a clean host: %v", err)
		}
		h.host.MustRun("nft", "add table ip lan")
		h.host.MustRun("nft", "add chain ip lan lanfwd { type filter hook forward priority 10; policy accept; }")
		h.host.MustRun("nft", `add rule ip lan lanfwd iifname "vbr-doc" oifname "vbr-doc" drop`)
		defer h.host.Run("nft", "delete table ip lan")
		if err := ping(g.NS, "192.168.150.200"); err == nil {
			t.Fatal("guest → guest works through a bridged forward drop")
		}
		out := h.assertProblem(t, "brnf.enabled", "net.bridge.bridge-nf-call-iptables = 1", "nftables table ip lan, chain lanfwd", "traffic between guests")
		h.applyFix(t, out, "brnf.enabled", "chain lanfwd")
		if err := ping(g.NS, "192.168.150.200"); err != nil {
			t.Fatalf("guest → guest after the printed fix: %v", err)
		}
		h.assertClean(t)
	})
}

// holdPort runs a python3 in ns that binds proto addr:port (no
// SO_REUSEADDR; TCP listens) and returns its pid once bound.
func holdPort(t testing.TB, ns *netnstest.NS, proto, addr string, port int) int {
	t.Helper()
	typ := "SOCK_DGRAM"
	listen := ""
	if proto == "tcp" {
		typ, listen = "SOCK_STREAM", "s.listen(1)\n"
	}
	script := fmt.Sprintf("import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.%s)\ns.bind((%q, %d))\n%sprint('bound', flush=True)\ntime.sleep(600)\n", typ, addr, port, listen)
	cmd := ns.Command("python3", "-c", script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 16)
	if n, _ := stdout.Read(buf); !strings.HasPrefix(string(buf[:n]), "bound") {
		t.Fatalf("python3 did not bind %s %s:%d", proto, addr, port)
	}
	// ip netns exec execs python3: the pid is python's.
	return cmd.Process.Pid
}

// TestDoctorPortOwner: another process holding the DNS port (TCP, the
// wildcard address) or the DHCP port (UDP) makes net-start fail; the
// error names the process and its pid, and so does net-doctor for the
// network; once the process is gone the network starts, a guest gets a
// lease and net-doctor is clean.
func TestDoctorPortOwner(t *testing.T) {
	h := newDoctorHost(t)
	for _, c := range []struct {
		proto, addr string
		port        int
	}{{"tcp", "0.0.0.0", 53}, {"udp", "0.0.0.0", 67}} {
		t.Run(fmt.Sprintf("%s-%d", c.proto, c.port), func(t *testing.T) {
			h.d.mustCtl("net-destroy", "doc")
			pid := holdPort(t, h.host, c.proto, c.addr, c.port)
			owner := fmt.Sprintf("python3 (pid %d)", pid)
			_, errs, code := h.d.ctl("net-start", "doc")
			if code == 0 {
				t.Fatal("net-start succeeded while the port was held")
			}
			if want := fmt.Sprintf("%s %s:%d is held by %s", c.proto, c.addr, c.port, owner); !strings.Contains(errs, want) {
				t.Fatalf("net-start error does not name the owner (%q):\n%s", want, errs)
			}
			t.Logf("net-start:\n%s", errs)
			if out, code := h.doctor("doc"); code != 1 || !strings.Contains(out, "PROBLEM dns.port-conflict: "+owner+" holds "+c.proto+" "+fmt.Sprintf("%s:%d", c.addr, c.port)) || !strings.Contains(out, fmt.Sprintf("  fix: kill %d", pid)) {
				t.Fatalf("net-doctor doc: exit %d\n%s", code, out)
			}
			syscall.Kill(pid, syscall.SIGKILL)
			waitFor(5*time.Second, func() bool { return exited(pid) })
			h.d.mustCtl("net-start", "doc")
			g := addGuest(t, h.host, "vbr-doc", "pg"+fmt.Sprint(c.port))
			if err := g.lease(t); err != nil {
				t.Fatalf("no lease once the port is free: %v", err)
			}
			h.assertClean(t)
		})
	}
}

// TestDoctorRouteOverlap: a route into the network's subnet through
// another device, added after the start (a VPN: in the main table; or in
// its own table with a rule), cuts a guest off; net-doctor names the route
// and its device (and strict rp_filter, which then drops the guest's
// packets); once the route is gone the guest answers and net-doctor is
// clean.
func TestDoctorRouteOverlap(t *testing.T) {
	h := newDoctorHost(t)
	g := addGuest(t, h.host, "vbr-doc", "rtg")
	if err := g.lease(t); err != nil {
		t.Fatal(err)
	}
	// The kernel may lack dummy devices: a veth pair stands in for a
	// VPN's tunnel.
	h.host.MustRun("ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn0p")
	h.host.MustRun("ip", "link", "set", "vpn0", "up")
	for _, c := range []struct {
		name        string
		add, del    [][]string
		table, dst  string
		addr        string
		rpFilterToo bool
	}{
		{name: "main-table", table: "main", dst: "192.168.150.0/25",
			add: [][]string{{"ip", "route", "add", "192.168.150.0/25", "dev", "vpn0"}},
			del: [][]string{{"ip", "route", "del", "192.168.150.0/25", "dev", "vpn0"}}},
		{name: "policy-table", table: "100", dst: "192.168.150.0/24", rpFilterToo: true,
			add: [][]string{{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"}, {"ip", "route", "add", "192.168.150.0/24", "dev", "vpn0", "table", "100"}, {"ip", "rule", "add", "to", "192.168.150.0/24", "lookup", "100", "pref", "100"}},
			del: [][]string{{"ip", "rule", "del", "pref", "100"}, {"ip", "route", "del", "192.168.150.0/24", "dev", "vpn0", "table", "100"}, {"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"}}},
		// An address brings its prefix route along.
		{name: "address", table: "main", dst: "192.168.150.0/25", addr: "192.168.150.100/25",
			add: [][]string{{"ip", "addr", "add", "192.168.150.100/25", "dev", "vpn0"}},
			del: [][]string{{"ip", "addr", "del", "192.168.150.100/25", "dev", "vpn0"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, a := range c.add {
				h.host.MustRun(a...)
			}
			if err := ping(g.NS, "192.168.150.1"); err == nil {
				t.Fatal("guest → host works through an overlapping route")
			}
			h.assertProblem(t, "route.overlap", "route "+c.dst+" dev vpn0 (table "+c.table+") overlaps 192.168.150.0/24 of vbr-doc")
			if c.rpFilterToo {
				h.assertProblem(t, "sysctl.rp-filter", "strict rp_filter on vbr-doc", "goes through vpn0")
			}
			if c.addr != "" {
				h.assertProblem(t, "route.overlap", "address "+c.addr+" on vpn0 overlaps 192.168.150.0/24 of vbr-doc")
			}
			for _, d := range c.del {
				h.host.MustRun(d...)
			}
			if err := ping(g.NS, "192.168.150.1"); err != nil {
				t.Fatalf("guest → host once the route is gone: %v", err)
			}
			h.assertClean(t)
		})
	}
}

// dnsmasqPid returns the pid of the network's dnsmasq from its pid file.
func (h *doctorHost) dnsmasqPid(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(h.d.runDir + "/dnsmasq/doc.pid")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	return pid
}

// TestDoctorDnsmasqHealth: a dnsmasq that runs but does not answer (here
// stopped with SIGSTOP, which its supervisor does not see) leaves a guest
// without a lease and without names; net-doctor's probe says so with its
// pid; once it runs again net-doctor is clean. An upstream server that
// stops answering breaks the guests' names outside the network; net-doctor
// names the server.
func TestDoctorDnsmasqHealth(t *testing.T) {
	h := newDoctorHost(t)
	g := addGuest(t, h.host, "vbr-doc", "dng")
	if err := g.lease(t); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run("dig", "+time=1", "+tries=1", "+short", "@192.168.150.1", "example.org"); err != nil {
		t.Fatalf("guest name lookup through dnsmasq on a clean host: %v", err)
	}

	t.Run("dnsmasq-stopped", func(t *testing.T) {
		pid := h.dnsmasqPid(t)
		syscall.Kill(pid, syscall.SIGSTOP)
		defer syscall.Kill(pid, syscall.SIGCONT)
		g2 := addGuest(t, h.host, "vbr-doc", "dng2")
		if err := g2.lease(t); err == nil {
			t.Fatal("a guest got a lease from a stopped dnsmasq")
		}
		h.assertProblem(t, "dnsmasq.dhcp", fmt.Sprintf("the dnsmasq (pid %d) of vbr-doc gives no DHCP lease: no DHCPOFFER", pid))
		syscall.Kill(pid, syscall.SIGCONT)
		if err := g2.lease(t); err != nil {
			t.Fatalf("no lease once dnsmasq runs again: %v", err)
		}
		h.assertClean(t)
	})

	t.Run("upstream-silent", func(t *testing.T) {
		h.stopDNS()
		if out, err := g.Run("dig", "+time=1", "+tries=1", "@192.168.150.1", "example.org"); err == nil && strings.Contains(out, "status: NOERROR") {
			t.Fatalf("guest name lookup works without an upstream:\n%s", out)
		}
		h.assertProblem(t, "dnsmasq.upstream", "upstream DNS server 172.31.255.2:53 of vbr-doc does not answer")
		h.stopDNS = serveDNS(t, h.up, "172.31.255.2:53")
		// dnsmasq tries a server that failed again after a while.
		if !waitFor(10*time.Second, func() bool {
			_, err := g.Run("dig", "+time=1", "+tries=1", "+short", "@192.168.150.1", "example.org")
			return err == nil
		}) {
			t.Fatal("guest name lookup fails once the upstream answers")
		}
		h.assertClean(t)
	})
}

// BenchmarkDoctor prints how long `vnetctl net-doctor` takes on a clean
// namespace host with one NAT network (the DHCP/DNS probe and the upstream
// query included), through the binary (what a user waits for) and through
// the API. The target is ≤ 200 ms.
func BenchmarkDoctor(b *testing.B) {
	h := newDoctorHost(b)
	const n = 20
	var ctl, viaAPI samples
	c := client.New(h.d.socket())
	for i := 0; i < n; i++ {
		t0 := time.Now()
		out, code := h.doctor()
		ctl = append(ctl, time.Since(t0))
		if code != 0 {
			b.Fatalf("net-doctor: exit %d\n%s", code, out)
		}
		t0 = time.Now()
		if _, err := c.Doctor(context.Background(), ""); err != nil {
			b.Fatal(err)
		}
		viaAPI = append(viaAPI, time.Since(t0))
	}
	report(b, "vnetctl net-doctor", ctl)
	report(b, "api net-doctor", viaAPI)
	if med, _ := ctl.stats(); med > 200*time.Millisecond {
		b.Errorf("net-doctor median %v > 200 ms", med)
	}
}

// TestDoctorLiveWarnings: a foreign table that drops DHCP, and a route into
// the network's subnet, each appearing while vnetd runs, are published as
// one Warning event naming the culprit and logged, once per cause: more changes of the same table do not
// repeat the warning.
func TestDoctorLiveWarnings(t *testing.T) {
	h := newRaceDoctorHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := client.New(h.d.socket()).EventsWith(ctx, "", true)
	warnings := make(chan api.Event, 16)
	defined := make(chan struct{}, 1)
	go func() {
		for ev := range events {
			switch ev.Event {
			case "Warning":
				warnings <- ev
			case "Defined":
				defined <- struct{}{}
			}
		}
	}()
	next := func(what string) api.Event {
		t.Helper()
		select {
		case ev := <-warnings:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("no Warning event for %s\nvnetd log:\n%s", what, h.d.log)
		}
		return api.Event{}
	}
	// The stream is open once it delivers an event: define a network.
	h.d.mustCtl("net-define", writeFile(t, "iso.xml", isolatedXML))
	select {
	case <-defined:
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream delivered nothing")
	}

	h.host.MustRun("nft", "add table inet hostfw")
	h.host.MustRun("nft", "add chain inet hostfw in { type filter hook input priority 0; policy drop; }")
	ev := next("a dropping input chain")
	if ev.Network != "doc" || !strings.Contains(ev.Detail, "fw.foreign-drop: nftables table inet hostfw, chain in") {
		t.Fatalf("warning: %+v", ev)
	}
	if !waitFor(5*time.Second, func() bool {
		return strings.Contains(h.d.log.String(), "net-doctor: nftables table inet hostfw, chain in")
	}) {
		t.Fatalf("no log line naming the culprit:\n%s", h.d.log)
	}
	// Drain the other causes of the same change (DNS dropped too).
	drain := func() {
		for {
			select {
			case <-warnings:
			case <-time.After(500 * time.Millisecond):
				return
			}
		}
	}
	drain()
	h.host.MustRun("nft", "add rule inet hostfw in iif lo accept")
	h.host.MustRun("nft", "add rule inet hostfw in tcp dport 22 accept")
	select {
	case ev := <-warnings:
		t.Fatalf("the same cause was warned about again: %+v", ev)
	case <-time.After(500 * time.Millisecond):
	}
	h.host.MustRun("nft", "delete table inet hostfw")

	h.host.MustRun("ip", "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn0p")
	h.host.MustRun("ip", "link", "set", "vpn0", "up")
	h.host.MustRun("ip", "route", "add", "192.168.150.128/25", "dev", "vpn0")
	ev = next("an overlapping route")
	if !strings.Contains(ev.Detail, "route.overlap: route 192.168.150.128/25 dev vpn0 (table main)") {
		t.Fatalf("warning: %+v", ev)
	}
}
