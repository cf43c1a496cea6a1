package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vnet/doctor"
	"vnet/network/frr"
	netxml "vnet/xml"
)

// A daemon whose host is not the machine's (here a fake; the test driver
// and session daemons alike) refuses net-doctor instead of answering an
// empty report, which would read as "no problems found".
func TestDoctorRefusedWithoutHost(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	rep, err := m.Doctor(context.Background(), "")
	var xe *netxml.Error
	if !errors.As(err, &xe) || xe.Kind != netxml.KindOperationUnsupported || len(rep.Checks) != 0 {
		t.Fatalf("Doctor on a host it cannot read: %+v, %v", rep, err)
	}
}

// A doctor run reads FRR's host-wide BGP summary once for all its overlay
// networks, and each overlay's own VNI state.
func TestDoctorOverlaysReadBGPOnce(t *testing.T) {
	dir := t.TempDir()
	script := `#!/bin/sh
echo "$*" >> ` + dir + `/calls
case "$*" in
*"show bgp l2vpn evpn summary json"*) echo '{"routerId":"192.0.2.1","as":65001,"peers":{"192.0.2.2":{"state":"Established","pfxRcd":4}}}' ;;
*"show evpn vni 7 json"*) echo '{"vni":7,"numRemoteVteps":["192.0.2.2"]}' ;;
*"show evpn mac vni 7 json"*) echo '{"macs":{}}' ;;
*) echo '' ;;
esac
`
	bin := filepath.Join(dir, "vtysh")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &realHost{overlay: &frr.Settings{Vtysh: bin}}
	defs := map[string]*netxml.Network{}
	for name, vni := range map[string]uint32{"a": 7, "b": 8} {
		n := &netxml.Network{}
		n.Name, n.Overlay = name, &netxml.Overlay{VNI: vni}
		defs[name] = n
	}
	nets := []doctor.Network{{Name: "a", Active: true}, {Name: "b", Active: true}, {Name: "c", Active: true}, {Name: "d"}}
	h.doctorOverlays(nets, func(name string) *netxml.Network { return defs[name] })
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if got := strings.Count(string(calls), "show bgp l2vpn evpn summary"); got != 1 {
		t.Errorf("BGP summary read %d times:\n%s", got, calls)
	}
	a, b := nets[0].Overlay, nets[1].Overlay
	if a == nil || a.Err != "" || !a.FRR.VNIKnown || len(a.FRR.Peers) != 1 || a.Device != "vxlan7" || a.Vtysh != bin {
		t.Errorf("a: %+v", a)
	}
	if b == nil || b.Err != "" || b.FRR.VNIKnown || len(b.FRR.Peers) != 1 || b.VNI != 8 {
		t.Errorf("b: %+v", b)
	}
	if nets[2].Overlay != nil || nets[3].Overlay != nil {
		t.Errorf("networks without an active overlay: %+v, %+v", nets[2].Overlay, nets[3].Overlay)
	}
}
