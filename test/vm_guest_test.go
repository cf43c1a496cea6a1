package test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
	"vnet/test/vm"
)

// ifupNetdev is the -netdev of a root QEMU whose TAP (named tap) becomes
// a port of network through vnet-qemu-ifup/vnet-qemu-ifdown, and the
// environment those scripts need to find d.
func ifupNetdev(d *daemon, network, tap string) (string, []string) {
	return "tap,id=n0,ifname=" + tap + ",script=" + filepath.Join(binDir, "vnet-qemu-ifup") + ",downscript=" + filepath.Join(binDir, "vnet-qemu-ifdown"),
		[]string{"VNET_SOCKET=" + d.socket(), "VNET_NETWORK=" + network}
}

// tapPluggedInto reports whether the TAP is a port of bridge br.
func tapPluggedInto(host *netnstest.NS, tap, br string) bool {
	out, err := host.Run("ip", "-o", "link", "show", tap)
	return err == nil && strings.Contains(out, " master "+br+" ")
}

var (
	leaseRE = regexp.MustCompile(`VNET-LEASE ip=(\S+) mask=(\S+) router=(\S*) dns=(\S*)`)
	pingRE  = regexp.MustCompile(`VNET-PING-START`)
)

// TestGuestVM: a real QEMU guest (Debian kernel, busybox initramfs, TCG)
// attached with -netdev tap,script=vnet-qemu-ifup (its TAP an adopted port
// of the default NAT network) leases with its hostname (shown by
// net-dhcp-leases and resolvable through the network's DNS), pings an
// upstream namespace through NAT, and loses no ping over 5 kill -9 restarts
// of vnetd. The sub-tests measure how long the guest is offline after its
// bridge is deleted and after net-destroy + net-start.
func TestGuestVM(t *testing.T) {
	netnstest.RequireRoot(t)
	assets := vm.Prepare(t, vm.NetModules)
	host := netnstest.New(t, "vmhost")
	addUpstream(t, host)
	d := newDaemon(t, host)
	d.start()

	const mac, hostname = "52:54:00:7e:57:01", "vnetguest1"
	const tap = "vmtap0"
	netdev, env := ifupNetdev(d, "default", tap)
	g := vm.Start(t, assets, vm.Config{NetNS: host.Name(), Netdev: netdev, Env: env, MAC: mac, Hostname: hostname, Target: "172.31.255.2"})

	_, nic, _ := g.MustWait(0, regexp.MustCompile(`VNET-MAC `), 5*time.Minute)
	m, lease, next := g.MustWait(0, leaseRE, 5*time.Minute)
	ip := m[1]
	t.Logf("vm: boot to NIC up %v, then lease %s after %v (%v from QEMU start)", nic.At.Sub(g.Started).Round(time.Millisecond),
		ip, lease.At.Sub(nic.At).Round(time.Millisecond), lease.At.Sub(g.Started).Round(time.Millisecond))
	if !regexp.MustCompile(`^192\.168\.122\.\d+$`).MatchString(ip) || m[2] != "24" || m[3] != "192.168.122.1" || m[4] != "192.168.122.1" {
		t.Fatalf("lease: %s", m[0])
	}

	// The TAP QEMU made is a port of the network (vnet-qemu-ifup).
	uuid := strings.TrimSpace(d.mustCtl("net-port-list", "default", "--uuid"))
	if xml := d.mustCtl("net-port-dumpxml", "default", uuid); !strings.Contains(xml, "dev='"+tap+"' adopt='yes' persist='no'/>") {
		t.Fatalf("QEMU's TAP is not a port:\n%s", xml)
	}

	leases := d.mustCtl("net-dhcp-leases", "default")
	var row string
	for _, l := range strings.Split(leases, "\n") {
		if strings.Contains(l, mac) {
			row = l
		}
	}
	if row == "" || !strings.Contains(row, ip+"/24") || !strings.Contains(row, hostname) {
		t.Fatalf("net-dhcp-leases has no row with %s %s/24 %s:\n%s", mac, ip, hostname, leases)
	}
	if got := dig(t, host, "192.168.122.1", hostname); got != ip {
		t.Fatalf("dig @192.168.122.1 %s: %q, want %s", hostname, got, ip)
	}

	// Replies come back only through NAT: the upstream has no route to
	// 192.168.122.0/24.
	g.MustWait(next, pingRE, time.Minute)
	if _, err := g.WaitPings(-1, 5, time.Minute); err != nil {
		t.Fatalf("guest → upstream through NAT: %v", err)
	}
	t.Logf("vm: first ping reply after %v from QEMU start", time.Since(g.Started).Round(time.Millisecond))

	t.Run("kill9", func(t *testing.T) {
		before := g.PingMark()
		for i := 0; i < 5; i++ {
			d.kill9()
			d.start()
			// Let pings run while the restarted daemon adopts the network.
			if _, err := g.WaitPings(g.PingMark(), 3, 30*time.Second); err != nil {
				t.Fatalf("restart %d: %v", i+1, err)
			}
		}
		after := g.PingMark()
		if lost := g.Lost(before, after); len(lost) != 0 {
			t.Fatalf("%d of %d pings lost over 5 kill -9 restarts: seq %v", len(lost), after-before, lost)
		}
		t.Logf("vm: 0 of %d pings lost over 5 kill -9 restarts of vnetd", after-before)
	})

	t.Run("bridge-deleted", func(t *testing.T) {
		t0 := time.Now()
		host.MustRun("ip", "link", "del", "virbr0")
		back, err := g.FirstReplyAfter(t0, 10*time.Second)
		if err != nil {
			replugged := tapPluggedInto(host, tap, "virbr0")
			t.Logf("vm: guest offline for more than 10 s after ip link del virbr0 (bridge back: %v, TAP re-plugged: %v)", bridgeExists(host, "virbr0"), replugged)
			// Back online for the next sub-test.
			replug(t, host, g, tap, "virbr0")
			if !replugged {
				t.Fatal("vnet did not re-plug the port's TAP")
			}
			t.Fatal(err)
		}
		took := back.Sub(t0)
		t.Logf("vm: guest pings again %v after ip link del virbr0", took.Round(time.Millisecond))
		if took > time.Second {
			t.Fatalf("guest offline for %v after the bridge was deleted, want ≤ 1 s", took)
		}
	})

	t.Run("destroy-start", func(t *testing.T) {
		d.mustCtl("net-destroy", "default")
		t0 := time.Now()
		d.mustCtl("net-start", "default")
		back, err := g.FirstReplyAfter(t0, 10*time.Second)
		if err != nil {
			replugged := tapPluggedInto(host, tap, "virbr0")
			t.Logf("vm: guest offline for more than 10 s after net-destroy + net-start (TAP re-plugged: %v)", replugged)
			replug(t, host, g, tap, "virbr0")
			if !replugged {
				t.Fatal("vnet did not re-plug the port's TAP")
			}
			t.Fatal(err)
		}
		t.Logf("vm: guest pings again %v after net-start", back.Sub(t0).Round(time.Millisecond))
	})

	// QEMU killed (no downscript): its TAP goes, and so does the port.
	t0 := time.Now()
	g.Stop()
	if !waitFor(5*time.Second, func() bool { return d.mustCtl("net-port-list", "default", "--uuid") == "\n" }) {
		t.Fatal("port still listed 5 s after QEMU was killed")
	}
	t.Logf("vm (vnet-qemu-ifup): port ended %v after QEMU was killed", time.Since(t0).Round(time.Millisecond))
}

func bridgeExists(host *netnstest.NS, br string) bool {
	_, err := host.Run("ip", "link", "show", br)
	return err == nil
}

// replug puts the TAP back on the bridge by hand (waiting for vnet to have
// re-created the bridge) so later sub-tests start from a guest online, and
// logs how long the guest then needs to ping again (what a re-plug by vnet
// will add to the bridge re-creation).
func replug(t *testing.T, host *netnstest.NS, g *vm.VM, tap, br string) {
	t.Helper()
	if !waitFor(10*time.Second, func() bool { return bridgeExists(host, br) }) {
		t.Fatalf("%s not re-created within 10 s", br)
	}
	t0 := time.Now()
	host.MustRun("ip", "link", "set", tap, "master", br)
	back, err := g.FirstReplyAfter(t0, 10*time.Second)
	if err != nil {
		t.Fatalf("guest offline after a manual re-plug: %v", err)
	}
	t.Logf("vm: after a manual re-plug the guest pings again in %v", back.Sub(t0).Round(time.Millisecond))
}
