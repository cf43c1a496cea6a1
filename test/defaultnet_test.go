package test

import (
	"strings"
	"testing"

	"vnet/internal/netnstest"
)

// TestDefaultNetworkBesideLibvirt: on a host where libvirt's default network
// already holds virbr0 and 192.168.122.0/24, vnetd's first start defines its
// default network on virbr1 and 192.168.123.0/24, starts it, says so in its
// log, and leaves the other bridge alone.
func TestDefaultNetworkBesideLibvirt(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "dn")
	host.MustRun("ip", "link", "add", "virbr0", "type", "bridge")
	host.MustRun("ip", "addr", "add", "192.168.122.1/24", "dev", "virbr0")
	host.MustRun("ip", "link", "set", "virbr0", "up")

	d := newDaemon(t, host)
	d.start()
	// The API answers after autostart, so the network is up by now.
	if out := d.mustCtl("net-list", "--name"); out != "default\n\n" {
		t.Fatalf("active networks: %q\nvnetd log:\n%s", out, d.log)
	}
	x := d.mustCtl("net-dumpxml", "--inactive", "default")
	for _, want := range []string{"<bridge name='virbr1' stp='off' delay='0'/>",
		"<ip address='192.168.123.1' netmask='255.255.255.0'>",
		"<range start='192.168.123.2' end='192.168.123.254'/>"} {
		if !strings.Contains(x, want) {
			t.Errorf("definition lacks %s:\n%s", want, x)
		}
	}
	if out := host.MustRun("ip", "-4", "-br", "addr", "show", "dev", "virbr1"); !strings.Contains(out, "192.168.123.1/24") {
		t.Errorf("virbr1's addresses: %s", out)
	}
	if out := host.MustRun("ip", "-o", "link", "show", "dev", "virbr1"); !strings.Contains(out, ",UP") && !strings.Contains(out, "<UP") {
		t.Errorf("virbr1 not up: %s", out)
	}
	out := host.MustRun("ip", "-4", "-br", "addr", "show", "dev", "virbr0")
	if f := strings.Fields(out); len(f) != 3 || f[2] != "192.168.122.1/24" {
		t.Errorf("the foreign virbr0's addresses changed: %s", out)
	}
	if !strings.Contains(d.log.String(), "the default network takes the next free bridge and subnet") ||
		!strings.Contains(d.log.String(), "bridge=virbr1 subnet=192.168.123.0/24") {
		t.Errorf("vnetd does not say where the default network went:\n%s", d.log)
	}
}
