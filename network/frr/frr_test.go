package frr

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseSettings(t *testing.T) {
	s, err := ParseSettings("overlay.conf", []byte(`# host b
vtep 192.0.2.2
asn 65002
peer 192.0.2.3   # c
peer 192.0.2.1
timers 3 9
frr-vty-dir /run/frr/b
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.VTEP != netip.MustParseAddr("192.0.2.2") || s.ASN != 65002 || len(s.Peers) != 2 || s.RemoteAS != "external" || s.Keepalive != 3 || s.Hold != 9 {
		t.Fatalf("settings = %+v", s)
	}
	// Position among the sorted VTEPs .1 .2 .3: the second of three.
	if s.Slice != 1 || s.Slices != 3 {
		t.Fatalf("slice = %d/%d, want 1/3", s.Slice, s.Slices)
	}
	if s.RouterID != s.VTEP || s.NamesPort != DefaultNamesPort {
		t.Fatalf("router id = %s, names port %d: want the VTEP and the default", s.RouterID, s.NamesPort)
	}
	s, err = ParseSettings("o", []byte("vtep 2001:db8::2\nasn 1\ndhcp-slice 4/5\nremote-as internal\nrouter-id 192.0.2.9\nnames-port 0\n"))
	if err != nil || s.Slice != 4 || s.Slices != 5 || s.RemoteAS != "internal" || s.RouterID != netip.MustParseAddr("192.0.2.9") || s.NamesPort != 0 {
		t.Fatalf("settings = %+v, %v", s, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"asn 1\n", "o: vtep: missing"},
		{"vtep 192.0.2.1\n", "o: asn: missing"},
		{"vtep 192.0.2.1\nasn 1\nasn 2\n", "o:3: asn: given twice"},
		{"vtep 192.0.2.1\nasn x\n", `o:2: asn: "x" is not an AS number`},
		{"vtep fe80::1\nasn 1\n", `o:1: vtep: "fe80::1" is not a unicast IP address`},
		{"vtep 192.0.2.1\nasn 1\npeer 192.0.2.1\n", "o: peer: 192.0.2.1 is this host's own vtep"},
		{"vtep 192.0.2.1\nasn 1\npeer 2001:db8::1\n", "o: peer: 2001:db8::1 is not of the vtep's address family"},
		{"vtep 192.0.2.1\nasn 1\npeer 192.0.2.2\npeer 192.0.2.2\n", "o:4: peer: 192.0.2.2 is listed twice"},
		{"vtep 192.0.2.1\nasn 1\ntimers 9 3\n", "o:3: timers: want KEEPALIVE HOLD"},
		{"vtep 192.0.2.1\nasn 1\ndhcp-slice 3/3\n", `o:3: dhcp-slice: "3/3": want INDEX/COUNT`},
		{"vtep 192.0.2.1\nasn 1\nvtysh vtysh\n", `o:3: vtysh: "vtysh" is not an absolute path`},
		{"vtep 192.0.2.1\nasn 1\ncolour blue\n", "o:3: colour: unknown setting"},
		{"vtep 192.0.2.1\nasn 1\nrouter-id 2001:db8::1\n", `o:3: router-id: "2001:db8::1" is not an IPv4 address`},
		{"vtep 192.0.2.1 192.0.2.2\n", "o:1: vtep: needs 1 value(s), has 2"},
		{"vtep 192.0.2.1\nasn 1\nnames-port 70000\n", `o:3: names-port: "70000" is not a TCP port`},
	} {
		_, err := ParseSettings("o", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %s…", tc.in, err, tc.want)
		}
	}
}

// runningConfig is FRR 8.4's `show running-config` after vnet applied its
// configuration, with a stale member and an unrelated neighbor.
const runningConfig = `Building configuration...

Current configuration:
!
frr version 8.4.4
frr defaults traditional
hostname vm
!
router bgp 65001
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor vnet peer-group
 neighbor vnet remote-as external
 neighbor 192.0.2.2 peer-group vnet
 neighbor 192.0.2.9 peer-group vnet
 neighbor 198.51.100.1 remote-as 64999
 !
 address-family ipv4 unicast
  neighbor 198.51.100.1 activate
 exit-address-family
 !
 address-family l2vpn evpn
  neighbor vnet activate
 exit-address-family
exit
!
end
`

func TestConvergeConfig(t *testing.T) {
	s := &Settings{VTEP: netip.MustParseAddr("192.0.2.1"), RouterID: netip.MustParseAddr("192.0.2.1"), ASN: 65001, RemoteAS: "external",
		Peers: []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}}
	r := parseRunning(runningConfig, 65001)
	if len(r.asns) != 1 || r.asns[0] != "65001" || len(r.members) != 2 || !r.routerID || r.routeMap {
		t.Fatalf("running = %+v", r)
	}
	if r.lines[secIPv4]["neighbor 198.51.100.1 activate"] != true || r.lines[secEVPN]["neighbor 198.51.100.1 activate"] || !r.lines[secEVPN]["neighbor vnet activate"] {
		t.Fatalf("address families mixed up: %+v", r.lines)
	}
	var missing []string
	for _, l := range s.desired(r) {
		if !r.lines[l.section][l.text] {
			missing = append(missing, l.section+"|"+l.text)
		}
	}
	want := "|neighbor 192.0.2.3 peer-group vnet,l2vpn evpn|neighbor vnet route-map vnet-evpn in,l2vpn evpn|neighbor vnet route-map vnet-evpn out,l2vpn evpn|advertise-all-vni"
	if strings.Join(missing, ",") != want {
		t.Fatalf("missing = %q", missing)
	}
	// FRR activating new neighbors in IPv4 unicast (its default): vnet's
	// group is kept out of it; without a router id, the VTEP is it.
	r = parseRunning("frr defaults traditional\n!\nend\n", 65001)
	got := s.desired(r)
	if got[0].text != "bgp router-id 192.0.2.1" || !slices.Contains(got, cfgLine{secIPv4, "no neighbor vnet activate"}) {
		t.Fatalf("desired on an empty FRR = %+v", got)
	}
}

// TestVTYArgv: the vtysh command line a dry run prints.
func TestVTYArgv(t *testing.T) {
	v := NewVTY(&Settings{VtyDir: "/run/frr/b", Pathspace: "b"})
	if got := strings.Join(v.argv(), " "); got != "vtysh -N b --vty_socket /run/frr/b --config_dir /run/frr/b" {
		t.Fatalf("argv = %s", got)
	}
}
