package test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vnet/internal/netnstest"
)

// Networks without dnsmasq (no DNS, no DHCP) exercise the bridge, the
// sysctls and the firewall; vnetd then only needs some path for the dnsmasq
// binary, so these tests also run where dnsmasq is not installed.
const noDnsmasq = "/bin/false"

// plainNAT is a NAT network with IPv4 and IPv6, a static route, MAC, MTU and
// STP settings, and no dnsmasq.
func plainNAT(name, bridge string, octet int) string {
	return fmt.Sprintf(`<network>
  <name>%s</name>
  <forward mode='nat'/>
  <bridge name='%s' stp='on' delay='3'/>
  <mac address='52:54:00:aa:%02x:01'/>
  <mtu size='9000'/>
  <dns enable='no'/>
  <ip address='10.%d.0.1' prefix='24'/>
  <ip family='ipv6' address='fd00:%d::1' prefix='64'/>
  <route address='10.%d.5.0' prefix='24' gateway='10.%d.0.2'/>
</network>
`, name, bridge, octet, octet, octet, octet, octet)
}

// mustWait fails t unless cond holds within timeout.
func mustWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitFor(timeout, cond) {
		t.Fatalf("%s: not within %v", what, timeout)
	}
}

// TestForeignBridgeRefused: a bridge vnet did not create is never adopted,
// changed or deleted. net-start (and its dry run) fails with libvirt's
// message and leaves the bridge as it was; net-destroy and net-undefine do
// not delete it.
func TestForeignBridgeRefused(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "foreign")
	host.MustRun("ip", "link", "add", "vb-x", "type", "bridge")
	host.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", "vb-x")
	host.MustRun("ip", "link", "set", "vb-x", "up")
	stp := regexp.MustCompile(`forward_delay \d+ .* stp_state \d+`)
	snapshot := func() string {
		return host.MustRun("ip", "-o", "link", "show", "dev", "vb-x") +
			host.MustRun("ip", "-o", "-4", "addr", "show", "dev", "vb-x") +
			stp.FindString(host.MustRun("ip", "-d", "link", "show", "dev", "vb-x")) + "\n" +
			host.MustRun("sysctl", "net.ipv6.conf.vb-x.accept_ra", "net.ipv6.conf.vb-x.autoconf", "net.ipv6.conf.vb-x.disable_ipv6")
	}
	before := snapshot()

	d := newDaemon(t, host)
	d.start("--dnsmasq", noDnsmasq, "--no-default-network")
	d.mustCtl("net-define", writeFile(t, "fb.xml", plainNAT("fb", "vb-x", 171)))
	const want = "error: Failed to start network fb\nerror: error creating bridge interface vb-x: File exists\n"
	for _, args := range [][]string{{"net-start", "--dry-run", "fb"}, {"net-start", "fb"}} {
		_, stderr, code := d.ctl(args...)
		if code != 1 || stderr != want {
			t.Errorf("vnetctl %s: exit %d, stderr %q; want 1, %q", strings.Join(args, " "), code, stderr, want)
		}
	}
	d.ctl("net-destroy", "fb")
	d.mustCtl("net-undefine", "fb")
	if after := snapshot(); after != before {
		t.Fatalf("foreign bridge changed:\n%s\n---\n%s\nvnetd log:\n%s", before, after, d.log)
	}

	// The bridge of an active network replaced by someone else's: repair
	// does not take it over, net-destroy does not delete it.
	d.mustCtl("net-create", writeFile(t, "fy.xml", plainNAT("fy", "vb-y", 175)))
	// Renamed away rather than deleted: a deletion takes the kernel ~40 ms,
	// during which a repair already under way could re-create the bridge.
	host.MustRun("ip", "-batch", writeFile(t, "replace.batch", "link set vb-y down\nlink set vb-y name vb-gone\nlink add vb-y type bridge\n"))
	host.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", "vb-y")
	mustWait(t, 2*time.Second, "failed repair logged", func() bool {
		return strings.Contains(d.log.String(), `repairing network failed" network=fy err="error creating bridge interface vb-y: File exists"`)
	})
	d.mustCtl("net-destroy", "fy")
	if out := host.MustRun("ip", "-o", "-4", "addr", "show", "dev", "vb-y"); !strings.Contains(out, "198.51.100.1/24") {
		t.Fatalf("foreign bridge changed by net-destroy: %q", out)
	}
}

// TestOwnBridgeAdoptedAfterRestart: the bridge vnet created (and marked) is
// adopted by the next daemon without being re-created, and net-destroy then
// deletes it.
func TestOwnBridgeAdoptedAfterRestart(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "adopt")
	d := newDaemon(t, host)
	d.start("--dnsmasq", noDnsmasq, "--no-default-network")
	d.mustCtl("net-create", writeFile(t, "ad.xml", plainNAT("ad", "vbr-ad", 172)))
	index := func() string { return strings.Fields(host.MustRun("ip", "-o", "link", "show", "dev", "vbr-ad"))[0] }
	before := index()
	d.stop()
	d.start("--dnsmasq", noDnsmasq, "--no-default-network")
	if out := d.mustCtl("net-list", "--name"); !strings.Contains(out, "ad") {
		t.Fatalf("network not adopted: %q\n%s", out, d.log)
	}
	if after := index(); after != before {
		t.Fatalf("bridge re-created: ifindex %s → %s", before, after)
	}
	if strings.Contains(d.log.String(), "File exists") {
		t.Fatalf("own bridge refused:\n%s", d.log)
	}
	d.mustCtl("net-destroy", "ad")
	mustWait(t, 2*time.Second, "bridge deleted", func() bool {
		_, err := host.Run("ip", "link", "show", "dev", "vbr-ad")
		return err != nil
	})
}

// TestForwardingSysctlRepaired: net.ipv4.ip_forward reset by someone after
// the start is set again by drift repair, and the repair is logged. The
// kernel announces forwarding changes (RTM_NEWNETCONF), so this works
// without waiting for the periodic check (30 s by default here); the
// per-bridge sysctls, which have no event, are checked by the periodic
// check (a short interval here).
func TestForwardingSysctlRepaired(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "fwd")
	host.MustRun("sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
	d := newDaemon(t, host)
	d.start("--dnsmasq", noDnsmasq, "--no-default-network")
	d.mustCtl("net-create", writeFile(t, "fw.xml", plainNAT("fw", "vbr-fw", 173)))
	read := func() string { return strings.TrimSpace(host.MustRun("sysctl", "-n", "net.ipv4.ip_forward")) }
	if v := read(); v != "1" {
		t.Fatalf("ip_forward after start = %s", v)
	}
	host.MustRun("sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
	mustWait(t, 3*time.Second, "ip_forward back to 1", func() bool { return read() == "1" })
	mustWait(t, time.Second, "repair logged", func() bool {
		return strings.Contains(d.log.String(), `repaired network drift" network=fw repaired="sysctl net.ipv4.ip_forward is 0, want 1"`)
	})
	d.stop()

	// The periodic check covers a per-bridge sysctl.
	d.start("--dnsmasq", noDnsmasq, "--no-default-network", "--verify-interval", "200ms")
	const acceptRA = "net.ipv6.conf.vbr-fw.accept_ra"
	host.MustRun("sysctl", "-q", "-w", acceptRA+"=1")
	mustWait(t, 3*time.Second, acceptRA+" back to 0", func() bool {
		return strings.TrimSpace(host.MustRun("sysctl", "-n", acceptRA)) == "0"
	})
	mustWait(t, time.Second, "repair logged", func() bool {
		return strings.Contains(d.log.String(), `repaired="bridge \"vbr-fw\": sysctl `+acceptRA+` is 1, want 0"`)
	})
	d.mustCtl("net-destroy", "fw")
}

// stepLine matches the debug line vnetd logs for every host step it ran.
var stepLine = regexp.MustCompile(`msg="host step" network=(\S+) step=("(?:[^"\\]|\\.)*"|\S+)`)

// ranSteps returns the steps vnetd logged for network name, from the
// log offset on.
func ranSteps(log string, name string) []string {
	var ran []string
	for _, m := range stepLine.FindAllStringSubmatch(log, -1) {
		if m[1] != name {
			continue
		}
		step := m[2]
		if s, err := strconv.Unquote(step); err == nil {
			step = s
		}
		ran = append(ran, step)
	}
	return ran
}

var (
	fakeDnsmasqOnce sync.Once
	fakeDnsmasqPath string
	fakeDnsmasqErr  error
)

// fakeDnsmasq builds test/fakednsmasq (a stand-in that only writes its pid
// file) once and returns its path.
func fakeDnsmasq(t *testing.T) string {
	t.Helper()
	fakeDnsmasqOnce.Do(func() {
		fakeDnsmasqPath = filepath.Join(binDir, "fakednsmasq")
		out, err := exec.Command("go", "build", "-o", fakeDnsmasqPath, "vnet/test/fakednsmasq").CombinedOutput()
		if err != nil {
			fakeDnsmasqErr = fmt.Errorf("build fakednsmasq: %v: %s", err, out)
		}
	})
	if fakeDnsmasqErr != nil {
		t.Fatal(fakeDnsmasqErr)
	}
	return fakeDnsmasqPath
}

// TestDryRunIsWhatStartDoes: `net-start --dry-run` prints exactly the steps
// the real start then runs (taken from vnetd's debug log), in the same
// order: bridge, sysctls, the firewall step and dnsmasq's command line (a
// stand-in dnsmasq: what is compared is vnet's side). After a daemon
// restart the running network is adopted as it is: no step but adopting
// dnsmasq, whose pid stays the same.
func TestDryRunIsWhatStartDoes(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "dry")
	host.MustRun("sysctl", "-q", "-w", "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
	d := newDaemon(t, host)
	dns := fakeDnsmasq(t)
	d.start("--dnsmasq", dns, "--no-default-network")
	xml := strings.Replace(plainNAT("dr", "vbr-dr", 174), "<dns enable='no'/>", "", 1)
	xml = strings.Replace(xml, "<ip address='10.174.0.1' prefix='24'/>",
		"<ip address='10.174.0.1' prefix='24'><dhcp><range start='10.174.0.10' end='10.174.0.20'/></dhcp></ip>", 1)
	d.mustCtl("net-define", writeFile(t, "dr.xml", xml))
	plan := d.mustCtl("net-start", "--dry-run", "dr")
	var dry []string
	for _, l := range strings.Split(plan, "\n") {
		for _, p := range []string{"ip ", "sysctl ", "# firewall ", dns + " "} {
			if strings.HasPrefix(l, p) {
				dry = append(dry, l)
			}
		}
	}
	if !strings.Contains(plan, "dhcp-range=10.174.0.10,10.174.0.20") {
		t.Errorf("plan lacks dnsmasq's conf:\n%s", plan)
	}
	d.mustCtl("net-start", "dr")
	ran := ranSteps(d.log.String(), "dr")
	if len(dry) < 10 || !slices.Equal(dry, ran) {
		t.Fatalf("dry run:\n  %s\nstart ran:\n  %s\nplan:\n%s", strings.Join(dry, "\n  "), strings.Join(ran, "\n  "), plan)
	}
	t.Logf("steps:\n  %s", strings.Join(ran, "\n  "))

	pid := func() string { return strings.TrimSpace(host.MustRun("sh", "-c", "cat "+d.runDir+"/dnsmasq/*.pid")) }
	before := pid()
	d.stop()
	d.log = nil
	d.start("--dnsmasq", dns, "--no-default-network")
	ran = ranSteps(d.log.String(), "dr")
	if len(ran) != 1 || !strings.Contains(ran[0], "adopt it") {
		t.Errorf("adoption ran %q, want only dnsmasq's adoption\n%s", ran, d.log)
	}
	if after := pid(); after != before {
		t.Errorf("dnsmasq pid %s → %s: not adopted", before, after)
	}
	d.mustCtl("net-destroy", "dr")
}
