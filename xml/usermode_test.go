package netxml

import (
	"strings"
	"testing"
)

const userNet = `<network>
  <name>usernet</name>
  <uuid>c83eb857-a4e7-4b99-904b-999c55af65b1</uuid>
  <vnet:forward xmlns:vnet='urn:vnet:network:1' mode='user'>
    <portForward proto='tcp' address='127.0.0.1'>
      <range start='2222' to='22'/>
    </portForward>
    <portForward proto='udp'>
      <range start='5000' end='5020' to='6000'/>
      <range start='5010' end='5015' exclude='yes'/>
    </portForward>
  </vnet:forward>
  <dns>
    <forwarder addr='9.9.9.9'/>
  </dns>
  <ip address='10.0.2.2' prefix='24'>
    <dhcp>
      <range start='10.0.2.15' end='10.0.2.15'/>
    </dhcp>
  </ip>
</network>
`

// TestUserForward: vnet's forward mode 'user' round-trips byte for byte
// and has no bridge.
func TestUserForward(t *testing.T) {
	n, err := Parse([]byte(userNet))
	if err != nil {
		t.Fatal(err)
	}
	if err := FillDefaults(n, nil); err != nil {
		t.Fatal(err)
	}
	if err := Validate(n); err != nil {
		t.Fatal(err)
	}
	if n.ForwardMode() != "user" || n.OwnsBridge() || n.BridgeName() != "" {
		t.Fatalf("mode %q owns bridge %v bridge %q", n.ForwardMode(), n.OwnsBridge(), n.BridgeName())
	}
	got, err := Format(n, 0)
	if err != nil || got != userNet {
		t.Fatalf("round trip (%v):\n%s", err, got)
	}
	v4, v6, err := UserIPs(n)
	if err != nil || v4.Gateway.String() != "10.0.2.2/24" || v4.Guest.String() != "10.0.2.15" || v6.Gateway.IsValid() {
		t.Fatalf("UserIPs: %+v %+v %v", v4, v6, err)
	}
}

const userNet6 = `  <ip family='ipv6' address='fd00::2' prefix='64'>
    <dhcp>
      <range start='fd00::15' end='fd00::15'/>
    </dhcp>
  </ip>
</network>
`

// TestUserForwardIPv6: a user-mode network with an IPv6 <ip>, beside the
// IPv4 one or alone, round-trips and gives passt's IPv6 gateway and guest
// address.
func TestUserForwardIPv6(t *testing.T) {
	dual := strings.Replace(userNet, "</network>\n", userNet6, 1)
	only6 := dual[:strings.Index(dual, "  <ip address='10.0.2.2'")] + userNet6
	only6 = strings.Replace(only6, "address='127.0.0.1'", "address='::1'", 1)
	for _, doc := range []string{dual, only6} {
		n, err := Parse([]byte(doc))
		if err == nil {
			err = Validate(n)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Format(n, 0); err != nil || got != doc {
			t.Fatalf("round trip (%v):\n%s", err, got)
		}
		v4, v6, err := UserIPs(n)
		if err != nil || v6.Gateway.String() != "fd00::2/64" || v6.Guest.String() != "fd00::15" || v4.Gateway.IsValid() != (doc == dual) {
			t.Fatalf("UserIPs: %+v %+v %v", v4, v6, err)
		}
	}
	// Without a DHCP range the guest gets the address after the gateway.
	n, err := Parse([]byte(strings.Replace(only6, "    <dhcp>\n      <range start='fd00::15' end='fd00::15'/>\n    </dhcp>\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, v6, err := UserIPs(n); err != nil || v6.Guest.String() != "fd00::3" {
		t.Fatalf("UserIPs without DHCP: %+v %v", v6, err)
	}
}

// TestUserForwardBadInput: precise messages.
func TestUserForwardBadInput(t *testing.T) {
	fwd := func(inner string) string {
		return strings.Replace(userNet, userNet[strings.Index(userNet, "  <vnet:forward"):strings.Index(userNet, "  <dns>")],
			"  <vnet:forward xmlns:vnet='urn:vnet:network:1' mode='user'>"+inner+"</vnet:forward>\n", 1)
	}
	noDHCP := strings.Replace(userNet, "    <dhcp>\n      <range start='10.0.2.15' end='10.0.2.15'/>\n    </dhcp>\n", "", 1)
	for _, c := range []struct{ doc, want string }{
		{strings.Replace(userNet, "mode='user'", "mode='tunnel'", 1), "unknown vnet forward mode 'tunnel' in network 'usernet' (vnet adds only mode='user')"},
		{fwd("<portForward proto='sctp'><range start='1'/></portForward>"), "invalid portForward proto 'sctp'"},
		{fwd("<portForward proto='tcp'><range start='0'/></portForward>"), "invalid portForward range start '0' in network 'usernet' (1 to 65535)"},
		{fwd("<portForward proto='tcp'><range start='70000'/></portForward>"), "invalid portForward range start '70000'"},
		{fwd("<portForward proto='tcp'><range end='5'/></portForward>"), "portForward range without start in network 'usernet'"},
		{fwd("<portForward proto='tcp'><range start='10' end='5'/></portForward>"), "portForward range end 5 is below its start 10"},
		{fwd("<portForward proto='tcp'><range start='10' end='20' to='65530'/></portForward>"), "portForward range to 65530-65540 goes beyond port 65535"},
		{fwd("<portForward proto='tcp' address='nope'><range start='1'/></portForward>"), "invalid portForward address 'nope'"},
		{fwd("<portForward proto='tcp'><range start='2000' end='3000'/></portForward><portForward proto='tcp'><range start='2500'/></portForward>"), "port forwards overlap in network 'usernet': tcp 2000-3000 and tcp 2500"},
		{strings.Replace(userNet, "<dns>", "<bridge name='virbr9'/>\n  <dns>", 1), "<bridge> is not supported on network 'usernet' with forward mode 'user'"},
		{strings.Replace(noDHCP, "prefix='24'", "prefix='31'", 1), "must be an IPv4 address with a prefix of 1 to 30"},
		{strings.Replace(userNet, "start='10.0.2.15' end='10.0.2.15'", "start='10.0.3.15' end='10.0.3.15'", 1), "range 10.0.3.15 - 10.0.3.15 is not entirely within network 10.0.2.2/24"},
		{strings.Replace(userNet, "start='10.0.2.15' end='10.0.2.15'", "start='10.0.2.2' end='10.0.2.2'", 1), "the guest's address 10.0.2.2 is not a host address of 10.0.2.0/24 other than the gateway"},
		{strings.Replace(userNet, "<dns>", "<forward mode='nat'/>\n  <dns>", 1), "network 'usernet' has both <forward> and <vnet:forward>"},
		{strings.Replace(userNet, "</network>\n", "<ip address='10.0.3.2' prefix='24'/></network>", 1), "network 'usernet' with forward mode 'user' needs one IPv4 <ip address prefix>, one IPv6 <ip family='ipv6' address prefix='64'> or one of each"},
		{strings.Replace(userNet, "</network>\n", "<ip family='ipv6' address='fd00::2' prefix='64'/><ip family='ipv6' address='fd01::2' prefix='64'/></network>", 1), "needs one IPv4 <ip address prefix>, one IPv6"},
		{strings.Replace(userNet, "</network>\n", "<ip family='ipv6' address='fd00::2' prefix='48'/></network>", 1), "network 'usernet': <ip family='ipv6' address='fd00::2' prefix='48'> needs prefix='64': passt announces the guest's address as a /64 and cannot use another prefix"},
		{strings.Replace(userNet, "</network>\n", "<ip family='ipv6' address='fd00::2' prefix='64'><dhcp><range start='fd00::2' end='fd00::2'/></dhcp></ip></network>", 1), "the guest's address fd00::2 is not a host address of fd00::/64 other than the gateway"},
		{strings.Replace(userNet, "</network>\n", "<ip family='ipv6' address='fd00::2' prefix='64'><dhcp><range start='fd00::' end='fd00::'/></dhcp></ip></network>", 1), "the guest's address fd00:: is not a host address of fd00::/64"},
		{fwd("<portForward proto='tcp' address='fd99::1'><range start='2222'/></portForward>"), "portForward address 'fd99::1' in network 'usernet' is IPv6, but the network has no IPv6 <ip> (passt runs without that family and cannot bind it)"},
	} {
		n, err := Parse([]byte(c.doc))
		if err == nil {
			err = Validate(n)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v\nwant …%s", err, c.want)
		}
	}
	// Overlaps on different protocols or bind addresses are fine.
	n, err := Parse([]byte(fwd("<portForward proto='tcp'><range start='2000'/></portForward><portForward proto='udp'><range start='2000'/></portForward>" +
		"<portForward proto='tcp' address='127.0.0.1'><range start='3000'/></portForward><portForward proto='tcp' address='127.0.0.2'><range start='3000'/></portForward>")))
	if err == nil {
		err = Validate(n)
	}
	if err != nil {
		t.Fatal(err)
	}
}
