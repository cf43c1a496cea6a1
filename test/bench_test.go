package test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"vnet/daemon/api"
	"vnet/daemon/client"
	"vnet/internal/netnstest"
)

const benchXML = `<network>
  <name>bench</name>
  <forward mode='nat'/>
  <bridge name='vbr-bench' stp='off'/>
  <ip address='10.123.0.1' prefix='24'>
    <dhcp>
      <range start='10.123.0.2' end='10.123.0.254'/>
    </dhcp>
  </ip>
</network>
`

// settle is the pause between iterations, so that each operation is measured
// on its own rather than behind the background work of the one before.
const settle = 100 * time.Millisecond

type samples []time.Duration

func (s samples) stats() (median, p95 time.Duration) {
	c := append(samples(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2], c[(len(c)*95+99)/100-1]
}

func report(b *testing.B, what string, s samples) {
	med, p95 := s.stats()
	fmt.Printf("%-28s n=%-3d median %7.2f ms   p95 %7.2f ms\n", what, len(s), ms(med), ms(p95))
	b.ReportMetric(ms(med), strings.ReplaceAll(what, " ", "-")+"-median-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkLifecycle prints median and p95 of net-define, net-start and
// net-destroy of a NAT network with DHCP, through the API (daemon time) and
// through the vnetctl binary (what a user waits for, comparable to virsh).
func BenchmarkLifecycle(b *testing.B) {
	netnstest.RequireRoot(b)
	host := netnstest.New(b, "bench")
	d := newDaemon(b, host)
	d.start("--no-default-network")
	c := client.New(d.socket())
	ctx := context.Background()
	const n = 40
	var def, start, destroy, undef, gone samples
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Define(ctx, benchXML); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := c.Start(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := c.Destroy(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if _, err := c.Undefine(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		def, start, destroy, undef = append(def, t1.Sub(t0)), append(start, t2.Sub(t1)), append(destroy, t3.Sub(t2)), append(undef, t4.Sub(t3))
		// Measure each operation on its own: let the kernel finish
		// unregistering the last bridge (≈40 ms, in the background after
		// net-destroy; a start of the same name waits for it) before the
		// next start.
		gone = append(gone, waitLinkGone(b, host, "vbr-bench", t3))
		time.Sleep(settle)
	}
	report(b, "bridge gone after destroy", gone)
	report(b, "api net-define", def)
	report(b, "api net-start", start)
	report(b, "api net-destroy", destroy)
	report(b, "api net-undefine", undef)

	file := writeFile(b, "bench.xml", benchXML)
	ctl := func(args ...string) time.Duration {
		t0 := time.Now()
		cmd := exec.Command(filepath.Join(binDir, "vnetctl"), append([]string{"--socket", d.socket()}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("vnetctl %v: %v\n%s", args, err, out)
		}
		return time.Since(t0)
	}
	def, start, destroy = nil, nil, nil
	for i := 0; i < n; i++ {
		def = append(def, ctl("net-define", file))
		start = append(start, ctl("net-start", "bench"))
		destroy = append(destroy, ctl("net-destroy", "bench"))
		ctl("net-undefine", "bench")
		waitLinkGone(b, host, "vbr-bench", time.Now())
		time.Sleep(settle)
	}
	report(b, "vnetctl net-define", def)
	report(b, "vnetctl net-start", start)
	report(b, "vnetctl net-destroy", destroy)
}

// BenchmarkFirstLease prints the time from a new guest's link-up on the default
// network to its first DHCP lease (libvirt: 9.4 s with STP and dnsmasq's ping).
func BenchmarkFirstLease(b *testing.B) {
	netnstest.RequireRoot(b)
	host := netnstest.New(b, "lease")
	d := newDaemon(b, host)
	d.start()
	var lease samples
	for i := 0; i < 10; i++ {
		g := netnstest.New(b, fmt.Sprintf("g%d", i))
		port := fmt.Sprintf("vpl%d", i)
		host.MustRun("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", g.Name())
		host.MustRun("ip", "link", "set", port, "master", "virbr0")
		t0 := time.Now()
		host.MustRun("ip", "link", "set", port, "up")
		g.MustRun("ip", "link", "set", "eth0", "up")
		took := (&guest{NS: g, port: port}).dhcp(b)
		lease = append(lease, time.Since(t0))
		_ = took
		g.Delete()
	}
	report(b, "first DHCP lease", lease)
}

// waitLinkGone polls until link is gone and returns the time since t0.
func waitLinkGone(b *testing.B, ns *netnstest.NS, link string, t0 time.Time) time.Duration {
	for i := 0; i < 1000; i++ {
		var gone bool
		_ = ns.Do(func() error {
			// netlink, not /sys: sysfs shows the namespace it was mounted in.
			_, err := netlink.LinkByName(link)
			gone = err != nil
			return nil
		})
		if gone {
			return time.Since(t0)
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("%s not gone", link)
	return 0
}

// BenchmarkPorts prints the time of a net-port-create with a TAP (through
// the API and through vnetctl) and the time until a guest's TAP is plugged
// again after `ip link del` of its bridge (re-created and re-plugged by
// drift repair).
func BenchmarkPorts(b *testing.B) {
	netnstest.RequireRoot(b)
	host := netnstest.New(b, "bports")
	d := newDaemon(b, host)
	d.start("--no-default-network", "--dnsmasq", "/bin/false")
	c := client.New(d.socket())
	ctx := context.Background()
	h := nlIn(b, host)
	if _, err := c.Create(ctx, portNetXML("bports", "vbr-bports", "10.78.0")); err != nil {
		b.Fatal(err)
	}
	const n = 20
	tap := `<vnet:tap xmlns:vnet='urn:vnet:port:1' user='nobody'/>`
	var create, createCtl, replug samples
	for i := 0; i < n; i++ {
		uuid := fmt.Sprintf("5d744f21-ba4a-4d6e-bdb2-%012x", i)
		t0 := time.Now()
		if _, err := c.CreatePort(ctx, "bports", api.PortRequest{XML: portXML(uuid, "52:54:00:78:00:02", tap)}); err != nil {
			b.Fatal(err)
		}
		create = append(create, time.Since(t0))
		t0 = time.Now()
		host.MustRun("ip", "link", "del", "vbr-bports")
		replug = append(replug, waitPlugged(b, h, "vnet0", "vbr-bports", t0, 5*time.Second))
		if _, err := c.DeletePort(ctx, "bports", uuid); err != nil {
			b.Fatal(err)
		}
		file := writeFile(b, "port.xml", portXML(uuid, "52:54:00:78:00:02", tap))
		t0 = time.Now()
		d.mustCtl("net-port-create", "bports", file)
		createCtl = append(createCtl, time.Since(t0))
		if _, err := c.DeletePort(ctx, "bports", uuid); err != nil {
			b.Fatal(err)
		}
		// Past the repair rate limit (a burst of 5, then one per 2 s).
		time.Sleep(settle + 2*time.Second)
	}
	report(b, "api net-port-create (tap)", create)
	report(b, "vnetctl net-port-create", createCtl)
	report(b, "tap re-plug after bridge del", replug)
}
