package passt

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	netxml "vnet/xml"
)

// TestPortSpec: libvirt's translation of <portForward> into passt's SPEC,
// with the example of libvirt's documentation.
func TestPortSpec(t *testing.T) {
	for _, c := range []struct {
		pf   libvirtxml.DomainInterfaceSourcePortForward
		want string
	}{
		{libvirtxml.DomainInterfaceSourcePortForward{Proto: "tcp", Ranges: []libvirtxml.DomainInterfaceSourcePortForwardRange{{Start: 2022, To: 22}}}, "2022:22"},
		{libvirtxml.DomainInterfaceSourcePortForward{Proto: "udp", Address: "1.2.3.4", Ranges: []libvirtxml.DomainInterfaceSourcePortForwardRange{
			{Start: 5000, End: 5020, To: 6000}, {Start: 5010, End: 5015, Exclude: "yes"}}}, "1.2.3.4/5000-5020:6000-6020,~5010-5015"},
		{libvirtxml.DomainInterfaceSourcePortForward{Proto: "tcp", Address: "127.0.0.1", Dev: "eth0"}, "127.0.0.1%eth0/all"},
		{libvirtxml.DomainInterfaceSourcePortForward{Proto: "tcp", Ranges: []libvirtxml.DomainInterfaceSourcePortForwardRange{{Start: 8080}}}, "8080"},
	} {
		if got := PortSpec(c.pf); got != c.want {
			t.Errorf("PortSpec(%+v) = %q, want %q", c.pf, got, c.want)
		}
	}
}

// TestArgs: a user-mode network becomes passt's options.
func TestArgs(t *testing.T) {
	n, err := netxml.Parse([]byte(`<network><name>u</name>
  <vnet:forward xmlns:vnet='urn:vnet:network:1' mode='user'>
    <portForward proto='tcp'><range start='2222' to='22'/></portForward>
    <portForward proto='udp' address='127.0.0.1'><range start='5353'/></portForward>
  </vnet:forward>
  <dns><forwarder addr='9.9.9.9'/><forwarder addr='1.1.1.1'/></dns>
  <ip address='10.0.2.2' prefix='24'><dhcp><range start='10.0.2.15' end='10.0.2.20'/></dhcp></ip>
</network>`))
	if err != nil {
		t.Fatal(err)
	}
	if err := netxml.Validate(n); err != nil {
		t.Fatal(err)
	}
	args, err := Args(n)
	if err != nil {
		t.Fatal(err)
	}
	want := "--foreground --stderr --ipv4-only --address 10.0.2.15 --netmask 24 --gateway 10.0.2.2 --dns 9.9.9.9 --dns 1.1.1.1 --tcp-ports 2222:22 --udp-ports 127.0.0.1/5353"
	if got := strings.Join(args, " "); got != want {
		t.Fatalf("args\n got %s\nwant %s", got, want)
	}
}

// TestArgsIPv6: an IPv6 <ip> drops --ipv4-only (both families) or makes
// passt --ipv6-only (IPv6 alone); its address is passt's IPv6 gateway and
// the DHCP range's start the guest's address; IPv6 port forwards and DNS
// servers pass through.
func TestArgsIPv6(t *testing.T) {
	const v4 = `<ip address='10.0.2.2' prefix='24'/>`
	const v6 = `<ip family='ipv6' address='fd00::2' prefix='64'><dhcp><range start='fd00::15' end='fd00::15'/></dhcp></ip>`
	for _, c := range []struct{ ips, fwd, want string }{
		{v4 + v6, `<portForward proto='tcp' address='fd99::1'><range start='2222' to='22'/></portForward>`,
			"--foreground --stderr --address 10.0.2.3 --netmask 24 --gateway 10.0.2.2 --address fd00::15 --gateway fd00::2 --dns 2001:db8::53 --tcp-ports fd99::1/2222:22"},
		{v6, "", "--foreground --stderr --ipv6-only --address fd00::15 --gateway fd00::2 --dns 2001:db8::53"},
		{`<ip family='ipv6' address='fd00::2' prefix='64'/>`, "", "--foreground --stderr --ipv6-only --address fd00::3 --gateway fd00::2 --dns 2001:db8::53"},
	} {
		n, err := netxml.Parse([]byte(`<network><name>u</name><vnet:forward xmlns:vnet='urn:vnet:network:1' mode='user'>` + c.fwd +
			`</vnet:forward><dns><forwarder addr='2001:db8::53'/></dns>` + c.ips + `</network>`))
		if err == nil {
			err = netxml.Validate(n)
		}
		if err != nil {
			t.Fatal(err)
		}
		args, err := Args(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(args, " "); got != c.want {
			t.Errorf("args\n got %s\nwant %s", got, c.want)
		}
	}
}
