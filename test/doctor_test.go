package test

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"

	"vnet/daemon/api"
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
	host *netnstest.NS
	up   *netnstest.NS
	d    *daemon
}

// newDoctorHost starts vnetd in a namespace whose resolv.conf (in vnetd's
// private mount namespace) names a DNS server in the upstream namespace.
func newDoctorHost(t testing.TB, extra ...string) *doctorHost {
	t.Helper()
	host := netnstest.New(t, "dochost")
	up := addUpstream(t, host)
	host.MustRun("ip", "route", "add", "default", "via", "172.31.255.2")
	serveDNS(t, up, "172.31.255.2:53")
	resolv := writeFile(t, "resolv.conf", "nameserver 172.31.255.2\n")
	d := newDaemon(t, host)
	d.mountSetup = "mount --bind " + resolv + " /etc/resolv.conf"
	d.start(append([]string{"--no-default-network"}, extra...)...)
	d.mustCtl("net-define", writeFile(t, "doc.xml", doctorXML))
	d.mustCtl("net-start", "doc")
	return &doctorHost{host: host, up: up, d: d}
}

// serveDNS answers every DNS query on addr inside ns with an empty
// NOERROR reply.
func serveDNS(t testing.TB, ns *netnstest.NS, addr string) {
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
	h := newDoctorHost(t)
	h.assertClean(t)
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
}
