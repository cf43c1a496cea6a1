package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"vnet/daemon/api"
)

// setLocal makes loc the zone leases print their expiry in, for the test.
func setLocal(t *testing.T, loc *time.Location) {
	old := leaseZone
	leaseZone = loc
	t.Cleanup(func() { leaseZone = old })
}

func TestNetDHCPLeasesDoc(t *testing.T) {
	setLocal(t, time.UTC)
	f := newFake().add(api.Network{Name: "default", UUID: uuidDefault, Active: true, Persistent: true}, "")
	f.leases["default"] = []api.Lease{{ExpiryTime: 1795353736, MAC: "52:54:00:12:34:01", Protocol: "ipv4", IPAddr: "192.168.122.244", Prefix: 24, Hostname: "vm"}}
	replay(t, f.start(t), exDHCPLeases)
}

// twoLeases are an IPv6 lease without a hostname and an IPv4 one, in an
// order that neither a case-sensitive sort nor the daemon's order gets right.
var twoLeases = []api.Lease{
	{ExpiryTime: 1795000000, MAC: "52:54:00:12:34:0B", Protocol: "ipv6", IPAddr: "fd00:40::5a", Prefix: 64,
		ClientID: "00:04:4c:9c:2d:1e:8a:5b:33:f0:6e:4a:1d:c2:07:99:aa:10", IAID: "11714057"},
	{ExpiryTime: 1795003600, MAC: "52:54:00:12:34:0a", Protocol: "ipv4", IPAddr: "10.40.0.20", Prefix: 24,
		Hostname: "vm1", ClientID: "01:52:54:00:12:34:0a"},
}

func TestNetDHCPLeases(t *testing.T) {
	setLocal(t, time.FixedZone("CET", 3600))
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true, Active: true})
	f.leases["ref-open"] = twoLeases
	sock := f.start(t)
	replay(t, sock, `$ virsh net-dhcp-leases ref-open
 Expiry Time           MAC address         Protocol   IP address       Hostname   Client ID or DUID
-----------------------------------------------------------------------------------------------------------------------------------------
 2026-11-18 13:06:40   52:54:00:12:34:0a   ipv4       10.40.0.20/24    vm1        01:52:54:00:12:34:0a
 2026-11-18 12:06:40   52:54:00:12:34:0B   ipv6       fd00:40::5a/64   -          00:04:4c:9c:2d:1e:8a:5b:33:f0:6e:4a:1d:c2:07:99:aa:10

$ virsh net-dhcp-leases `+uuidOpen+` --mac 52:54:00:12:34:0b
 Expiry Time           MAC address         Protocol   IP address       Hostname   Client ID or DUID
-----------------------------------------------------------------------------------------------------------------------------------------
 2026-11-18 12:06:40   52:54:00:12:34:0B   ipv6       fd00:40::5a/64   -          00:04:4c:9c:2d:1e:8a:5b:33:f0:6e:4a:1d:c2:07:99:aa:10

$ virsh net-dhcp-leases ref-open 52:54:00:12:34:0A
 Expiry Time           MAC address         Protocol   IP address      Hostname   Client ID or DUID
-------------------------------------------------------------------------------------------------------
 2026-11-18 13:06:40   52:54:00:12:34:0a   ipv4       10.40.0.20/24   vm1        01:52:54:00:12:34:0a

$ virsh net-dhcp-leases ref-open --mac 52:54:00:99:99:99
 Expiry Time   MAC address   Protocol   IP address   Hostname   Client ID or DUID
-----------------------------------------------------------------------------------

$ virsh net-dhcp-leases ref-nat2
error: Failed to get leases info for ref-nat2
error: Requested operation is not valid: network 'ref-nat2' is not active

$ virsh net-dhcp-leases nosuchnet
error: failed to get network 'nosuchnet'
error: Network not found: no network with matching name 'nosuchnet'

`)
	// --quiet: no header, widths from the rows alone.
	r := vnetctl(sock, "-q", "net-dhcp-leases", "ref-open")
	want := " 2026-11-18 13:06:40   52:54:00:12:34:0a   ipv4   10.40.0.20/24    vm1   01:52:54:00:12:34:0a\n" +
		" 2026-11-18 12:06:40   52:54:00:12:34:0B   ipv6   fd00:40::5a/64   -     00:04:4c:9c:2d:1e:8a:5b:33:f0:6e:4a:1d:c2:07:99:aa:10\n"
	if r.stdout != want || r.code != 0 {
		t.Errorf("-q: got %q (%d), want %q", r.stdout, r.code, want)
	}
}

func TestNetDHCPLeasesJSON(t *testing.T) {
	f := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true, Active: true})
	f.leases["ref-open"] = twoLeases
	sock := f.start(t)
	r := vnetctl(sock, "-q", "net-dhcp-leases", "--json", "ref-open")
	var got []api.Lease
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("--json: %v (%d): %q", err, r.code, r.stdout)
	}
	if want := []api.Lease{twoLeases[1], twoLeases[0]}; !reflect.DeepEqual(got, want) {
		t.Errorf("--json: %+v, want %+v (sorted by MAC)", got, want)
	}
	wantText := `[
  {
    "expiryTime": 1795003600,
    "mac": "52:54:00:12:34:0a",
    "protocol": "ipv4",
    "ipaddr": "10.40.0.20",
    "prefix": 24,
    "hostname": "vm1",
    "clientid": "01:52:54:00:12:34:0a"
  }
]

`
	if r := vnetctl(sock, "net-dhcp-leases", "ref-open", "--json", "--mac", "52:54:00:12:34:0A"); r.stdout != wantText || r.code != 0 {
		t.Errorf("--json --mac: got %q (%d), want %q", r.stdout, r.code, wantText)
	}
	if r := vnetctl(sock, "-q", "net-dhcp-leases", "ref-open", "--json", "52:54:00:99:99:99"); r.stdout != "[]\n" || r.code != 0 {
		t.Errorf("--json, no lease: got %q (%d), want []", r.stdout, r.code)
	}
}

func TestNetDHCPLeasesErrors(t *testing.T) {
	sock := refNetworks(api.Network{Name: "ref-open", UUID: uuidOpen, Persistent: true, Active: true}).start(t)
	cases := []struct {
		args           []string
		stdout, stderr string
	}{
		{[]string{"net-dhcp-leases"}, "", "error: command 'net-dhcp-leases' requires <network> option\n"},
		{[]string{"net-dhcp-leases", "ref-open", "a", "b"}, "", "error: unexpected data 'b'\n"},
		{[]string{"net-dhcp-leases", "ref-open", "--mac", ""}, "\n", "error: Failed to get option 'mac': Option argument is empty\n"},
		{[]string{"net-dhcp-leases", "--mac="}, "", "error: command 'net-dhcp-leases' requires <network> option\n"},
		{[]string{"net-dhcp-leases", "ref-open", "--bogus"}, "", "error: command 'net-dhcp-leases' doesn't support option --bogus\n"},
	}
	for _, tc := range cases {
		r := vnetctl(sock, tc.args...)
		if r.code != 1 || r.stdout != tc.stdout || r.stderr != tc.stderr {
			t.Errorf("%q: got %d %q %q, want stdout %q stderr %q", tc.args, r.code, r.stdout, r.stderr, tc.stdout, tc.stderr)
		}
	}
}
