package daemon

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vnet/dnsmasq"
	"vnet/internal/netnstest"
	"vnet/network"
	netxml "vnet/xml"
)

// newNSManager is a manager over the real host, for use inside ns.Do
// (networks without IP addresses: no dnsmasq).
func newNSManager(t *testing.T) (*Manager, string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dns, err := dnsmasq.NewManager(dnsmasq.Config{Binary: "/bin/false", StateDir: t.TempDir(), RunDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	run := t.TempDir()
	m, err := NewManager(t.TempDir(), run, &realHost{fw: okFirewall{}, dns: dns, log: log}, log)
	if err != nil {
		t.Fatal(err)
	}
	return m, run
}

// in runs f inside the namespace, failing the test on an error.
func in(t *testing.T, ns *netnstest.NS, f func() error) {
	t.Helper()
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

// TestPortBandwidthOnHost: a port's <bandwidth> is shaped on its TAP after
// the plug, found and repaired when someone removes it, restored on a TAP
// made again, and taken off an adopted device at port deletion. On a kernel
// without the tc parts it needs, the port is refused with the precise
// error before anything changes (no TAP, no stored port).
func TestPortBandwidthOnHost(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "pbw")
	m, run := newNSManager(t)
	in(t, ns, func() error {
		_, err := m.Create(`<network><name>pbw</name><bridge name='vbr-pbw'/></network>`)
		return err
	})
	bw := `<bandwidth><inbound average='1000' peak='2000' burst='64'/><outbound average='500'/></bandwidth>`
	tap := `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap-pbw'/>`
	before := ns.MustRun("ip", "-o", "link")
	var createErr error
	in(t, ns, func() error {
		_, createErr = m.CreatePort("pbw", portXML(port1, "52:54:00:00:00:01", bw+tap))
		return nil
	})
	var unsupported *network.UnsupportedKernelError
	if errors.As(createErr, &unsupported) {
		if got := netxml.Message(createErr); !strings.HasPrefix(got, "unsupported configuration: bandwidth on 'tap-pbw': not supported by this kernel: ") {
			t.Errorf("error %q", got)
		}
		if after := ns.MustRun("ip", "-o", "link"); after != before {
			t.Fatalf("links changed:\n%s\n---\n%s", before, after)
		}
		if _, err := os.Stat(filepath.Join(run, "ports", "pbw", port1+".xml")); !os.IsNotExist(err) {
			t.Fatalf("refused port stored: %v", err)
		}
		t.Skipf("kernel lacks tc parts; refused precisely: %v", createErr)
	}
	if createErr != nil {
		t.Fatal(createErr)
	}
	shaped := func(dev string) bool {
		q := ns.MustRun("tc", "qdisc", "show", "dev", dev)
		return strings.Contains(q, "htb 1:") && strings.Contains(q, "ingress")
	}
	if !shaped("tap-pbw") {
		t.Fatalf("tap qdiscs:\n%s", ns.MustRun("tc", "qdisc", "show", "dev", "tap-pbw"))
	}
	live := mustLive(t, m, "pbw")
	// Someone removes the shaping: verify sees it, the port converge
	// restores it.
	ns.MustRun("tc", "qdisc", "del", "dev", "tap-pbw", "root")
	var drift, fixed []string
	in(t, ns, func() error { drift = m.verifyPorts(live); fixed = m.convergePorts(live); return nil })
	if !strings.Contains(strings.Join(drift, "; "), "tc root qdisc htb 1: on tap-pbw missing") || len(fixed) == 0 || !shaped("tap-pbw") {
		t.Fatalf("drift %v, fixed %v", drift, fixed)
	}
	// A TAP deleted by someone comes back shaped.
	ns.MustRun("ip", "link", "del", "tap-pbw")
	in(t, ns, func() error { m.convergePorts(live); return nil })
	if !shaped("tap-pbw") {
		t.Fatal("re-created tap not shaped")
	}
	in(t, ns, func() error { drift = m.verifyPorts(live); return nil })
	if len(drift) != 0 {
		t.Fatalf("drift after repair: %v", drift)
	}

	// An adopted device loses the port's shaping, not itself, at deletion.
	ns.MustRun("ip", "tuntap", "add", "dev", "tap-ad", "mode", "tap")
	in(t, ns, func() error {
		_, err := m.CreatePort("pbw", portXML(port2, "52:54:00:00:00:02", bw+`<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap-ad' adopt='yes'/>`))
		return err
	})
	if !shaped("tap-ad") {
		t.Fatal("adopted tap not shaped")
	}
	in(t, ns, func() error { _, err := m.DeletePort("pbw", port2); return err })
	if q := ns.MustRun("tc", "qdisc", "show", "dev", "tap-ad"); strings.Contains(q, "htb") || strings.Contains(q, "ingress") {
		t.Fatalf("adopted tap keeps the shaping:\n%s", q)
	}
}

// TestPortFloorOnHost: a port's inbound floor gets class 1:<id> and its MAC
// filter on the network's bridge, shown as classID by net-port-dumpxml,
// restored with the bridge when it is re-created, removed at port deletion.
// The network's inbound shaping needs sfq: on a kernel without it the test
// skips with the start's precise error.
func TestPortFloorOnHost(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "pfl")
	m, _ := newNSManager(t)
	var startErr error
	in(t, ns, func() error {
		_, startErr = m.Create(`<network><name>pfl</name><bridge name='vbr-pfl'/><bandwidth><inbound average='1000' peak='2000'/></bandwidth></network>`)
		return nil
	})
	var unsupported *network.UnsupportedKernelError
	if errors.As(startErr, &unsupported) {
		t.Skipf("kernel lacks tc parts for the network's inbound QoS: %v", startErr)
	}
	if startErr != nil {
		t.Fatal(startErr)
	}
	in(t, ns, func() error {
		_, err := m.CreatePort("pfl", portXML(port1, "52:54:00:00:00:01", `<bandwidth><inbound average='100' floor='300'/></bandwidth>`))
		return err
	})
	hasFloor := func() bool {
		c := ns.MustRun("tc", "class", "show", "dev", "vbr-pfl")
		f := ns.MustRun("tc", "filter", "show", "dev", "vbr-pfl")
		return strings.Contains(c, "class htb 1:3 parent 1:1") && strings.Contains(f, "800::803")
	}
	if !hasFloor() {
		t.Fatalf("no floor class:\n%s\n%s", ns.MustRun("tc", "class", "show", "dev", "vbr-pfl"), ns.MustRun("tc", "filter", "show", "dev", "vbr-pfl"))
	}
	if xml, err := m.PortXML("pfl", port1); err != nil || !strings.Contains(xml, "<bandwidth classID='3'>") {
		t.Fatalf("dumpxml: %v\n%s", err, xml)
	}
	// The bridge is deleted and re-created by the network's converge:
	// the floor class comes back with it.
	ns.MustRun("ip", "link", "del", "vbr-pfl")
	live := mustLive(t, m, "pfl")
	in(t, ns, func() error { _, err := m.host.Converge(live); return err })
	if !hasFloor() {
		t.Fatal("floor class not restored with the bridge")
	}
	in(t, ns, func() error { _, err := m.DeletePort("pfl", port1); return err })
	if c := ns.MustRun("tc", "class", "show", "dev", "vbr-pfl"); strings.Contains(c, "1:3") {
		t.Fatalf("floor class left:\n%s", c)
	}
}
