package doctor

import (
	"strings"
	"testing"

	"vnet/network/frr"
)

func TestCheckOverlay(t *testing.T) {
	n := Network{Name: "ov", Bridge: "ovbr0"}
	if got := checkOverlay(n); got != nil {
		t.Errorf("no overlay: %+v", got)
	}
	st := &frr.Status{VNIKnown: true, BGP: frr.BGP{Peers: []frr.Peer{{Address: "192.0.2.2", State: "Established"}, {Address: "192.0.2.3", State: "Active"}}}}
	n.Overlay = &Overlay{VNI: 7, Device: "vxlan7", FRR: st, Vtysh: "vtysh --vty_socket /x"}
	got := checkOverlay(n)
	ps := Problems(got)
	if len(got) != 3 || len(ps) != 1 || ps[0].ID != CheckOverlayPeer ||
		!strings.HasPrefix(ps[0].Detail, "BGP peer 192.0.2.3 of the overlay (vni 7) of ovbr0 is Active, not Established") ||
		!strings.Contains(ps[0].Fix, "vtysh --vty_socket /x -c 'show bgp neighbors 192.0.2.3'") {
		t.Errorf("one peer down: %+v", got)
	}
	st.Peers[1].State = "Established"
	if got := checkOverlay(n); len(Problems(got)) != 0 || len(got) != 3 || got[2].Detail != "2 of 2 BGP peers Established: 192.0.2.2, 192.0.2.3" {
		t.Errorf("all up: %+v", got)
	}
	st.VNIKnown, st.Peers = false, nil
	if ps := Problems(checkOverlay(n)); len(ps) != 2 || ps[0].ID != CheckOverlayVNI || ps[1].ID != CheckOverlayPeer {
		t.Errorf("vni unknown, no peers: %+v", ps)
	}
	n.Overlay.FRR, n.Overlay.Err = nil, "frr: vtysh: exit status 1"
	if got := checkOverlay(n); len(got) != 1 || got[0].OK || got[0].ID != CheckOverlayFRR || !strings.Contains(got[0].Detail, "exit status 1") {
		t.Errorf("FRR unreachable: %+v", got)
	}
}
