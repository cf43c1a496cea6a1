package netxml

import (
	"strings"
	"testing"

	"vnet/internal/testdata"
)

// TestPortXML2XML replays libvirt's virnetworkportxml2xmltest: every port
// document parses and formats back byte for byte, and the output is a fixed
// point.
func TestPortXML2XML(t *testing.T) {
	dir, cases := testdata.Cases(t, "port-cases.tsv")
	var skips testdata.Skips
	for _, c := range cases {
		t.Run(c["name"], func(t *testing.T) {
			p, err := ParsePort(testdata.Read(t, dir, c["input"]))
			if err != nil {
				t.Fatalf("ParsePort: %v", err)
			}
			got, err := FormatPort(p)
			if err != nil {
				t.Fatalf("FormatPort: %v", err)
			}
			if want := string(testdata.Read(t, dir, c["expected"])); got != want {
				t.Errorf("FormatPort mismatch\n--- got\n%s--- want\n%s", got, want)
			}
			p2, err := ParsePort([]byte(got))
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			if got2, _ := FormatPort(p2); got2 != got {
				t.Errorf("not a fixed point:\n%s", got2)
			}
		})
	}
	skips.Report(t, len(cases))
}

const basePort = `<networkport>
  <uuid>5D744F21-BA4A-4D6E-BDB2-30A35FF3207D</uuid>
  <owner>
    <name>guest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='52:54:00:7B:35:93'/>
  %s
</networkport>`

func TestPortTAPExtension(t *testing.T) {
	p, err := ParsePort([]byte(strings.Replace(basePort, "%s", `<v:tap xmlns:v='urn:vnet:port:1' dev='tap-a' user='qemu' group='kvm' queues='4'/>`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := FormatPort(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `<networkport>
  <uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid>
  <owner>
    <name>guest</name>
    <uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid>
  </owner>
  <mac address='52:54:00:7b:35:93'/>
  <vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap-a' user='qemu' group='kvm' queues='4'/>
</networkport>
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if mac, _ := HostMAC(p.MAC.Address); mac != "fe:54:00:7b:35:93" {
		t.Fatalf("HostMAC = %s", mac)
	}
	// A transient port (vnet-qemu-ifup's adopted TAP) round-trips.
	tr := `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap0' adopt='yes' persist='no'/>`
	p, err = ParsePort([]byte(strings.Replace(basePort, "%s", tr, 1)))
	if err != nil || !p.TAP.Transient || !p.TAP.Adopt {
		t.Fatalf("transient tap: %+v %v", p, err)
	}
	if got, _ = FormatPort(p); !strings.Contains(got, tr) {
		t.Fatalf("transient tap formatted as\n%s", got)
	}
}

// TestPortBadInput: each invalid document gets libvirt's (or, for vnet's
// extension, a precise) message.
func TestPortBadInput(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`<network/>`, "XML error: expecting root element of 'networkport', not 'network'"},
		{`<networkport><owner><name>a</name><uuid>d54df46f-1ab5-4a22-8618-4560ef5fac2c</uuid></owner><mac address='52:54:00:00:00:01'/></networkport>`, "internal error: network port has no uuid"},
		{`<networkport><uuid>nope</uuid></networkport>`, "internal error: Unable to parse UUID 'nope'"},
		{`<networkport><uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid></networkport>`, "internal error: network port has no owner name"},
		{`<networkport><uuid>5d744f21-ba4a-4d6e-bdb2-30a35ff3207d</uuid><owner><name>a</name></owner></networkport>`, "internal error: network port has no owner UUID"},
		{strings.Replace(strings.Replace(basePort, "52:54:00:7B:35:93", "xx", 1), "%s", "", 1), "internal error: Unable to parse MAC 'xx'"},
		{strings.Replace(basePort, "%s", `<plug type='bogus'/>`, 1), "XML error: Invalid value for attribute 'type' in element 'plug': 'bogus'."},
		{strings.Replace(basePort, "%s", `<plug type='network'/>`, 1), "XML error: Missing network port bridge name"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='a-name-of-16-byt'/>`, 1), "XML error: Network interface name 'a-name-of-16-byt' is too long: 16 bytes, the kernel allows at most 15"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='tap%d'/>`, 1), "XML error: Network interface name 'tap%d' is invalid (no '/', ':', '%', whitespace, '.' or '..')"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' queues='0'/>`, 1), "XML error: invalid queues '0' in <vnet:tap>: must be 1 to 256"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' adopt='yes'/>`, 1), "XML error: <vnet:tap adopt='yes'> needs the dev of the device to adopt"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='x' adopt='yes' user='u'/>`, 1), "XML error: <vnet:tap adopt='yes'> plugs an existing device: user, group and queues cannot be set"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' colour='red'/>`, 1), "XML error: unknown attribute 'colour' in <vnet:tap>"},
		{strings.Replace(basePort, "%s", `<vnet:tap xmlns:vnet='urn:vnet:port:1' dev='x' adopt='yes' persist='maybe'/>`, 1), "XML error: Invalid value for attribute 'persist' in element 'tap': 'maybe'."},
		{`<networkport>`, "(networkport_definition):1: Premature end of data in tag networkport line 1\n<networkport>\n-------------^"},
	} {
		_, err := ParsePort([]byte(c.doc))
		if err == nil || err.Error() != c.want {
			t.Errorf("ParsePort(%q):\n got %v\nwant %s", c.doc, err, c.want)
		}
	}
}
