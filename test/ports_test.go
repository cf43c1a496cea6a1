package test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"vnet/internal/netnstest"
)

// portNetXML is a NAT network without DHCP and DNS, so no dnsmasq runs.
func portNetXML(name, br, subnet string) string {
	return fmt.Sprintf(`<network>
  <name>%s</name>
  <forward mode='nat'/>
  <bridge name='%s' stp='off'/>
  <dns enable='no'/>
  <ip address='%s.1' prefix='24'/>
</network>
`, name, br, subnet)
}

func portXML(uuid, mac, tap string) string {
	return fmt.Sprintf(`<networkport>
  <uuid>%s</uuid>
  <owner>
    <name>guest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='%s'/>
  %s
</networkport>
`, uuid, mac, tap)
}

// nlIn opens a netlink handle in ns.
func nlIn(t testing.TB, ns *netnstest.NS) *netlink.Handle {
	t.Helper()
	nsh, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// plugged reports whether dev is up and a port of the bridge br.
func plugged(h *netlink.Handle, dev, br string) bool {
	l, err := h.LinkByName(dev)
	if err != nil {
		return false
	}
	b, err := h.LinkByName(br)
	if err != nil {
		return false
	}
	return l.Attrs().MasterIndex == b.Attrs().Index && l.Attrs().Flags&net.FlagUp != 0
}

// waitPlugged polls netlink (1 ms) until dev is plugged into br and returns
// how long that took from t0, failing after limit.
func waitPlugged(t testing.TB, h *netlink.Handle, dev, br string, t0 time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for !plugged(h, dev, br) {
		if time.Since(t0) > limit {
			t.Fatalf("%s not plugged into %s within %v", dev, br, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(t0)
}

// TestPortTAPFollowsBridge: a port's TAP made by vnetd is plugged into the
// network's bridge and stays plugged: after `ip link del` of the bridge
// (≤ 1 s), after `ip link set TAP nomaster`, after its own deletion (made
// again), after net-destroy + net-start,
// and over a daemon restart (untouched: same ifindex). Deleting the port
// deletes the TAP; a foreign device is refused unless adopted, and an
// adopted one survives its port.
func TestPortTAPFollowsBridge(t *testing.T) {
	host := netnstest.New(t, "port")
	d := newDaemon(t, host)
	// No network here needs dnsmasq; the path is never run.
	args := []string{"--no-default-network", "--dnsmasq", "/bin/false"}
	d.start(args...)
	h := nlIn(t, host)
	netFile := writeFile(t, "pnet.xml", portNetXML("pnet", "vbr-port", "10.77.0"))
	d.mustCtl("net-define", netFile)
	d.mustCtl("net-start", "pnet")

	const uuid = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"
	portFile := writeFile(t, "port.xml", portXML(uuid, "52:54:00:77:00:02", `<vnet:tap xmlns:vnet='urn:vnet:port:1' user='nobody' group='nogroup'/>`))
	if out := d.mustCtl("net-port-create", "pnet", portFile); out != "Network port "+uuid+" created from "+portFile+"\n\n" {
		t.Fatalf("net-port-create printed %q", out)
	}
	if !plugged(h, "vnet0", "vbr-port") {
		t.Fatal("vnet0 not plugged after net-port-create")
	}
	tap, _ := h.LinkByName("vnet0")
	if got := tap.Attrs().HardwareAddr.String(); got != "fe:54:00:77:00:02" {
		t.Fatalf("tap mac %s", got)
	}
	if xml := d.mustCtl("net-port-dumpxml", "pnet", uuid); !strings.Contains(xml, "<plug type='network' bridge='vbr-port'/>\n  <vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet0' user='nobody' group='nogroup'/>") {
		t.Fatalf("dumpxml:\n%s", xml)
	}
	if info := d.mustCtl("net-info", "pnet"); !strings.Contains(info, "Ports:          1\n") {
		t.Fatalf("net-info:\n%s", info)
	}

	// The bridge deleted: re-created and the TAP re-plugged within 1 s.
	t0 := time.Now()
	host.MustRun("ip", "link", "del", "vbr-port")
	took := waitPlugged(t, h, "vnet0", "vbr-port", t0, time.Second)
	t.Logf("TAP re-plugged %v after the bridge was deleted", took)

	// The TAP taken out of the bridge: put back.
	t0 = time.Now()
	host.MustRun("ip", "link", "set", "vnet0", "nomaster")
	took = waitPlugged(t, h, "vnet0", "vbr-port", t0, time.Second)
	t.Logf("TAP re-plugged %v after nomaster", took)

	// Our TAP deleted by someone: drift repair creates it again.
	t0 = time.Now()
	host.MustRun("ip", "link", "del", "vnet0")
	took = waitPlugged(t, h, "vnet0", "vbr-port", t0, time.Second)
	t.Logf("TAP re-created and plugged %v after its deletion", took)

	// net-destroy keeps the port and its TAP (unplugged); net-start plugs it.
	d.mustCtl("net-destroy", "pnet")
	if _, err := h.LinkByName("vnet0"); err != nil {
		t.Fatalf("TAP gone after net-destroy: %v", err)
	}
	if _, stderr, code := d.ctl("net-undefine", "pnet"); code == 0 || !strings.Contains(stderr, "network 'pnet' still has 1 network port(s)") {
		t.Fatalf("net-undefine with a port: %d %s", code, stderr)
	}
	d.mustCtl("net-start", "pnet")
	if !plugged(h, "vnet0", "vbr-port") {
		t.Fatal("TAP not plugged after net-start")
	}

	// A daemon restart adopts the port without touching the TAP.
	before, _ := h.LinkByName("vnet0")
	d.stop()
	d.start(args...)
	after, err := h.LinkByName("vnet0")
	if err != nil || after.Attrs().Index != before.Attrs().Index || !plugged(h, "vnet0", "vbr-port") {
		t.Fatalf("TAP after restart: %v (index %d → %d)", err, before.Attrs().Index, after.Attrs().Index)
	}
	if list := d.mustCtl("net-port-list", "pnet", "--uuid"); list != uuid+"\n\n" {
		t.Fatalf("net-port-list after restart %q", list)
	}

	// Bad input changes nothing on the host.
	host.MustRun("ip", "tuntap", "add", "dev", "qemu0", "mode", "tap")
	links := host.MustRun("ip", "-o", "link")
	for _, c := range []struct{ tap, want string }{
		{`<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='qemu0'/>`, "error: operation failed: Network interface 'qemu0' already exists and was not created by vnet for this port; to plug it, use <vnet:tap dev='qemu0' adopt='yes'/>\n"},
		{`<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet9' user='no-such-user-vnet'/>`, "error: invalid argument: Failed to parse user 'no-such-user-vnet'\n"},
		{`<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='vnet9' group='no-such-group-vnet'/>`, "error: invalid argument: Failed to parse group 'no-such-group-vnet'\n"},
		{`<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='a-name-too-long-'/>`, "error: XML error: Network interface name 'a-name-too-long-' is too long: 16 bytes, the kernel allows at most 15\n"},
		{`<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='gone0' adopt='yes'/>`, "error: operation failed: tap \"gone0\": does not exist, so it cannot be adopted\n"},
	} {
		f := writeFile(t, "bad.xml", portXML("0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10", "52:54:00:77:00:03", c.tap))
		_, stderr, code := d.ctl("net-port-create", "pnet", f)
		if code == 0 || !strings.HasSuffix(stderr, c.want) || !strings.HasPrefix(stderr, "error: Failed to create network from "+f+"\n") {
			t.Errorf("%s: %d %q", c.tap, code, stderr)
		}
	}
	if got := host.MustRun("ip", "-o", "link"); got != links {
		t.Fatalf("bad input changed the host:\n%s\n---\n%s", links, got)
	}

	// Adopting the foreign TAP plugs it; deleting its port leaves it.
	const adopted = "0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10"
	d.mustCtl("net-port-create", "pnet", writeFile(t, "adopt.xml", portXML(adopted, "52:54:00:77:00:03", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='qemu0' adopt='yes'/>`)))
	if !plugged(h, "qemu0", "vbr-port") {
		t.Fatal("adopted qemu0 not plugged")
	}
	d.mustCtl("net-port-delete", "pnet", adopted)
	if _, err := h.LinkByName("qemu0"); err != nil {
		t.Fatalf("adopted device deleted with its port: %v", err)
	}

	if out := d.mustCtl("net-port-delete", "pnet", uuid); out != "Network port "+uuid+" deleted\n\n" {
		t.Fatalf("net-port-delete printed %q", out)
	}
	if _, err := h.LinkByName("vnet0"); err == nil {
		t.Fatal("vnet0 still exists after net-port-delete")
	}
	d.mustCtl("net-destroy", "pnet")
	d.mustCtl("net-undefine", "pnet")
}
