package test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"vnet/internal/netnstest"
	"vnet/test/vm"
)

// guestTAP asks vnetd for the TAP a QEMU guest opens: a network port with
// <vnet:tap dev='NAME'/>, so vnetd creates it (vnet_hdr, the network's MTU),
// plugs it into the network's bridge and re-plugs it whenever the bridge is
// re-created. It is the ONE place the VM tests obtain a guest's TAP.
func guestTAP(t testing.TB, d *daemon, network, name, mac string) string {
	t.Helper()
	const uuid = "6d1f6a0e-3b0c-4d9e-9a43-0c5d7e1b2a01"
	port := writeFile(t, name+"-port.xml", portXML(uuid, mac, "<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='"+name+"'/>"))
	t0 := time.Now()
	d.mustCtl("net-port-create", network, port)
	t.Logf("vm: net-port-create of TAP %s took %v", name, time.Since(t0).Round(time.Microsecond))
	return name
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
// on the default NAT network leases with its hostname (shown by
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
	tap := guestTAP(t, d, "default", "vmtap0", mac)
	if !tapPluggedInto(host, tap, "virbr0") {
		t.Fatalf("%s not plugged into virbr0 after net-port-create", tap)
	}
	g := vm.Start(t, assets, vm.Config{NetNS: host.Name(), TAP: tap, MAC: mac, Hostname: hostname, Target: "172.31.255.2"})

	_, nic, _ := g.MustWait(0, regexp.MustCompile(`VNET-MAC `), 5*time.Minute)
	m, lease, next := g.MustWait(0, leaseRE, 5*time.Minute)
	ip := m[1]
	t.Logf("vm: boot to NIC up %v, then lease %s after %v (%v from QEMU start)", nic.At.Sub(g.Started).Round(time.Millisecond),
		ip, lease.At.Sub(nic.At).Round(time.Millisecond), lease.At.Sub(g.Started).Round(time.Millisecond))
	if !regexp.MustCompile(`^192\.168\.122\.\d+$`).MatchString(ip) || m[2] != "24" || m[3] != "192.168.122.1" || m[4] != "192.168.122.1" {
		t.Fatalf("lease: %s", m[0])
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

	// vnetd re-creates the bridge and re-plugs the port's TAP: the guest
	// pings again within a second.
	t.Run("bridge-deleted", func(t *testing.T) {
		t0 := time.Now()
		host.MustRun("ip", "link", "del", "virbr0")
		offline(t, g, host, tap, t0, time.Second, "ip link del virbr0")
	})

	// A TAP taken off the bridge is put back by drift repair.
	t.Run("nomaster", func(t *testing.T) {
		t0 := time.Now()
		host.MustRun("ip", "link", "set", tap, "nomaster")
		offline(t, g, host, tap, t0, time.Second, "ip link set "+tap+" nomaster")
	})

	// net-destroy keeps the port (its TAP stays, unplugged); net-start plugs
	// it into the new bridge.
	t.Run("destroy-start", func(t *testing.T) {
		d.mustCtl("net-destroy", "default")
		// The bridge is out of service at once and deleted with the next
		// batch of retired bridges (within about 100 ms).
		waitFor(2*time.Second, func() bool { return !linkExists(host, "virbr0") })
		if linkExists(host, "virbr0") || !linkExists(host, tap) {
			t.Fatalf("after net-destroy: bridge present %v, TAP present %v; want false, true", linkExists(host, "virbr0"), linkExists(host, tap))
		}
		t0 := time.Now()
		d.mustCtl("net-start", "default")
		offline(t, g, host, tap, t0, 5*time.Second, "net-start")
	})
}

// offline waits for the guest's first ping reply after the fault injected at
// t0, fails when it takes longer than limit, and logs how long the TAP and
// the guest took to come back.
func offline(t *testing.T, g *vm.VM, host *netnstest.NS, tap string, t0 time.Time, limit time.Duration, what string) {
	t.Helper()
	var plugged time.Duration
	if waitFor(10*time.Second, func() bool { return tapPluggedInto(host, tap, "virbr0") }) {
		plugged = time.Since(t0)
	}
	back, err := g.FirstReplyAfter(t0, 10*time.Second)
	if err != nil {
		t.Fatalf("after %s: %v (TAP plugged into virbr0: %v)", what, err, tapPluggedInto(host, tap, "virbr0"))
	}
	took := back.Sub(t0)
	t.Logf("vm: after %s the TAP was plugged again within %v and the guest pinged again after %v",
		what, plugged.Round(time.Millisecond), took.Round(time.Millisecond))
	if took > limit {
		t.Fatalf("guest offline for %v after %s, want ≤ %v", took, what, limit)
	}
}

func linkExists(host *netnstest.NS, dev string) bool {
	_, err := host.Run("ip", "link", "show", dev)
	return err == nil
}
