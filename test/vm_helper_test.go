package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
	"vnet/test/vm"
)

// TestGuestVMBridgeHelper: an unprivileged QEMU (uid nobody, with a group
// in vnetd's access list) attached with -netdev bridge,helper=vnet-bridge-helper
// leases on the default network, pings the upstream namespace through NAT,
// shows as a port owned by nobody, is re-plugged within 1 s after ip link
// del of the bridge, and its port ends when QEMU exits. A QEMU of a user
// not in the list fails to start with the helper's precise message and
// nothing is created.
func TestGuestVMBridgeHelper(t *testing.T) {
	netnstest.RequireRoot(t)
	assets := vm.Prepare(t, vm.NetModules)
	host := netnstest.New(t, "vmhelper")
	addUpstream(t, host)
	d := newDaemon(t, host)
	d.start()
	if err := os.WriteFile(filepath.Join(d.configDir, "bridge-helper.conf"), []byte("allow default 4711\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(binDir, "vnet-bridge-helper")
	env := []string{"VNET_HELPER_SOCKET=" + filepath.Join(d.runDir, "vnetd-helper.sock")}
	const mac = "52:54:00:7e:57:02"
	// A space in helper= makes QEMU run it through sh: --mac= rides along.
	netdev := "bridge,id=n0,br=virbr0,helper=" + helper + " --mac=" + mac
	asNobody := func(groups string) []string {
		return []string{"setpriv", "--reuid=65534", "--regid=65534", "--groups=" + groups}
	}

	// Refused: QEMU does not start, nothing is created.
	links := host.MustRun("ip", "-o", "link")
	bad := vm.Start(t, assets, vm.Config{NetNS: host.Name(), Netdev: netdev, MAC: mac, Wrap: asNobody("4712"), Env: env, Timeout: time.Minute})
	if err := bad.WaitExit(time.Minute); err != nil {
		t.Fatal(err)
	}
	if c := bad.Console(); !strings.Contains(c, "vnet-bridge-helper: user 'nobody' may not attach to network 'default'") {
		t.Fatalf("refused QEMU printed:\n%s", c)
	}
	if got := host.MustRun("ip", "-o", "link"); got != links {
		t.Fatalf("a refused QEMU changed the host:\n%s\n---\n%s", links, got)
	}

	g := vm.Start(t, assets, vm.Config{NetNS: host.Name(), Netdev: netdev, MAC: mac, Wrap: asNobody("4711"), Env: env,
		Hostname: "helperguest", Target: "172.31.255.2"})
	leaseAndPing(t, g, "bridge helper, QEMU as nobody")

	uuid := strings.TrimSpace(d.mustCtl("net-port-list", "default", "--uuid"))
	xml := d.mustCtl("net-port-dumpxml", "default", uuid)
	for _, want := range []string{"<name>nobody</name>", "<mac address='" + mac + "'/>", "user='65534' persist='no'/>"} {
		if !strings.Contains(xml, want) {
			t.Fatalf("port XML lacks %s:\n%s", want, xml)
		}
	}

	replugThenEnd(t, g, d, host, "bridge helper")
}

// leaseAndPing waits for the guest's lease on the default network (logging
// how long it took from NIC up and from QEMU's start) and for 5 answered
// pings to the upstream namespace through NAT.
func leaseAndPing(t *testing.T, g *vm.VM, path string) {
	t.Helper()
	_, nic, _ := g.MustWait(0, regexp.MustCompile(`VNET-MAC `), 5*time.Minute)
	m, lease, next := g.MustWait(0, leaseRE, 5*time.Minute)
	t.Logf("vm (%s): lease %s %v after NIC up, %v after QEMU start", path, m[1],
		lease.At.Sub(nic.At).Round(time.Millisecond), lease.At.Sub(g.Started).Round(time.Millisecond))
	if !strings.HasPrefix(m[1], "192.168.122.") {
		t.Fatalf("lease: %s", m[0])
	}
	g.MustWait(next, pingRE, time.Minute)
	if _, err := g.WaitPings(-1, 5, time.Minute); err != nil {
		t.Fatalf("guest → upstream through NAT: %v", err)
	}
}

// replugThenEnd deletes the default network's bridge and checks the guest
// pings again within a second (vnetd re-creates the bridge and re-plugs the
// port's TAP), then kills QEMU and checks the port ends with its TAP.
func replugThenEnd(t *testing.T, g *vm.VM, d *daemon, host *netnstest.NS, path string) {
	t.Helper()
	t0 := time.Now()
	host.MustRun("ip", "link", "del", "virbr0")
	back, err := g.FirstReplyAfter(t0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took := back.Sub(t0); took > time.Second {
		t.Fatalf("guest offline for %v after the bridge was deleted, want ≤ 1 s", took)
	} else {
		t.Logf("vm (%s): guest pings again %v after ip link del virbr0", path, took.Round(time.Millisecond))
	}

	t0 = time.Now()
	g.Stop()
	if !waitFor(5*time.Second, func() bool { return d.mustCtl("net-port-list", "default", "--uuid") == "\n" }) {
		t.Fatal("port still listed 5 s after QEMU was killed")
	}
	t.Logf("vm (%s): port ended %v after QEMU was killed", path, time.Since(t0).Round(time.Millisecond))
}

// TestGuestVMQemuIfup: a root QEMU with -netdev tap,script=vnet-qemu-ifup,
// downscript=vnet-qemu-ifdown. The TAP QEMU makes becomes an adopted port of
// the default network (the script's default): the guest leases, pings the
// upstream namespace through NAT, is re-plugged ≤ 1 s after `ip link del` of
// the bridge, and its port ends when QEMU is killed.
func TestGuestVMQemuIfup(t *testing.T) {
	netnstest.RequireRoot(t)
	assets := vm.Prepare(t, vm.NetModules)
	host := netnstest.New(t, "vmifup")
	addUpstream(t, host)
	d := newDaemon(t, host)
	d.start()
	const mac = "52:54:00:7e:57:03"
	netdev := "tap,id=n0,ifname=qtap0,script=" + filepath.Join(binDir, "vnet-qemu-ifup") + ",downscript=" + filepath.Join(binDir, "vnet-qemu-ifdown")
	g := vm.Start(t, assets, vm.Config{NetNS: host.Name(), Netdev: netdev, MAC: mac, Env: []string{"VNET_SOCKET=" + d.socket()},
		Hostname: "ifupguest", Target: "172.31.255.2"})
	leaseAndPing(t, g, "qemu-ifup, root QEMU")
	uuid := strings.TrimSpace(d.mustCtl("net-port-list", "default", "--uuid"))
	if xml := d.mustCtl("net-port-dumpxml", "default", uuid); !strings.Contains(xml, "dev='qtap0' adopt='yes'") {
		t.Fatalf("port XML:\n%s", xml)
	}

	replugThenEnd(t, g, d, host, "qemu-ifup")
}
