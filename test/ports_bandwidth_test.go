package test

import (
	"strings"
	"testing"

	"vnet/internal/netnstest"
)

// TestPortBandwidthCLI: a port's <bandwidth> through vnetctl. On the real
// host, a floor on a network without inbound QoS is refused with libvirt's
// message, and a TAP whose shaping the kernel cannot do is refused with the
// precise "not supported by this kernel" error before anything changes (or,
// on a kernel that can, shaped with htb). With the test driver (floor
// admission needs no kernel), net-port-dumpxml shows the class id each
// floor got, the lowest free one, and an overcommit is refused.
func TestPortBandwidthCLI(t *testing.T) {
	host := netnstest.New(t, "pbwc")
	d := newDaemon(t, host)
	d.start("--no-default-network", "--dnsmasq", "/bin/false")
	d.mustCtl("net-create", writeFile(t, "pnet.xml", portNetXML("pbw", "vbr-pbwc", "10.78.0")))
	const (
		uuid1 = "5d744f21-ba4a-4d6e-bdb2-30a35ff3207d"
		uuid2 = "0a7e2c9e-4b8f-4d4c-9a55-2f7d3c1e8b10"
		uuid3 = "3c2f0e65-35b4-4a5c-9a0f-1f6a1f1b6e01"
	)
	links := host.MustRun("ip", "-o", "link")
	f := writeFile(t, "floor.xml", portXML(uuid1, "52:54:00:78:00:02", `<bandwidth><inbound average='100' floor='50'/></bandwidth>`))
	if _, stderr, code := d.ctl("net-port-create", "pbw", f); code == 0 || !strings.HasSuffix(stderr, "error: Operation not supported: Invalid use of 'floor' on interface with MAC address 52:54:00:78:00:02 - network 'pbw' has no inbound QoS set\n") {
		t.Errorf("floor without inbound QoS: %d %q", code, stderr)
	}
	f = writeFile(t, "shaped.xml", portXML(uuid1, "52:54:00:78:00:02", `<bandwidth><inbound average='1000'/><outbound average='500'/></bandwidth><vnet:tap xmlns:vnet='urn:vnet:port:1'/>`))
	_, stderr, code := d.ctl("net-port-create", "pbw", f)
	switch {
	case code != 0 && strings.Contains(stderr, "error: unsupported configuration: bandwidth on 'vnet0': not supported by this kernel: "):
		if got := host.MustRun("ip", "-o", "link"); got != links {
			t.Fatalf("refused port changed the host:\n%s\n---\n%s", links, got)
		}
		if list := d.mustCtl("net-port-list", "pbw", "--uuid"); list != "\n" {
			t.Fatalf("refused port listed: %q", list)
		}
		t.Logf("kernel lacks tc parts; refused: %s", strings.TrimSpace(stderr))
	case code == 0:
		if q := host.MustRun("tc", "qdisc", "show", "dev", "vnet0"); !strings.Contains(q, "htb 1:") || !strings.Contains(q, "ingress") {
			t.Fatalf("vnet0 qdiscs:\n%s", q)
		}
		d.mustCtl("net-port-delete", "pbw", uuid1)
	default:
		t.Fatalf("port with bandwidth: %d %q", code, stderr)
	}
	d.mustCtl("net-destroy", "pbw")
	d.stop()

	// Floors and class ids with the test driver.
	td := newDaemon(t, netnstest.New(t, "pbwt"))
	td.start("--driver", "test")
	td.mustCtl("net-create", writeFile(t, "qos.xml", `<network><name>qos</name><forward mode='nat'/><bridge name='virbr7'/><bandwidth><inbound average='1000' peak='2000'/></bandwidth><ip address='10.79.0.1' prefix='24'/></network>`))
	floor := func(uuid, mac, f string) string {
		return writeFile(t, "p.xml", portXML(uuid, mac, `<bandwidth><inbound average='100' floor='`+f+`'/></bandwidth>`))
	}
	td.mustCtl("net-port-create", "qos", floor(uuid1, "52:54:00:79:00:01", "500"))
	td.mustCtl("net-port-create", "qos", floor(uuid2, "52:54:00:79:00:02", "1000"))
	if xml := td.mustCtl("net-port-dumpxml", "qos", uuid2); !strings.Contains(xml, "  <bandwidth classID='4'>\n    <inbound average='100' floor='1000'/>\n  </bandwidth>\n") {
		t.Fatalf("net-port-dumpxml:\n%s", xml)
	}
	if _, stderr, code := td.ctl("net-port-create", "qos", floor(uuid3, "52:54:00:79:00:03", "501")); code == 0 || !strings.HasSuffix(stderr, "error: Requested operation is not valid: Cannot plug '52:54:00:79:00:03' interface into 'virbr7' because new combined inbound floor=2001 would overcommit peak=2000 on network 'qos'\n") {
		t.Errorf("overcommit: %d %q", code, stderr)
	}
	td.mustCtl("net-port-delete", "qos", uuid1)
	td.mustCtl("net-port-create", "qos", floor(uuid3, "52:54:00:79:00:03", "500"))
	if xml := td.mustCtl("net-port-dumpxml", "qos", uuid3); !strings.Contains(xml, "<bandwidth classID='3'>") {
		t.Fatalf("the freed class id is not reused:\n%s", xml)
	}
}
