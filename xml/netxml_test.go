package netxml

import (
	"regexp"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

// doc wraps body into a network named "t".
func doc(body string) string { return "<network><name>t</name>" + body + "</network>" }

const natIP = `<forward mode='nat'/><ip address='10.201.0.1' prefix='24'/>`

func mustParse(t *testing.T, s string) *Network {
	t.Helper()
	n, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, s)
	}
	return n
}

func mustFormat(t *testing.T, n *Network, f Flags) string {
	t.Helper()
	s, err := Format(n, f)
	if err != nil {
		t.Fatalf("Format: %v", err)
	}
	return s
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		kind           Kind
	}{
		{"empty", "", "(network_definition):1: Document is empty\n(null)\n^", KindPlain},
		{"blank", "  \n", "(network_definition):2: Document is empty\n(null)\n^", KindPlain},
		{"mismatch", "<network>\n  <name>x</name>\n  <bridge name='a'>\n</network>\n",
			"(network_definition):4: Opening and ending tag mismatch: bridge line 3 and network\n</network>\n----------^", KindPlain},
		{"premature end", "<network>\n<name>x</name>\n", "(network_definition):3: Premature end of data in tag network line 1\n\n^", KindPlain},
		{"extra content", "<network><name>x</name></network><network/>", "(network_definition):1: Extra content at the end of the document\n<network><name>x</name></network><network/>\n-------------------------------------------^", KindPlain},
		{"wrong root", "<domain/>", "XML error: expecting root element of 'network', not 'domain'", KindXML},
		{"no name", "<network><uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid></network>", "missing name information", KindPlain},
		{"empty name", "<network><name></name></network>", "missing name information", KindPlain},
		{"slash", "<network><name>a/b</name></network>", "invalid char in name: /", KindPlain},
		{"newline", "<network><name>a&#10;b</name></network>", "invalid char in name: 0x0a", KindPlain},
		{"leading dot", "<network><name>.hidden</name></network>", "XML error: network name '.hidden' must not start with '.'", KindXML},
		{"long name", "<network><name>" + strings.Repeat("n", 201) + "</name></network>", "XML error: network name is too long: 201 bytes, the limit is 200", KindXML},
		{"bad uuid", doc("<uuid>xyz</uuid>"), "internal error: malformed uuid element", KindInternal},
		{"short uuid", doc("<uuid>81ff0d90c91e</uuid>"), "internal error: malformed uuid element", KindInternal},
		{"bad address", "<network><name>ref-e09</name><ip address='10.209.0.300' netmask='255.255.255.0'/></network>",
			"XML error: Invalid address '10.209.0.300' in network 'ref-e09'", KindXML},
		{"missing address", doc("<ip prefix='24'/>"), "XML error: Missing required address attribute in network 't'", KindXML},
		{"bad netmask", doc("<ip address='10.0.0.1' netmask='255.0.255.0'/>"), "XML error: Invalid netmask '255.0.255.0' in network 't'", KindXML},
		{"netmask and prefix", doc("<ip address='10.0.0.1' netmask='255.0.0.0' prefix='8'/>"), "unsupported configuration: Network 't' IP address cannot have both a prefix and a netmask", KindUnsupported},
		{"prefix too long v4", doc("<ip address='10.0.0.1' prefix='33'/>"), "unsupported configuration: Invalid IPv4 prefix '33' in network 't'", KindUnsupported},
		{"prefix too long v6", doc("<ip family='ipv6' address='fd00::1' prefix='129'/>"), "unsupported configuration: Invalid IPv6 prefix '129' in network 't'", KindUnsupported},
		{"v6 without family", doc("<ip address='fd00::1' prefix='64'/>"), "unsupported configuration: no family specified for non-IPv4 address 'fd00::1' in network 't'", KindUnsupported},
		{"v4 with v6 family", doc("<ip family='ipv6' address='10.0.0.1'/>"), "unsupported configuration: Family 'ipv6' specified for non-IPv6 address '10.0.0.1' in network 't'", KindUnsupported},
		{"v6 netmask", doc("<ip family='ipv6' address='fd00::1' netmask='255.0.0.0'/>"), "unsupported configuration: netmask not allowed for IPv6 address 'fd00::1' in network 't'", KindUnsupported},
		{"bad family", doc("<ip family='ipx' address='10.0.0.1'/>"), "XML error: Unrecognized family 'ipx' in network 't'", KindXML},
		{"dns disabled with records", doc("<dns enable='no'><txt name='a' value='b'/></dns>"), "XML error: Extra data in disabled network 't'", KindXML},
		{"open with dev", doc("<forward mode='open' dev='eth0'/><ip address='10.0.0.1' prefix='24'/>"), "XML error: forward dev not allowed for network 't' with forward mode='open'", KindXML},
		{"dup interface", doc("<forward mode='passthrough'><interface dev='a'/><interface dev='a'/></forward>"), "XML error: interface 'a' can only be listed once in network t", KindXML},
		{"dup pci", doc("<forward mode='hostdev'><address type='pci' domain='0' bus='3' slot='0' function='1'/><address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></forward>"),
			"XML error: PCI device '0000:03:00.1' can only be listed once in network t", KindXML},
		{"unknown mode", doc("<forward mode='teleport'/>"), "unsupported configuration: unknown forwarding type 'teleport'", KindUnsupported},
		{"nat without ip", doc("<forward mode='nat'/>"), "XML error: nat forwarding requested, but no IP address provided for network 't'", KindXML},
		{"dev mismatch", doc("<forward mode='nat' dev='a'><interface dev='b'/></forward><ip address='10.0.0.1' prefix='24'/>"),
			"XML error: <forward dev='a'> must match first <interface dev='b'/> in network t", KindXML},
		{"nat in route", doc("<forward mode='route'><nat/></forward><ip address='10.0.0.1' prefix='24'/>"),
			"XML error: The <nat> element can only be used when <forward> 'mode' is 'nat' in network t", KindXML},
		{"bad mac", doc("<mac address='52:54:00:zz:00:01'/>"), "XML error: Invalid bridge mac address '52:54:00:zz:00:01' in network 't'", KindXML},
		{"multicast mac", doc("<mac address='01:54:00:00:00:01'/>"), "XML error: Invalid multicast bridge mac address '01:54:00:00:00:01' in network 't'", KindXML},
		{"bad delay", doc("<bridge name='b' delay='-1'/>"), "XML error: Invalid delay value in network 't'", KindXML},
		{"stp in bridge mode", doc("<forward mode='bridge'/><bridge name='br0' stp='on'/>"),
			"XML error: bridge delay/stp/zone options only allowed in route, nat, and isolated mode, not in bridge (network 't')", KindXML},
		{"bad mtu", doc("<mtu size='big'/>"), "XML error: Invalid mtu size 'big' in network 't'", KindXML},
		{"dhcp host no ip", doc("<ip address='10.0.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:01'/></dhcp></ip>"),
			"XML error: Missing IP address in static host definition for network 't'", KindXML},
		{"dhcp host v6 mac", doc("<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host mac='52:54:00:00:00:01' ip='fd00::5'/></dhcp></ip>"),
			"XML error: Invalid to specify MAC address '52:54:00:00:00:01' in network 't' IPv6 static host definition", KindXML},
		{"short lease", doc("<ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.2' end='10.0.0.9'><lease expiry='1'/></range></dhcp></ip>"),
			"unsupported configuration: The minimum lease time should be greater than 2 minutes", KindUnsupported},
		{"srv no protocol", doc("<dns><srv service='x'/></dns>"), "missing required protocol attribute in DNS SRV record 'x' of network 't'", KindPlain},
		{"txt no name", doc("<dns><txt value='v'/></dns>"), "missing required name attribute in DNS TXT record of network t", KindPlain},
		{"dns host no name", doc("<dns><host ip='10.0.0.5'/></dns>"), "Missing hostname in network 't' DNS HOST record", KindPlain},
		{"forwarder empty", doc("<dns><forwarder/></dns>"), "XML error: Invalid forwarder element, must contain at least one of addr or domain", KindXML},
		{"unreachable gateway", doc("<ip address='10.0.0.1' prefix='24'/><route address='10.9.0.0' prefix='16' gateway='10.1.0.1'/>"),
			"unsupported configuration: unreachable static route gateway '10.1.0.1' specified for network 't'", KindUnsupported},
		{"tristate", "<network ipv6='maybe'><name>t</name></network>", "XML error: Invalid ipv6 setting 'maybe' in network 't'", KindXML},
		{"title newline", doc("<title>a\nb</title>"), "XML error: Network title can't contain newlines", KindXML},
		{"portgroup bandwidth", doc("<portgroup name='a'><bandwidth><inbound average='1'/></bandwidth></portgroup>"),
			"unsupported configuration: <bandwidth> in <portgroup> 'a' of network 't' is not supported by vnet", KindUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tc.want)
			}
			if k := KindOf(err); k != tc.kind {
				t.Errorf("kind %v, want %v", k, tc.kind)
			}
		})
	}
}

func TestParseNormalises(t *testing.T) {
	in := `<network xmlns:dm="http://libvirt.org/schemas/network/dnsmasq/1.0">
  <name>norm</name>
  <uuid>81FF0D90C91E674264DA4A736EDB9A9B</uuid>
  <title>T &amp; 'q'</title>
  <description>multi
line</description>
  <forward dev="eth0"/>
  <bridge name="vb0" stp="yes" delay="007"/>
  <mac address="52:54:00:AB:CD:EF"/>
  <ip family="ipv6" address="f0:0d:0:0::f0:0d" prefix="64">
    <dhcp>
      <range start="f0:d::10" end="F0:D::20"><lease expiry="0"/></range>
      <host id="0:1" ip="f0:d::5"><lease expiry="5"/></host>
    </dhcp>
  </ip>
  <ip address="10.1.0.1" netmask="255.255.0.0">
    <dhcp><host mac="52:54:00:0A:0B:0C" name="h" ip="10.1.0.9"/></dhcp>
  </ip>
  <dm:options><dm:option value="x=&lt;1&gt;"/></dm:options>
</network>`
	want := `<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>norm</name>
  <uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid>
  <title>T &amp; &apos;q&apos;</title>
  <description>multi
line</description>
  <forward dev='eth0' mode='nat'>
    <interface dev='eth0'/>
  </forward>
  <bridge name='vb0' stp='on' delay='7'/>
  <mac address='52:54:00:ab:cd:ef'/>
  <ip family='ipv6' address='f0:d::f0:d' prefix='64'>
    <dhcp>
      <range start='f0:d::10' end='f0:d::20'>
        <lease expiry='0'/>
      </range>
      <host id='0:1' ip='f0:d::5'>
        <lease expiry='5' unit='minutes'/>
      </host>
    </dhcp>
  </ip>
  <ip address='10.1.0.1' netmask='255.255.0.0'>
    <dhcp>
      <host mac='52:54:00:0a:0b:0c' name='h' ip='10.1.0.9'/>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='x=&lt;1&gt;'/>
  </dnsmasq:options>
</network>
`
	n := mustParse(t, in)
	if got := mustFormat(t, n, 0); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if n.Forward.Dev != "eth0" || n.ForwardDev() != "eth0" || n.ForwardMode() != "nat" {
		t.Errorf("forward dev %q/%q mode %q", n.Forward.Dev, n.ForwardDev(), n.ForwardMode())
	}
	if n.Title != "T & 'q'" || n.Description != "multi\nline" {
		t.Errorf("title %q description %q", n.Title, n.Description)
	}
	if ip := n.IPv4DHCP(); ip == nil || ip.Address != "10.1.0.1" {
		t.Errorf("IPv4DHCP = %+v", ip)
	}
	if ip := n.IPv6DHCP(); ip == nil || ip.Address != "f0:d::f0:d" {
		t.Errorf("IPv6DHCP = %+v", ip)
	}
}

func TestParseModeNone(t *testing.T) {
	n := mustParse(t, doc("<forward mode='none'/>"))
	if n.Forward != nil || n.ForwardMode() != "" || !n.OwnsBridge() {
		t.Errorf("mode none: forward %+v", n.Forward)
	}
}

func TestFormatLiveOnly(t *testing.T) {
	n := mustParse(t, doc(`<forward mode='passthrough'><pf dev='eth0'/></forward>`))
	n.Forward.Interfaces = []libvirtxml.NetworkForwardInterface{{Dev: "vf0"}, {Dev: "vf1"}}
	n.Connections = 2
	n.InterfaceConnections = map[string]uint{"vf1": 2}
	live := mustFormat(t, n, 0)
	want := `<network connections='2'>
  <name>t</name>
  <forward mode='passthrough'>
    <pf dev='eth0'/>
    <interface dev='vf0'/>
    <interface dev='vf1' connections='2'/>
  </forward>
</network>
`
	if live != want {
		t.Errorf("live\n%s\nwant\n%s", live, want)
	}
	inactive := mustFormat(t, n, Inactive)
	if strings.Contains(inactive, "connections") || strings.Contains(inactive, "vf0") {
		t.Errorf("inactive output has live data:\n%s", inactive)
	}
}

func TestMetadata(t *testing.T) {
	in := doc(`<metadata xmlns:outer="urn:outer">
      <a:x xmlns:a="urn:a"><a:y k='v&quot;'>t</a:y><a:z/></a:x>
      <a:dup xmlns:a="urn:a"/>
      <nons/>
      <outer:o>text &amp; more</outer:o>
      <d xmlns="urn:d"><e/></d>
    </metadata>`)
	want := `<network>
  <name>t</name>
  <metadata>
    <a:x xmlns:a="urn:a">
      <a:y k="v&quot;">t</a:y>
      <a:z/>
    </a:x>
    <outer:o xmlns:outer="urn:outer">text &amp; more</outer:o>
    <d xmlns="urn:d">
      <e/>
    </d>
  </metadata>
  <bridge stp='on' delay='0'/>
</network>
`
	n := mustParse(t, in)
	if got := mustFormat(t, n, 0); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	n = mustParse(t, doc("<metadata/>"))
	if got := mustFormat(t, n, 0); !strings.Contains(got, "  <metadata/>\n") {
		t.Errorf("empty metadata:\n%s", got)
	}
}

func TestFillDefaults(t *testing.T) {
	n := mustParse(t, doc(natIP))
	taken := map[string]bool{"virbr0": true, "virbr1": true, "virbr3": true}
	if err := FillDefaults(n, func(b string) bool { return taken[b] }); err != nil {
		t.Fatal(err)
	}
	if n.UUID == "" {
		t.Error("no uuid generated")
	}
	if _, err := NormalizeUUID(n.UUID); err != nil {
		t.Errorf("generated uuid %q: %v", n.UUID, err)
	}
	if n.Bridge.Name != "virbr2" || n.Bridge.STP != "on" || n.Bridge.Delay != "0" {
		t.Errorf("bridge %+v", n.Bridge)
	}
	if !regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`).MatchString(n.MAC.Address) {
		t.Errorf("mac %q", n.MAC.Address)
	}

	// Existing values are kept; a template picks its own lowest free N.
	n = mustParse(t, doc(`<uuid>81ff0d90-c91e-6742-64da-4a736edb9a9b</uuid><bridge name='vn%d' stp='off' delay='3'/><mac address='52:54:00:01:02:03'/>`+natIP))
	if err := FillDefaults(n, func(b string) bool { return b == "vn0" }); err != nil {
		t.Fatal(err)
	}
	if n.UUID != "81ff0d90-c91e-6742-64da-4a736edb9a9b" || n.Bridge.Name != "vn1" || n.Bridge.STP != "off" || n.Bridge.Delay != "3" || n.MAC.Address != "52:54:00:01:02:03" {
		t.Errorf("kept values changed: %s %+v %+v", n.UUID, n.Bridge, n.MAC)
	}

	// Networks that don't own a bridge get only a uuid.
	n = mustParse(t, doc(`<forward mode='bridge'/><bridge name='br0'/>`))
	if err := FillDefaults(n, nil); err != nil {
		t.Fatal(err)
	}
	if n.MAC != nil || n.Bridge.STP != "" || n.UUID == "" {
		t.Errorf("bridge-mode defaults: mac %+v bridge %+v uuid %q", n.MAC, n.Bridge, n.UUID)
	}

	n = mustParse(t, doc(natIP))
	err := FillDefaults(n, func(string) bool { return true })
	if err == nil || err.Error() != "internal error: Bridge generation exceeded max id 256" {
		t.Errorf("all taken: %v", err)
	}
}

func TestValidate(t *testing.T) {
	v4 := func(dhcp string) string {
		return `<forward mode='nat'/><ip address='10.201.0.1' netmask='255.255.255.0'><dhcp>` + dhcp + `</dhcp></ip>`
	}
	for _, tc := range []struct {
		name, body, want string
		kind             Kind
	}{
		{"host outside", v4(`<host mac='52:54:00:00:00:01' ip='10.3.0.5'/>`),
			"internal error: static DHCP host address 10.3.0.5 is not within network 10.201.0.1/24", KindInternal},
		{"two v4 dhcp", v4(`<range start='10.201.0.10' end='10.201.0.20'/>`) + `<ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.2' end='10.9.0.3'/></dhcp></ip>`,
			"unsupported configuration: Multiple IPv4 dhcp sections found -- dhcp is supported only for a single IPv4 address on each network", KindUnsupported},
		{"two v6 dhcp", `<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::10' end='fd00::20'/></dhcp></ip><ip family='ipv6' address='fd01::1' prefix='64'><dhcp><range start='fd01::10' end='fd01::20'/></dhcp></ip>`,
			"unsupported configuration: Multiple IPv6 dhcp sections found -- dhcp is supported only for a single IPv6 address on each network", KindUnsupported},
		{"v6 dhcp prefix", `<ip family='ipv6' address='fd00::1' prefix='56'><dhcp><range start='fd00::10' end='fd00::20'/></dhcp></ip>`,
			"unsupported configuration: DHCPv6 on fd00::1/56 in network 't' needs prefix 64, not 56 (dnsmasq refuses other prefix lengths)", KindUnsupported},
		{"bridge too long", `<bridge name='vb-name-longer-than-15'/>`,
			"XML error: bridge name 'vb-name-longer-than-15' in network 't' is too long: 22 bytes, the limit is 15", KindXML},
		{"bridge template too long", `<bridge name='abcdefghijklm%d'/>`,
			"XML error: bridge name 'abcdefghijklm%d' in network 't' is too long: 16 bytes, the limit is 15", KindXML},
		{"bridge slash", `<bridge name='vb/1'/>`, "XML error: invalid char in bridge name 'vb/1' of network 't': '/'", KindXML},
		{"bridge space", `<bridge name='vb 1'/>`, "XML error: invalid char in bridge name 'vb 1' of network 't': ' '", KindXML},
		{"mac in bridge mode", `<forward mode='bridge'/><bridge name='br0'/><mac address='52:54:00:00:00:01'/>`,
			"unsupported configuration: Unsupported <mac> element in network t with forward mode='bridge'", KindUnsupported},
		{"ip in bridge mode", `<forward mode='bridge'/><bridge name='br0'/><ip address='10.0.0.1' prefix='24'/>`,
			"unsupported configuration: Unsupported <ip> element in network t with forward mode='bridge'", KindUnsupported},
		{"class D without prefix", `<ip address='224.0.0.1'/>`,
			"XML error: invalid <ip> in network 't': address '224.0.0.1' needs a prefix or netmask (no classful default exists for it)", KindXML},
		{"mtu", `<mtu size='20'/>`, "XML error: invalid MTU 20 in network 't': it must be between 68 and 65535", KindXML},
		{"floor", `<bandwidth><inbound floor='100'/></bandwidth>`, "unsupported configuration: Unsupported network-wide <floor> element in network t", KindUnsupported},
		{"pci outside hostdev", `<forward mode='passthrough'><address type='pci' domain='0' bus='1' slot='0' function='0'/></forward>`,
			"unsupported configuration: network 't' has forward mode 'passthrough' but lists a device by PCI address in the device pool. This is only supported for networks with forward mode 'hostdev'", KindUnsupported},
		{"two default portgroups", `<portgroup name='a' default='yes'/><portgroup name='b' default='yes'/>`,
			"unsupported configuration: network 't' has multiple default <portgroup> elements (a and b), but only one default is allowed", KindUnsupported},
		{"same portgroup name", `<portgroup name='a'/><portgroup name='a'/>`,
			"unsupported configuration: multiple <portgroup> elements with the same name (a) in network 't'", KindUnsupported},
		{"vlan on macvtap", `<forward mode='private' dev='eth0'/><vlan><tag id='5'/></vlan>`,
			"unsupported configuration: <vlan> element specified for network t, whose type doesn't support vlan configuration", KindUnsupported},
		{"bandwidth on macvtap", `<forward mode='vepa' dev='eth0'/><bandwidth><inbound average='5'/></bandwidth>`,
			"unsupported configuration: Unsupported network-wide <bandwidth> element in network t with forward mode='vepa'", KindUnsupported},
		{"control char in txt", `<dns><txt name='a' value='x&#10;dhcp-range=1'/></dns>`,
			"XML error: invalid control character '\\n' in <txt value> 'x\ndhcp-range=1' of network 't'", KindXML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustParse(t, doc(tc.body))
			err := Validate(n)
			if err == nil {
				t.Fatalf("Validate succeeded, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tc.want)
			}
			if k := KindOf(err); k != tc.kind {
				t.Errorf("kind %v, want %v", k, tc.kind)
			}
		})
	}

	// Names set programmatically are checked too.
	n := mustParse(t, doc(natIP))
	n.Name = "a\nb"
	if err := Validate(n); err == nil || err.Error() != "invalid char in name: 0x0a" {
		t.Errorf("newline name: %v", err)
	}
	n.Name = "a/b"
	if err := Validate(n); err == nil || err.Error() != "invalid char in name: /" {
		t.Errorf("slash name: %v", err)
	}

	for _, ok := range []string{
		natIP,
		v4(`<range start='10.201.0.2' end='10.201.0.254'/><host mac='52:54:00:00:00:01' ip='10.201.0.9'/>`),
		`<bridge name='virbr%d'/>`,
		`<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::10' end='fd00::20'/></dhcp></ip>`,
		`<forward mode='bridge'/><bridge name='br0'/>`,
		`<forward mode='bridge'/><bridge name='ovsbr'/><virtualport type='openvswitch'/><portgroup name='p' default='yes'><vlan><tag id='42'/></vlan><virtualport><parameters profileid='x'/></virtualport></portgroup>`,
		`<forward mode='hostdev' managed='yes'><pf dev='eth2'/></forward><vlan><tag id='7'/></vlan>`,
	} {
		if err := Validate(mustParse(t, doc(ok))); err != nil {
			t.Errorf("Validate(%s): %v", ok, err)
		}
	}
	if err := Validate(mustParse(t, DefaultNetworkXML)); err != nil {
		t.Errorf("default network: %v", err)
	}
}

// TestRangeChecks: libvirt's parser checks DHCP ranges; Validate repeats the
// check for ranges added later (net-update).
func TestRangeChecks(t *testing.T) {
	for _, tc := range []struct{ ip, start, end, want string }{
		{"<ip address='10.201.0.1' netmask='255.255.255.0'>", "10.202.0.10", "10.202.0.20",
			"internal error: range 10.202.0.10 - 10.202.0.20 is not entirely within network 10.201.0.1/24"},
		{"<ip address='10.201.0.1' prefix='24'>", "10.201.0.10", "10.201.1.20",
			"internal error: range 10.201.0.10 - 10.201.1.20 is not entirely within network 10.201.0.1/24"},
		{"<ip address='10.206.0.1' prefix='24'>", "10.206.0.200", "10.206.0.100",
			"internal error: range 10.206.0.200 - 10.206.0.100 is reversed "},
		{"<ip family='ipv6' address='fd00::1' prefix='64'>", "fd00::10", "10.0.0.1",
			"internal error: mismatch of address family in range fd00::10 - 10.0.0.1"},
		{"<ip family='ipv6' address='fd00::1' prefix='64'>", "10.0.0.2", "10.0.0.1",
			"internal error: mismatch of address family in range 10.0.0.2 - 10.0.0.1 for network fd00::1"},
		{"<ip address='10.0.0.1' prefix='24'>", "10.0.0.0", "10.0.0.9",
			"internal error: start of range 10.0.0.0 - 10.0.0.9 in network 10.0.0.1/24 is the network address"},
		{"<ip address='10.0.0.1' prefix='24'>", "10.0.0.2", "10.0.0.255",
			"internal error: end of range 10.0.0.2 - 10.0.0.255 in network 10.0.0.1/24 is the broadcast address"},
		{"<ip address='10.0.0.1' prefix='8'>", "10.0.0.2", "10.1.0.255",
			"internal error: range 10.0.0.2 - 10.1.0.255 is too large (> 65535)"},
		{"<ip family='ipv6' address='fd00::1' prefix='64'>", "fd00::20", "fd00::10",
			"internal error: range fd00::20 - fd00::10 start larger than end"},
	} {
		in := doc("<forward mode='nat'/>" + tc.ip + "<dhcp><range start='" + tc.start + "' end='" + tc.end + "'/></dhcp></ip>")
		_, err := Parse([]byte(in))
		if err == nil || err.Error() != tc.want || KindOf(err) != KindInternal {
			t.Errorf("Parse: got %v, want %q", err, tc.want)
		}
		n := mustParse(t, doc("<forward mode='nat'/>"+tc.ip+"</ip>"))
		n.IPs[0].DHCP = &libvirtxml.NetworkDHCP{Ranges: []libvirtxml.NetworkDHCPRange{{Start: tc.start, End: tc.end}}}
		err = Validate(n)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Validate: got %v, want %q", err, tc.want)
		}
	}
}

func TestCheckBridgeConflict(t *testing.T) {
	mk := func(name, uuid, bridge, fwd string) *Network {
		return mustParse(t, "<network><name>"+name+"</name><uuid>"+uuid+"</uuid><bridge name='"+bridge+"'/>"+fwd+"</network>")
	}
	a := mk("a", "11111111-1111-1111-1111-111111111111", "vb-e02a", "")
	b := mk("b", "22222222-2222-2222-2222-222222222222", "vb-e02a", "")
	if err := CheckBridgeConflict(b, []*Network{a}); err == nil || err.Error() != "internal error: bridge name 'vb-e02a' already in use." {
		t.Errorf("conflict: %v", err)
	}
	a2 := mk("a", "11111111111111111111111111111111", "vb-e02a", "")
	if err := CheckBridgeConflict(a2, []*Network{a, mk("c", "33333333-3333-3333-3333-333333333333", "other", "")}); err != nil {
		t.Errorf("same uuid must be skipped: %v", err)
	}
	hb := mk("h", "44444444-4444-4444-4444-444444444444", "br0", "<forward mode='bridge'/>")
	hb2 := mk("h2", "55555555-5555-5555-5555-555555555555", "br0", "<forward mode='bridge'/>")
	if err := CheckBridgeConflict(hb2, []*Network{hb}); err != nil {
		t.Errorf("two host-bridge networks may share br0: %v", err)
	}
}

func TestCheckSubnetConflict(t *testing.T) {
	mk := func(name, uuid, bridge, ip string) *Network {
		return mustParse(t, "<network><name>"+name+"</name><uuid>"+uuid+"</uuid><bridge name='"+bridge+"'/>"+ip+"</network>")
	}
	act := mk("a", "11111111-1111-1111-1111-111111111111", "virbr0", "<ip address='10.203.0.1' prefix='16'/>")
	for _, tc := range []struct {
		ip       string
		conflict bool
	}{
		{"<ip address='10.203.5.1' prefix='24'/>", true},
		{"<ip address='10.203.0.1' netmask='255.255.0.0'/>", true},
		{"<ip address='10.0.0.1' prefix='8'/>", true},
		{"<ip address='10.204.0.1' prefix='24'/>", false},
		{"<ip family='ipv6' address='fd00::1' prefix='64'/>", false},
	} {
		n := mk("b", "22222222-2222-2222-2222-222222222222", "virbr1", tc.ip)
		err := CheckSubnetConflict(n, []*Network{act})
		if tc.conflict {
			if err == nil || err.Error() != "internal error: Network is already in use by interface virbr0" {
				t.Errorf("%s: %v", tc.ip, err)
			}
		} else if err != nil {
			t.Errorf("%s: unexpected %v", tc.ip, err)
		}
	}
	same := mk("a", "11111111-1111-1111-1111-111111111111", "virbr0", "<ip address='10.203.0.1' prefix='16'/>")
	if err := CheckSubnetConflict(same, []*Network{act}); err != nil {
		t.Errorf("same uuid must be skipped: %v", err)
	}
}

func TestLive(t *testing.T) {
	n := mustParse(t, DefaultNetworkXML)
	live := Live(n)
	got := mustFormat(t, live, 0)
	if !strings.Contains(got, "  <forward mode='nat'>\n    <nat>\n      <port start='1024' end='65535'/>\n    </nat>\n  </forward>\n") {
		t.Errorf("live NAT:\n%s", got)
	}
	if n.Forward.NAT != nil {
		t.Error("Live modified its argument")
	}
	// An explicit port range is kept; non-NAT networks are unchanged.
	n = mustParse(t, doc(`<forward mode='nat'><nat><port start='60000' end='65432'/></nat></forward><ip address='10.0.0.1' prefix='24'/>`))
	if p := Live(n).Forward.NAT.Ports[0]; p.Start != 60000 || p.End != 65432 {
		t.Errorf("ports %+v", p)
	}
	n = mustParse(t, doc(`<forward mode='route'/><ip address='10.0.0.1' prefix='24'/>`))
	if mustFormat(t, Live(n), 0) != mustFormat(t, n, 0) {
		t.Error("route network changed by Live")
	}
}

func TestNormalizeUUID(t *testing.T) {
	for in, want := range map[string]string{
		"81ff0d90-c91e-6742-64da-4a736edb9a9b":   "81ff0d90-c91e-6742-64da-4a736edb9a9b",
		"81FF0D90C91E674264DA4A736EDB9A9B":       "81ff0d90-c91e-6742-64da-4a736edb9a9b",
		" 81ff0d90-c91e674264da-4a736edb9a9b\n ": "81ff0d90-c91e-6742-64da-4a736edb9a9b",
	} {
		got, err := NormalizeUUID(in)
		if err != nil || got != want {
			t.Errorf("NormalizeUUID(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "default", "81ff0d90-c91e-6742-64da-4a736edb9a9", "81ff0d90-c91e-6742-64da-4a736edb9a9bb", "g1ff0d90-c91e-6742-64da-4a736edb9a9b"} {
		if _, err := NormalizeUUID(bad); err == nil {
			t.Errorf("NormalizeUUID(%q) succeeded", bad)
		}
	}
}

func TestDefaultNetworkXML(t *testing.T) {
	n := mustParse(t, DefaultNetworkXML)
	if got := mustFormat(t, n, Inactive); got != DefaultNetworkXML {
		t.Errorf("round trip\n%s\nwant\n%s", got, DefaultNetworkXML)
	}
	if n.UUID != "" || n.MAC != nil || n.Bridge.STP != "off" || n.BridgeName() != "virbr0" || n.ForwardMode() != "nat" {
		t.Errorf("default network: %+v", n)
	}
	if err := FillDefaults(n, nil); err != nil {
		t.Fatal(err)
	}
	if n.UUID == "" || n.MAC == nil || n.Bridge.STP != "off" {
		t.Errorf("after FillDefaults: %+v", n)
	}
}

func TestClone(t *testing.T) {
	n := mustParse(t, doc(`<forward mode='nat' dev='eth0'/><ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip><portgroup name='p'><virtualport><parameters profileid='x'/></virtualport></portgroup><metadata><a:b xmlns:a='urn:a'/></metadata>`))
	n.Connections = 3
	n.InterfaceConnections = map[string]uint{"eth0": 3}
	c := n.Clone()
	if mustFormat(t, c, 0) != mustFormat(t, n, 0) {
		t.Errorf("clone formats differently:\n%s", mustFormat(t, c, 0))
	}
	c.IPs[0].DHCP.Ranges[0].Start = "10.0.0.3"
	c.InterfaceConnections["eth0"] = 1
	c.Forward.Interfaces[0].Dev = "eth9"
	if n.IPs[0].DHCP.Ranges[0].Start != "10.0.0.2" || n.InterfaceConnections["eth0"] != 3 || n.Forward.Interfaces[0].Dev != "eth0" {
		t.Error("clone shares memory with the original")
	}
}

func TestIPNet(t *testing.T) {
	for _, tc := range []struct {
		ip   libvirtxml.NetworkIP
		want string
	}{
		{libvirtxml.NetworkIP{Address: "192.168.122.1", Netmask: "255.255.255.0"}, "192.168.122.1/24"},
		{libvirtxml.NetworkIP{Address: "10.24.10.1"}, "10.24.10.1/8"},
		{libvirtxml.NetworkIP{Address: "172.16.0.1"}, "172.16.0.1/16"},
		{libvirtxml.NetworkIP{Address: "192.168.1.1"}, "192.168.1.1/24"},
		{libvirtxml.NetworkIP{Family: "ipv6", Address: "fd00::1"}, "fd00::1/64"},
		{libvirtxml.NetworkIP{Family: "ipv6", Address: "fd00::1", Prefix: 56}, "fd00::1/56"},
	} {
		p, err := IPNet(tc.ip)
		if err != nil || p.String() != tc.want {
			t.Errorf("IPNet(%+v) = %v, %v; want %s", tc.ip, p, err, tc.want)
		}
	}
}
