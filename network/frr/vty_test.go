package frr

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vnet/network"
)

// fakeVtysh writes a vtysh stand-in that answers `show running-config` with
// running, the JSON shows with canned FRR 8.4 output (or nothing for an
// unknown VNI), and logs every configuration call to DIR/calls and every
// BGP summary to DIR/shows.
func fakeVtysh(t *testing.T, running string, vniKnown bool) (*Settings, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "running"), []byte(running), 0o644); err != nil {
		t.Fatal(err)
	}
	vni, macs := "", ""
	if vniKnown {
		vni = `{"vni":100,"type":"L2","vxlanInterface":"vxlan100","numMacs":3,"numRemoteVteps":["192.0.2.2"]}`
		macs = `{"numMacs":3,"macs":{"52:54:00:00:00:01":{"type":"local","intf":"vp1"},"52:54:00:00:00:02":{"type":"remote","remoteVtep":"192.0.2.2"},"02:76:6e:00:00:64":{"type":"local"}}}`
	}
	script := `#!/bin/sh
dir=` + dir + `
all="$*"
case "$all" in
*"show running-config"*) cat $dir/running ;;
*"show bgp l2vpn evpn summary json"*) echo summary >> $dir/shows; echo '{"routerId":"192.0.2.1","as":65001,"peers":{"192.0.2.3":{"state":"Active","pfxRcd":0},"192.0.2.2":{"state":"Established","peerUptime":"00:01:00","pfxRcd":4}}}' ;;
*"show evpn vni 100 json"*) echo '` + vni + `' ;;
*"show evpn mac vni 100 json"*) echo '` + macs + `' ;;
*"configure terminal"*) echo "$all" >> $dir/calls ;;
*) echo "% Unknown command: $all"; exit 1 ;;
esac
`
	bin := filepath.Join(dir, "vtysh")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Settings{VTEP: netip.MustParseAddr("192.0.2.1"), RouterID: netip.MustParseAddr("192.0.2.1"), ASN: 65001, RemoteAS: "external", Vtysh: bin, VtyDir: dir,
		Peers: []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}}
	return s, dir
}

func TestVTYConverge(t *testing.T) {
	s, dir := fakeVtysh(t, runningConfig, true)
	v := NewVTY(s)
	var rec network.Record
	if err := v.Converge(&rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Steps) != 1 || !strings.Contains(rec.Steps[0].Problem, "neighbor 192.0.2.3 peer-group vnet") ||
		!strings.Contains(rec.Steps[0].Problem, "stale neighbor 192.0.2.9") || !strings.Contains(rec.Steps[0].Problem, "l2vpn evpn: advertise-all-vni") ||
		!strings.Contains(rec.Steps[0].Problem, "route-map vnet-evpn") {
		t.Fatalf("steps: %+v", rec.Steps)
	}
	if _, err := os.Stat(filepath.Join(dir, "calls")); err == nil {
		t.Fatal("recording changed FRR")
	}
	var ex network.Apply
	if err := v.Converge(&ex); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	want := "--vty_socket " + dir + " --config_dir " + dir + " -c configure terminal -c route-map vnet-evpn permit 10 -c exit -c router bgp 65001" +
		" -c neighbor 192.0.2.3 peer-group vnet -c no neighbor 192.0.2.9 -c address-family l2vpn evpn" +
		" -c neighbor vnet route-map vnet-evpn in -c neighbor vnet route-map vnet-evpn out -c advertise-all-vni -c exit-address-family\n"
	if string(calls) != want {
		t.Fatalf("vtysh got:\n%s\nwant:\n%s", calls, want)
	}
	// The unrelated neighbor 198.51.100.1 and its address family are
	// never touched; another AS is refused.
	s.ASN = 65009
	if err := v.Converge(&network.Record{}); err == nil || !strings.Contains(err.Error(), "BGP runs as AS 65001 here; the overlay settings say AS 65009") {
		t.Fatalf("other AS: %v", err)
	}
	// An empty FRR gets the whole configuration.
	s2, _ := fakeVtysh(t, "Building configuration...\n!\nend\n", true)
	var rec2 network.Record
	if err := NewVTY(s2).Converge(&rec2); err != nil || len(rec2.Steps) != 1 || !strings.Contains(rec2.Steps[0].Cmd, "-c 'bgp router-id 192.0.2.1'") {
		t.Fatalf("empty FRR: %v %+v", err, rec2.Steps)
	}
}

func TestVTYStatus(t *testing.T) {
	s, _ := fakeVtysh(t, runningConfig, true)
	st, err := NewVTY(s).Status(100)
	if err != nil {
		t.Fatal(err)
	}
	if !st.VNIKnown || st.LocalMACs != 2 || st.RemoteMACs["52:54:00:00:00:02"] != "192.0.2.2" || len(st.RemoteVTEPs) != 1 ||
		len(st.Peers) != 2 || st.Peers[0].Address != "192.0.2.2" || !st.Peers[0].Up() || st.Peers[1].Up() || st.Peers[0].Prefixes != 4 {
		t.Fatalf("status = %+v", st)
	}
	s, _ = fakeVtysh(t, runningConfig, false)
	st, err = NewVTY(s).Status(100)
	if err != nil || st.VNIKnown || len(st.RemoteMACs) != 0 {
		t.Fatalf("unknown VNI: %+v, %v", st, err)
	}
	s.Vtysh = filepath.Join(t.TempDir(), "missing")
	if _, err := NewVTY(s).Status(100); err == nil || !strings.Contains(err.Error(), "frr: vtysh show bgp l2vpn evpn summary json") {
		t.Fatalf("no vtysh: %v", err)
	}
}

// The host-wide BGP summary is read once for any number of overlays.
func TestVTYStatusWithSharedBGP(t *testing.T) {
	s, dir := fakeVtysh(t, runningConfig, true)
	v := NewVTY(s)
	b, err := v.BGP()
	if err != nil {
		t.Fatal(err)
	}
	st1, err1 := v.StatusWith(b, 100)
	st2, err2 := v.StatusWith(b, 100)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	want, err := v.Status(100)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st1, want) || !reflect.DeepEqual(st2, want) {
		t.Fatalf("with the shared summary: %+v, alone: %+v", st1, want)
	}
	if shows, _ := os.ReadFile(filepath.Join(dir, "shows")); string(shows) != "summary\nsummary\n" {
		t.Fatalf("BGP summaries read: %q, want one for the shared state and one for Status", shows)
	}
	st1.Peers[0].State = "Idle"
	if b.Peers[0].State != "Established" {
		t.Fatal("a status shares its peers with the BGP state")
	}
}
