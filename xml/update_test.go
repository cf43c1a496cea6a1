package netxml

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"vnet/internal/testdata"
)

// TestUpdateCases replays libvirt's networkxml2xmlupdatetest from
// update-cases.tsv. A case name is not unique (libvirt registers two names
// once succeeding and once failing), so cases are grouped by name and each
// runs as NAME/EXPECT, e.g. "delete-dhcp-range/ok" and
// "delete-dhcp-range/fail".
//
// parent_index and flags are the values that really reach libvirt's update
// and format steps (see the README: the declared index arrives as format
// flags, whose odd values carry the Inactive bit; the parent index is 0).
func TestUpdateCases(t *testing.T) {
	dir, cases := testdata.Cases(t, "update-cases.tsv")
	var skips testdata.Skips
	var order []string
	byName := map[string][]testdata.Case{}
	for _, c := range cases {
		if _, ok := byName[c["name"]]; !ok {
			order = append(order, c["name"])
		}
		byName[c["name"]] = append(byName[c["name"]], c)
	}
	for _, name := range order {
		t.Run(name, func(t *testing.T) {
			for _, c := range byName[name] {
				t.Run(c["expect"], func(t *testing.T) { runUpdateCase(t, dir, c) })
			}
		})
	}
	skips.Report(t, len(cases))
}

func runUpdateCase(t *testing.T, dir string, c testdata.Case) {
	n, err := Parse(testdata.Read(t, dir, c["input"]))
	if err != nil {
		t.Fatalf("Parse input: %v", err)
	}
	cmd, err1 := strconv.Atoi(c["command"])
	sec, err2 := strconv.Atoi(c["section"])
	idx, err3 := strconv.Atoi(c["parent_index"])
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("bad numbers in case: %v %v %v", err1, err2, err3)
	}
	var flags Flags
	if c["flags"] != "-" {
		f, err := strconv.ParseUint(c["flags"], 10, 32)
		if err != nil {
			t.Fatalf("bad flags %q", c["flags"])
		}
		flags = Flags(f) & Inactive
	}
	snippet := string(testdata.Read(t, dir, c["snippet"]))
	before := mustFormat(t, n, 0)
	err = Update(n, UpdateCommand(cmd), UpdateSection(sec), idx, snippet)
	if c["expect"] == "fail" {
		if err == nil {
			t.Fatalf("Update succeeded, want failure; result:\n%s", mustFormat(t, n, flags))
		}
		t.Logf("error (as expected): %v", err)
		if after := mustFormat(t, n, 0); after != before {
			t.Errorf("failed Update changed the network\n--- before\n%s--- after\n%s", before, after)
		}
		return
	}
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	got := mustFormat(t, n, flags)
	want := string(testdata.Read(t, dir, c["expected"]))
	if got != want {
		t.Errorf("Format mismatch\n--- got\n%s--- want\n%s", got, want)
	}
	if err := Validate(n); err != nil {
		t.Errorf("updated network does not validate: %v", err)
	}
	if n.ForwardDev() != forwardDevField(n) {
		t.Errorf("Forward.Dev %q out of sync with the interface list (%q)", forwardDevField(n), n.ForwardDev())
	}
}

func forwardDevField(n *Network) string {
	if n.Forward == nil {
		return ""
	}
	return n.Forward.Dev
}

const updNet = `<network>
  <name>u</name>
  <forward mode='nat' dev='eth0'/>
  <bridge name='vbr-u'/>
  <dns>
    <txt name='t1' value='v1'/>
    <srv service='a' protocol='tcp'/>
    <srv service='a' protocol='udp'/>
    <host ip='10.1.0.5'><hostname>five</hostname><hostname>shared</hostname></host>
    <host ip='10.1.0.6'><hostname>six</hostname><hostname>shared</hostname></host>
  </dns>
  <ip address='10.1.0.1' prefix='24'>
    <dhcp>
      <range start='10.1.0.100' end='10.1.0.200'/>
      <host mac='52:54:00:00:00:01' name='one' ip='10.1.0.11'/>
    </dhcp>
  </ip>
  <ip address='10.2.0.1' prefix='24'/>
  <ip family='ipv6' address='fd00:1::1' prefix='64'/>
  <portgroup name='pg1' default='yes'/>
  <portgroup name='pg2'/>
</network>
`

// TestUpdateErrors checks each error message and kind, and that a failed
// update leaves the network as it was.
func TestUpdateErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmd     UpdateCommand
		sec     UpdateSection
		idx     int
		snippet string
		want    string
		kind    Kind
	}{
		{"bridge", UpdateModify, SectionBridge, -1, `<bridge name='x'/>`, "Operation not supported: can't update 'bridge' section of network 'u'", KindOperationUnsupported},
		{"domain", UpdateModify, SectionDomain, -1, `<domain name='x'/>`, "Operation not supported: can't update 'domain' section of network 'u'", KindOperationUnsupported},
		{"ip", UpdateAddLast, SectionIP, -1, `<ip address='10.9.0.1'/>`, "Operation not supported: can't update 'ip' section of network 'u'", KindOperationUnsupported},
		{"forward", UpdateModify, SectionForward, -1, `<forward mode='route'/>`, "Operation not supported: can't update 'forward' section of network 'u'", KindOperationUnsupported},
		{"forward pf", UpdateAddLast, SectionForwardPF, -1, `<pf dev='eth0'/>`, "Operation not supported: can't update 'forward pf' section of network 'u'", KindOperationUnsupported},
		{"section 0", UpdateAddLast, 0, -1, `<x/>`, "Operation not supported: can't update unrecognized section of network", KindOperationUnsupported},
		{"section 13", UpdateAddLast, 13, -1, `<x/>`, "Operation not supported: can't update unrecognized section of network", KindOperationUnsupported},
		{"command 0", 0, SectionDNSTxt, -1, `<txt name='t9' value='x'/>`, "Operation not supported: unrecognized network update command code 0", KindOperationUnsupported},
		{"command 5 host", 5, SectionIPDHCPHost, -1, `<host mac='52:54:00:00:00:09' ip='10.1.0.19'/>`, "Operation not supported: unrecognized network update command code 5", KindOperationUnsupported},
		{"empty snippet", UpdateAddLast, SectionDNSTxt, -1, ``, "network_update_xml:1: Document is empty\n(null)\n^", KindPlain},
		{"bad snippet", UpdateAddLast, SectionDNSTxt, -1, `<txt name='a'>`, "network_update_xml:1: Premature end of data in tag txt line 1\n<txt name='a'>\n--------------^", KindPlain},
		{"wrong element", UpdateAddLast, SectionIPDHCPHost, -1, `<range start='10.1.0.2' end='10.1.0.3'/>`, "XML error: unexpected element <range>, expecting <host>, while updating network 'u'", KindXML},

		// ip-dhcp-host
		{"no ip at index", UpdateAddLast, SectionIPDHCPHost, 7, `<host mac='52:54:00:00:00:09' ip='10.1.0.19'/>`, "Requested operation is not valid: couldn't update dhcp host entry - no <ip> element found at index 7 in network 'u'", KindInvalidOperation},
		{"host incomplete", UpdateAddLast, SectionIPDHCPHost, -1, `<host mac='52:54:00:00:00:09'/>`, "XML error: Missing IP address in static host definition for network 'u'", KindXML},
		{"host no mac or name", UpdateAddLast, SectionIPDHCPHost, -1, `<host ip='10.1.0.19'/>`, "XML error: Static host definition in IPv4 network 'u' must have mac or name attribute", KindXML},
		{"host v6 no id", UpdateAddLast, SectionIPDHCPHost, 2, `<host ip='fd00:1::9'/>`, "XML error: Static host definition in IPv6 network 'u' must have id or name attribute", KindXML},
		{"host v6 mac", UpdateAddLast, SectionIPDHCPHost, 2, `<host mac='52:54:00:00:00:09' name='x' ip='fd00:1::9'/>`, "XML error: Invalid to specify MAC address '52:54:00:00:00:09' in network 'u' IPv6 static host definition", KindXML},
		{"host bad mac", UpdateAddLast, SectionIPDHCPHost, -1, `<host mac='zz' ip='10.1.0.19'/>`, "XML error: Cannot parse MAC address 'zz' in network 'u'", KindXML},
		{"host multicast", UpdateAddLast, SectionIPDHCPHost, -1, `<host mac='01:00:00:00:00:09' ip='10.1.0.19'/>`, "XML error: expected unicast mac address, found multicast '01:00:00:00:00:09' in network 'u'", KindXML},
		{"host bad name", UpdateAddLast, SectionIPDHCPHost, -1, `<host name='-x' ip='10.1.0.19'/>`, "XML error: Cannot use host name '-x' in network 'u'", KindXML},
		{"host bad ip", UpdateAddLast, SectionIPDHCPHost, -1, `<host name='x' ip='10.1.0.300'/>`, "XML error: Invalid IP address in static host definition for network 'u'", KindXML},
		{"host family", UpdateAddLast, SectionIPDHCPHost, -1, `<host name='x' ip='fd00:1::9'/>`, "Requested operation is not valid: the address family of a host entry IP must match the address family of the dhcp element's parent", KindInvalidOperation},
		{"host duplicate mac", UpdateAddLast, SectionIPDHCPHost, -1, `<host mac='52:54:00:00:00:01' ip='10.1.0.19'/>`, "Requested operation is not valid: there is an existing dhcp host entry in network 'u' that matches \"<host mac='52:54:00:00:00:01' name='(null)' ip='10.1.0.19'/>\"", KindInvalidOperation},
		{"host duplicate ip", UpdateAddFirst, SectionIPDHCPHost, -1, `<host name='two' ip='10.1.0.11'/>`, "Requested operation is not valid: there is an existing dhcp host entry in network 'u' that matches \"<host mac='unknown' name='two' ip='10.1.0.11'/>\"", KindInvalidOperation},
		{"host second dhcp", UpdateAddLast, SectionIPDHCPHost, 1, `<host name='x' ip='10.2.0.9'/>`, "Requested operation is not valid: dhcp is supported only for a single IPv4 address on each network", KindInvalidOperation},
		{"host modify missing", UpdateModify, SectionIPDHCPHost, -1, `<host mac='52:54:00:00:00:09' ip='10.1.0.19'/>`, "Requested operation is not valid: couldn't locate an existing dhcp host entry with \"mac='52:54:00:00:00:09'\" \"name='(null)'\" \"ip='10.1.0.19'\" in network 'u'", KindInvalidOperation},
		{"host delete nothing", UpdateDelete, SectionIPDHCPHost, -1, `<host id='01'/>`, "XML error: At least one of name, mac, or ip attribute must be specified for static host definition in network 'u'", KindXML},
		{"host delete missing", UpdateDelete, SectionIPDHCPHost, -1, `<host name='one' ip='10.1.0.12'/>`, "Requested operation is not valid: couldn't locate a matching dhcp host entry in network 'u'", KindInvalidOperation},
		{"host outside subnet", UpdateAddLast, SectionIPDHCPHost, -1, `<host name='far' ip='10.1.1.9'/>`, "internal error: static DHCP host address 10.1.1.9 is not within network 10.1.0.1/24", KindInternal},

		// ip-dhcp-range
		{"range modify", UpdateModify, SectionIPDHCPRange, -1, `<range start='10.1.0.100' end='10.1.0.200'/>`, "Operation not supported: dhcp ranges cannot be modified, only added or deleted", KindOperationUnsupported},
		{"range outside", UpdateAddLast, SectionIPDHCPRange, -1, `<range start='10.9.0.100' end='10.9.0.200'/>`, "internal error: range 10.9.0.100 - 10.9.0.200 is not entirely within network 10.1.0.1/24", KindInternal},
		{"range no start", UpdateAddLast, SectionIPDHCPRange, -1, `<range end='10.1.0.200'/>`, "XML error: Missing 'start' attribute in dhcp range for network 'u'", KindXML},
		{"range duplicate", UpdateAddLast, SectionIPDHCPRange, -1, `<range start='10.1.0.100' end='10.1.0.200'/>`, "Requested operation is not valid: there is an existing dhcp range entry in network 'u' that matches \"<range start='10.1.0.100' end='10.1.0.200'/>\"", KindInvalidOperation},
		{"range second dhcp", UpdateAddLast, SectionIPDHCPRange, 1, `<range start='10.2.0.100' end='10.2.0.200'/>`, "Requested operation is not valid: dhcp is supported only for a single IPv4 address on each network", KindInvalidOperation},
		{"range delete missing", UpdateDelete, SectionIPDHCPRange, -1, `<range start='10.1.0.100' end='10.1.0.201'/>`, "Requested operation is not valid: couldn't locate a matching dhcp range entry in network 'u'", KindInvalidOperation},

		// forward-interface
		{"iface modify", UpdateModify, SectionForwardInterface, -1, `<interface dev='eth0'/>`, "Operation not supported: forward interface entries cannot be modified, only added or deleted", KindOperationUnsupported},
		{"iface no dev", UpdateAddLast, SectionForwardInterface, -1, `<interface/>`, "XML error: missing dev attribute in <interface> element", KindXML},
		{"iface duplicate", UpdateAddLast, SectionForwardInterface, -1, `<interface dev='eth0'/>`, "Requested operation is not valid: there is an existing interface entry in network 'u' that matches \"<interface dev='eth0'>\"", KindInvalidOperation},
		{"iface delete missing", UpdateDelete, SectionForwardInterface, -1, `<interface dev='eth9'/>`, "Requested operation is not valid: couldn't find an interface entry in network 'u' matching <interface dev='eth9'>", KindInvalidOperation},

		// portgroup
		{"pg duplicate", UpdateAddLast, SectionPortGroup, -1, `<portgroup name='pg2'/>`, "Requested operation is not valid: there is an existing portgroup entry in network 'u' that matches \"<portgroup name='pg2'>\"", KindInvalidOperation},
		{"pg modify missing", UpdateModify, SectionPortGroup, -1, `<portgroup name='pg9'/>`, "Requested operation is not valid: couldn't find a portgroup entry in network 'u' matching <portgroup name='pg9'>", KindInvalidOperation},
		{"pg delete missing", UpdateDelete, SectionPortGroup, -1, `<portgroup name='pg9'/>`, "Requested operation is not valid: couldn't find a portgroup entry in network 'u' matching <portgroup name='pg9'>", KindInvalidOperation},
		{"pg second default", UpdateModify, SectionPortGroup, -1, `<portgroup name='pg2' default='yes'/>`, "Requested operation is not valid: a different portgroup entry in network 'u' is already set as the default. Only one default is allowed.", KindInvalidOperation},
		{"pg no name", UpdateAddLast, SectionPortGroup, -1, `<portgroup/>`, "XML error: Missing required name attribute in portgroup", KindXML},

		// dns-host
		{"dns host no ip", UpdateAddFirst, SectionDNSHost, -1, `<host><hostname>x</hostname></host>`, "Missing IP address in network 'u' DNS HOST record", KindPlain},
		{"dns host no name", UpdateAddFirst, SectionDNSHost, -1, `<host ip='10.1.0.7'/>`, "Missing hostname in network 'u' DNS HOST record", KindPlain},
		{"dns host duplicate", UpdateAddLast, SectionDNSHost, -1, `<host ip='10.1.0.5'><hostname>x</hostname></host>`, "Requested operation is not valid: there is already at least one DNS HOST record with a matching field in network u", KindInvalidOperation},
		{"dns host delete empty", UpdateDelete, SectionDNSHost, -1, `<host protocol='name'/>`, "Missing ip and hostname in network 'u' DNS HOST record", KindPlain},
		{"dns host delete missing", UpdateDelete, SectionDNSHost, -1, `<host ip='10.1.0.9'/>`, "Requested operation is not valid: couldn't locate a matching DNS HOST record in network u", KindInvalidOperation},
		{"dns host delete ambiguous", UpdateDelete, SectionDNSHost, -1, `<host><hostname>shared</hostname></host>`, "Requested operation is not valid: multiple matching DNS HOST records were found in network u", KindInvalidOperation},
		{"dns host modify missing", UpdateModify, SectionDNSHost, -1, `<host ip='10.1.0.9'><hostname>x</hostname></host>`, "Requested operation is not valid: couldn't locate a matching DNS HOST record in network u", KindInvalidOperation},
		{"dns host bad ip", UpdateModify, SectionDNSHost, -1, `<host ip='10.1.0.333'><hostname>x</hostname></host>`, "Invalid IP address in network 'u' DNS HOST record", KindPlain},

		// dns-txt
		{"txt duplicate", UpdateAddLast, SectionDNSTxt, -1, `<txt name='t1' value='x'/>`, "Requested operation is not valid: there is already a DNS TXT record with name 't1' in network u", KindInvalidOperation},
		{"txt no value", UpdateAddLast, SectionDNSTxt, -1, `<txt name='t2'/>`, "missing required value attribute in DNS TXT record named 't2' of network u", KindPlain},
		{"txt modify no value", UpdateModify, SectionDNSTxt, -1, `<txt name='t1'/>`, "missing required value attribute in DNS TXT record named 't1' of network u", KindPlain},
		{"txt no name", UpdateDelete, SectionDNSTxt, -1, `<txt value='x'/>`, "missing required name attribute in DNS TXT record of network u", KindPlain},
		{"txt bad name", UpdateDelete, SectionDNSTxt, -1, `<txt name='a b'/>`, "prohibited character in DNS TXT record name 'a b' of network u", KindPlain},
		{"txt delete missing", UpdateDelete, SectionDNSTxt, -1, `<txt name='t9'/>`, "Requested operation is not valid: couldn't locate a matching DNS TXT record in network u", KindInvalidOperation},
		{"txt modify missing", UpdateModify, SectionDNSTxt, -1, `<txt name='t9' value='x'/>`, "Requested operation is not valid: couldn't locate a matching DNS TXT record in network u", KindInvalidOperation},

		// dns-srv
		{"srv modify", UpdateModify, SectionDNSSrv, -1, `<srv service='a' protocol='tcp'/>`, "Operation not supported: DNS SRV records cannot be modified, only added or deleted", KindOperationUnsupported},
		{"srv no protocol", UpdateAddLast, SectionDNSSrv, -1, `<srv service='b'/>`, "missing required protocol attribute in DNS SRV record 'b' of network 'u'", KindPlain},
		{"srv duplicate", UpdateAddLast, SectionDNSSrv, -1, `<srv service='a' protocol='tcp'/>`, "Requested operation is not valid: there is already at least one DNS SRV record matching all specified fields in network u", KindInvalidOperation},
		{"srv delete ambiguous", UpdateDelete, SectionDNSSrv, -1, `<srv service='a'/>`, "Requested operation is not valid: multiple DNS SRV records matching all specified fields were found in network u", KindInvalidOperation},
		{"srv delete missing", UpdateDelete, SectionDNSSrv, -1, `<srv protocol='sctp'/>`, "Requested operation is not valid: couldn't locate a matching DNS SRV record in network u", KindInvalidOperation},
		{"srv delete port without target", UpdateDelete, SectionDNSSrv, -1, `<srv port='1'/>`, "DNS SRV port attribute not permitted without target for service '(null)' in network 'u'", KindPlain},
		{"srv delete bad protocol", UpdateDelete, SectionDNSSrv, -1, `<srv protocol='a.b'/>`, "invalid character in protocol attribute 'a.b' in DNS SRV record of network 'u'", KindPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustParse(t, updNet)
			before := mustFormat(t, n, 0)
			err := Update(n, tc.cmd, tc.sec, tc.idx, tc.snippet)
			if err == nil {
				t.Fatalf("Update succeeded, want %q\n%s", tc.want, mustFormat(t, n, 0))
			}
			if err.Error() != tc.want || KindOf(err) != tc.kind {
				t.Errorf("error %q (kind %d), want %q (kind %d)", err, KindOf(err), tc.want, tc.kind)
			}
			if after := mustFormat(t, n, 0); after != before {
				t.Errorf("failed Update changed the network:\n%s", after)
			}
		})
	}
}

// TestUpdateReparseCheck: the edited definition must survive libvirt's
// format/parse cycle, e.g. no DNS records in a disabled <dns>.
func TestUpdateReparseCheck(t *testing.T) {
	n := mustParse(t, doc(`<dns enable='no'/>`+natIP))
	err := Update(n, UpdateAddLast, SectionDNSTxt, -1, `<txt name='a' value='b'/>`)
	if err == nil || err.Error() != "XML error: Extra data in disabled network 't'" {
		t.Fatalf("got %v", err)
	}
	// A forward interface in an open network fails Validate.
	n = mustParse(t, doc(`<forward mode='open'/><ip address='10.201.0.1' prefix='24'/>`))
	if err := Update(n, UpdateAddLast, SectionForwardInterface, -1, `<interface dev='eth0'/>`); err == nil {
		t.Fatalf("interface added to an open network")
	}
	// A <pf> network's pool is derived, not saved.
	n = mustParse(t, doc(`<forward mode='passthrough'><pf dev='eth2'/></forward>`))
	err = Update(n, UpdateAddLast, SectionForwardInterface, -1, `<interface dev='eth0'/>`)
	if err == nil || err.Error() != "Requested operation is not valid: the forward devices of network 't' come from <pf dev='eth2'>, interface 'eth0' can't be added" {
		t.Fatalf("got %v", err)
	}
	// No <forward>: nowhere to add an interface.
	n = mustParse(t, doc(`<ip address='10.201.0.1' prefix='24'/>`))
	err = Update(n, UpdateAddLast, SectionForwardInterface, -1, `<interface dev='eth0'/>`)
	if err == nil || err.Error() != "Requested operation is not valid: network 't' has no <forward> element to add interface 'eth0' to" {
		t.Fatalf("got %v", err)
	}
}

func TestUpdateInterfaceInUse(t *testing.T) {
	n := mustParse(t, updNet)
	n.InterfaceConnections = map[string]uint{"eth0": 2}
	err := Update(n, UpdateDelete, SectionForwardInterface, -1, `<interface dev='eth0'/>`)
	want := "Requested operation is not valid: unable to delete interface 'eth0' in network 'u'. It is currently being used by 2 domains."
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	n.InterfaceConnections = nil
	if err := Update(n, UpdateAddFirst, SectionForwardInterface, -1, `<interface dev='eth1'/>`); err != nil {
		t.Fatal(err)
	}
	if n.Forward.Dev != "eth1" || n.ForwardDev() != "eth1" {
		t.Fatalf("dev %q / %q, want eth1", n.Forward.Dev, n.ForwardDev())
	}
	for _, dev := range []string{"eth1", "eth0"} {
		if err := Update(n, UpdateDelete, SectionForwardInterface, -1, `<interface dev='`+dev+`'/>`); err != nil {
			t.Fatal(err)
		}
	}
	if n.Forward.Dev != "" || len(n.Forward.Interfaces) != 0 {
		t.Fatalf("forward %+v, want no device", n.Forward)
	}
}

// TestUpdateParentIndex checks libvirt's rule for parentIndex -1: the <ip>
// that already has DHCP, else the first IPv4, else the first IPv6.
func TestUpdateParentIndex(t *testing.T) {
	for _, tc := range []struct {
		name, ips, snippet string
		wantIP             int // index of the <ip> that gets the host
	}{
		{"dhcp wins", `<ip family='ipv6' address='fd00::1' prefix='64'/><ip address='10.1.0.1' prefix='24'/>` +
			`<ip address='10.2.0.1' prefix='24'><dhcp><range start='10.2.0.10' end='10.2.0.20'/></dhcp></ip>`,
			`<host mac='52:54:00:00:00:09' ip='10.2.0.9'/>`, 2},
		{"dhcp v6 wins", `<ip address='10.1.0.1' prefix='24'/>` +
			`<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::10' end='fd00::20'/></dhcp></ip>`,
			`<host name='h' ip='fd00::9'/>`, 1},
		{"first ipv4", `<ip family='ipv6' address='fd00::1' prefix='64'/><ip address='10.1.0.1' prefix='24'/><ip address='10.2.0.1' prefix='24'/>`,
			`<host mac='52:54:00:00:00:09' ip='10.1.0.9'/>`, 1},
		{"first ipv6", `<ip family='ipv6' address='fd00::1' prefix='64'/><ip family='ipv6' address='fd01::1' prefix='64'/>`,
			`<host name='h' ip='fd00::9'/>`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustParse(t, doc(`<forward mode='nat'/>`+tc.ips))
			if err := Update(n, UpdateAddLast, SectionIPDHCPHost, -1, tc.snippet); err != nil {
				t.Fatal(err)
			}
			for i, ip := range n.IPs {
				got := ip.DHCP != nil && len(ip.DHCP.Hosts) == 1
				if got != (i == tc.wantIP) {
					t.Errorf("ip %d (%s) has host: %v, want the host on ip %d", i, ip.Address, got, tc.wantIP)
				}
			}
		})
	}
	n := mustParse(t, doc(`<dns><txt name='a' value='b'/></dns>`))
	err := Update(n, UpdateAddLast, SectionIPDHCPHost, -1, `<host name='h' ip='10.0.0.2'/>`)
	want := "Requested operation is not valid: couldn't update dhcp host entry - no <ip> element found in network 't'"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	// Index 0 is the first <ip> whatever its family (what libvirt's test uses).
	n = mustParse(t, doc(`<forward mode='nat'/><ip family='ipv6' address='fd00::1' prefix='64'/><ip address='10.1.0.1' prefix='24'/>`))
	err = Update(n, UpdateAddLast, SectionIPDHCPHost, 0, `<host mac='52:54:00:00:00:09' ip='10.1.0.9'/>`)
	if err == nil || err.Error() != "XML error: Invalid to specify MAC address '52:54:00:00:00:09' in network 't' IPv6 static host definition" {
		t.Fatalf("got %v", err)
	}
}

// TestUpdateSemantics covers the successful paths not in libvirt's data.
func TestUpdateSemantics(t *testing.T) {
	type step struct {
		cmd     UpdateCommand
		sec     UpdateSection
		snippet string
	}
	for _, tc := range []struct {
		name  string
		steps []step
		check func(t *testing.T, n *Network)
	}{
		{"dhcp host add-first then modify by name keeps position", []step{
			{UpdateAddFirst, SectionIPDHCPHost, `<host mac='52:54:00:00:00:02' name='two' ip='10.1.0.12'/>`},
			{UpdateModify, SectionIPDHCPHost, `<host name='two' ip='10.1.0.22'><lease expiry='1' unit='hours'/></host>`},
		}, func(t *testing.T, n *Network) {
			h := n.IPs[0].DHCP.Hosts
			if len(h) != 2 || h[0].Name != "two" || h[0].IP != "10.1.0.22" || h[0].MAC != "" || h[0].Lease == nil || h[1].Name != "one" {
				t.Errorf("hosts %+v", h)
			}
		}},
		{"dhcp host delete by ip only", []step{
			{UpdateDelete, SectionIPDHCPHost, `<host ip='10.1.0.11'/>`},
		}, func(t *testing.T, n *Network) {
			if len(n.IPs[0].DHCP.Hosts) != 0 {
				t.Errorf("hosts %+v", n.IPs[0].DHCP.Hosts)
			}
		}},
		{"dhcp host mac case-insensitive", []step{
			{UpdateDelete, SectionIPDHCPHost, `<host mac='52:54:00:00:00:01'/>`},
			{UpdateAddLast, SectionIPDHCPHost, `<host mac='52:54:00:AB:00:01' name='x' ip='10.1.0.30'/>`},
		}, func(t *testing.T, n *Network) {
			if h := n.IPs[0].DHCP.Hosts; len(h) != 1 || h[0].MAC != "52:54:00:ab:00:01" {
				t.Errorf("hosts %+v", h)
			}
		}},
		{"range add-last and delete", []step{
			{UpdateAddLast, SectionIPDHCPRange, `<range start='10.1.0.20' end='10.1.0.30'/>`},
			{UpdateDelete, SectionIPDHCPRange, `<range start='10.1.0.100' end='10.1.0.200'/>`},
		}, func(t *testing.T, n *Network) {
			if r := n.IPs[0].DHCP.Ranges; len(r) != 1 || r[0].Start != "10.1.0.20" {
				t.Errorf("ranges %+v", r)
			}
		}},
		{"portgroup add-first, delete default", []step{
			{UpdateAddFirst, SectionPortGroup, `<portgroup name='pg0'/>`},
			{UpdateDelete, SectionPortGroup, `<portgroup name='pg1'/>`},
			{UpdateModify, SectionPortGroup, `<portgroup name='pg2' default='yes'/>`},
		}, func(t *testing.T, n *Network) {
			pg := n.PortGroups
			if len(pg) != 2 || pg[0].Name != "pg0" || pg[1].Name != "pg2" || pg[1].Default != "yes" {
				t.Errorf("portgroups %+v", pg)
			}
		}},
		{"dns host add shares hostname, delete by ip", []step{
			{UpdateAddLast, SectionDNSHost, `<host ip='10.1.0.8'><hostname>five</hostname></host>`},
			{UpdateDelete, SectionDNSHost, `<host ip='10.1.0.5'/>`},
			{UpdateDelete, SectionDNSHost, `<host><hostname>six</hostname></host>`},
		}, func(t *testing.T, n *Network) {
			if h := n.DNS.Host; len(h) != 1 || h[0].IP != "10.1.0.8" {
				t.Errorf("dns hosts %+v", h)
			}
		}},
		{"txt modify and srv delete", []step{
			{UpdateModify, SectionDNSTxt, `<txt name='t1' value='new'/>`},
			{UpdateAddFirst, SectionDNSTxt, `<txt name='t0' value='zero'/>`},
			{UpdateDelete, SectionDNSSrv, `<srv service='a' protocol='udp'/>`},
		}, func(t *testing.T, n *Network) {
			if x := n.DNS.TXTs; len(x) != 2 || x[0].Name != "t0" || x[1].Value != "new" {
				t.Errorf("txts %+v", x)
			}
			if s := n.DNS.SRVs; len(s) != 1 || s[0].Protocol != "tcp" {
				t.Errorf("srvs %+v", s)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustParse(t, updNet)
			for i, s := range tc.steps {
				if err := Update(n, s.cmd, s.sec, -1, s.snippet); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			if tc.check != nil {
				tc.check(t, n)
			}
			if err := Validate(n); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
	n := mustParse(t, doc(natIP))
	if err := Update(n, UpdateAddLast, SectionDNSSrv, -1, `<srv service='s' protocol='tcp' target='t.example' port='80'/>`); err != nil {
		t.Fatal(err)
	}
	if got := mustFormat(t, n, 0); got != "<network>\n  <name>t</name>\n  <forward mode='nat'/>\n  <bridge stp='on' delay='0'/>\n  <dns>\n"+
		"    <srv service='s' protocol='tcp' target='t.example' port='80'/>\n  </dns>\n  <ip address='10.201.0.1' prefix='24'>\n  </ip>\n</network>\n" {
		t.Errorf("got\n%s", got)
	}
}

func TestParseUpdateNames(t *testing.T) {
	for s, want := range map[string]UpdateCommand{"modify": UpdateModify, "delete": UpdateDelete, "add-last": UpdateAddLast, "add": UpdateAddLast, "add-first": UpdateAddFirst} {
		if got, err := ParseUpdateCommand(s); err != nil || got != want {
			t.Errorf("ParseUpdateCommand(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"none", "", "Add", "append"} {
		_, err := ParseUpdateCommand(s)
		if err == nil || err.Error() != "unrecognized command name '"+s+"'" {
			t.Errorf("ParseUpdateCommand(%q): %v", s, err)
		}
	}
	for sec := SectionBridge; sec <= SectionDNSSrv; sec++ {
		got, err := ParseUpdateSection(sec.String())
		if err != nil || got != sec {
			t.Errorf("ParseUpdateSection(%q) = %v, %v", sec.String(), got, err)
		}
	}
	for _, s := range []string{"none", "", "dns", "ip-dhcp"} {
		_, err := ParseUpdateSection(s)
		if err == nil || err.Error() != "unrecognized section name '"+s+"'" {
			t.Errorf("ParseUpdateSection(%q): %v", s, err)
		}
	}
	if UpdateAddFirst.String() != "add-first" || UpdateCommand(9).String() != "9" || SectionForwardPF.String() != "forward-pf" {
		t.Errorf("String methods")
	}
}

func TestUpdateLiveAction(t *testing.T) {
	want := map[UpdateSection]LiveAction{
		SectionBridge: LiveUnsupported, SectionDomain: LiveUnsupported, SectionIP: LiveUnsupported,
		SectionIPDHCPHost: LiveHUP, SectionIPDHCPRange: LiveRestartDnsmasq, SectionForward: LiveUnsupported,
		SectionForwardInterface: LiveFirewall, SectionForwardPF: LiveUnsupported, SectionPortGroup: LiveNone,
		SectionDNSHost: LiveHUP, SectionDNSTxt: LiveRestartDnsmasq, SectionDNSSrv: LiveRestartDnsmasq, 0: LiveUnsupported,
	}
	for sec, w := range want {
		if got := UpdateNeedsRestart(sec); got != w {
			t.Errorf("UpdateNeedsRestart(%v) = %v, want %v", sec, got, w)
		}
	}
	before := mustParse(t, doc(natIP))
	after := before.Clone()
	if err := Update(after, UpdateAddLast, SectionIPDHCPHost, -1, `<host mac='52:54:00:00:00:09' ip='10.201.0.9'/>`); err != nil {
		t.Fatal(err)
	}
	if got := UpdateLiveAction(SectionIPDHCPHost, before, after); got != LiveRestartDnsmasq {
		t.Errorf("first DHCP host: %v, want restart", got)
	}
	again := after.Clone()
	if err := Update(again, UpdateAddLast, SectionIPDHCPHost, -1, `<host mac='52:54:00:00:00:0a' ip='10.201.0.10'/>`); err != nil {
		t.Fatal(err)
	}
	if got := UpdateLiveAction(SectionIPDHCPHost, after, again); got != LiveHUP {
		t.Errorf("second DHCP host: %v, want hup", got)
	}
	withDNS := before.Clone()
	if err := Update(withDNS, UpdateAddLast, SectionDNSHost, -1, `<host ip='10.201.0.9'><hostname>h</hostname></host>`); err != nil {
		t.Fatal(err)
	}
	if got := UpdateLiveAction(SectionDNSHost, before, withDNS); got != LiveRestartDnsmasq {
		t.Errorf("first DNS host: %v, want restart", got)
	}
	if got := UpdateLiveAction(SectionPortGroup, before, withDNS); got != LiveNone {
		t.Errorf("portgroup: %v", got)
	}
}

// FuzzUpdate applies random snippets to libvirt's update inputs: Update must
// never panic, a failed update must leave the network unchanged, and a
// successful one must leave a valid network that formats to a fixed point.
func FuzzUpdate(f *testing.F) {
	dir := testdata.Dir(f)
	snippets, _ := filepath.Glob(filepath.Join(dir, "networkxml2xmlupdatein", "*.xml"))
	var seeds []string
	for _, s := range snippets {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, string(data))
	}
	seeds = append(seeds, `<host ip='10.1.0.5'><hostname>x</hostname></host>`, `<portgroup name='pg1' default='yes'/>`, `<range start='10.1.0.2' end='10.1.0.3'/>`)
	for i, s := range seeds {
		for sec := 1; sec <= 12; sec++ {
			f.Add(uint8(i%3), uint8(1+i%4), uint8(sec), int8(i%3-1), s)
		}
	}
	inputs := []string{updNet}
	for _, name := range []string{"nat-network", "dhcp6host-routed-network", "openvswitch-net", "nat-network-dns-hosts", "nat-network-dns-srv-records"} {
		data, err := os.ReadFile(filepath.Join(dir, "networkxml2xmlin", name+".xml"))
		if err != nil {
			f.Fatal(err)
		}
		inputs = append(inputs, string(data))
	}
	f.Fuzz(func(t *testing.T, input, cmd, sec uint8, idx int8, snippet string) {
		n, err := Parse([]byte(inputs[int(input)%len(inputs)]))
		if err != nil {
			t.Fatal(err)
		}
		before, err := Format(n, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = Update(n, UpdateCommand(cmd%6), UpdateSection(sec%14), int(idx), snippet)
		after, ferr := Format(n, 0)
		if ferr != nil {
			t.Fatalf("Format after update: %v", ferr)
		}
		if err != nil {
			if after != before {
				t.Fatalf("failed update (%v) changed the network\n--- before\n%s--- after\n%s", err, before, after)
			}
			return
		}
		if err := Validate(n); err != nil {
			t.Fatalf("updated network does not validate: %v\n%s", err, after)
		}
		n2, err := Parse([]byte(after))
		if err != nil {
			t.Fatalf("updated network does not parse: %v\n%s", err, after)
		}
		if again, _ := Format(n2, 0); again != after {
			t.Fatalf("not a fixed point\n%s\n%s", after, again)
		}
	})
}
