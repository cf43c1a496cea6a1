package doctor

import (
	"fmt"
	"strings"

	"vnet/network/frr"
)

// Overlay is the control plane of a network's <vnet:overlay> as this
// host's FRR reports it (the daemon reads it with vtysh and fills it in).
type Overlay struct {
	// VNI and Device are the overlay's VXLAN network identifier and device.
	VNI    uint32
	Device string
	// FRR is FRR's view of the overlay: zebra's VNI, the BGP l2vpn evpn
	// neighbors (nil when it could not be read).
	FRR *frr.Status
	// Err says why FRR's state could not be read ("" when it could).
	Err string
	// Vtysh is the command line that reaches this host's FRR ("vtysh",
	// or with its socket directory), for the fixes.
	Vtysh string
}

// checkOverlay reports the overlay's control plane: FRR reachable
// (overlay.frr), the VNI known to zebra (overlay.vni), every BGP peer
// established (overlay.peer, one problem per peer that is not).
func checkOverlay(n Network) []Result {
	o := n.Overlay
	if o == nil {
		return nil
	}
	vtysh := o.Vtysh
	if vtysh == "" {
		vtysh = "vtysh"
	}
	if o.Err != "" || o.FRR == nil {
		return []Result{problem(CheckOverlayFRR, n.Name,
			fmt.Sprintf("FRR does not answer for the overlay (vni %d) of %s: %s", o.VNI, n.Bridge, o.Err),
			"start FRR with zebra and bgpd (bgpd=yes in /etc/frr/daemons, then systemctl restart frr); vnetd gives bgpd its configuration within 2 s")}
	}
	out := []Result{ok(CheckOverlayFRR, n.Name, fmt.Sprintf("FRR answers for the overlay (vni %d) of %s", o.VNI, n.Bridge))}
	if o.FRR.VNIKnown {
		out = append(out, ok(CheckOverlayVNI, n.Name, fmt.Sprintf("zebra knows vni %d (%s)", o.VNI, o.Device)))
	} else {
		out = append(out, problem(CheckOverlayVNI, n.Name,
			fmt.Sprintf("FRR's zebra does not know vni %d: %s is not up in %s, or bgpd lacks advertise-all-vni", o.VNI, o.Device, n.Bridge),
			fmt.Sprintf("ip -d link show %s (up, master %s: vnetd repairs it, see its log); %s -c 'show running-config' must have advertise-all-vni under address-family l2vpn evpn", o.Device, n.Bridge, vtysh)))
	}
	peers := o.FRR.Peers
	if len(peers) == 0 {
		return append(out, problem(CheckOverlayPeer, n.Name,
			fmt.Sprintf("the overlay (vni %d) of %s has no BGP peers in FRR", o.VNI, n.Bridge),
			"add a peer line per other host (or route reflector) to vnetd's overlay.conf and restart vnetd"))
	}
	var up []string
	for _, p := range peers {
		if p.Up() {
			up = append(up, p.Address)
			continue
		}
		out = append(out, problem(CheckOverlayPeer, n.Name,
			fmt.Sprintf("BGP peer %s of the overlay (vni %d) of %s is %s, not Established: no EVPN routes are exchanged with it", p.Address, o.VNI, n.Bridge, p.State),
			fmt.Sprintf("make FRR (bgpd) run on %s with this host as its peer, and TCP 179 and UDP 4789 pass between the VTEPs; %s -c 'show bgp neighbors %s' says why", p.Address, vtysh, p.Address)))
	}
	if len(up) == len(peers) {
		out = append(out, ok(CheckOverlayPeer, n.Name, fmt.Sprintf("%d of %d BGP peers Established: %s", len(up), len(peers), strings.Join(up, ", "))))
	}
	return out
}
