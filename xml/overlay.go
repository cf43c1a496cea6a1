package netxml

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxVNI is the largest VXLAN network identifier (24 bits).
const MaxVNI = 1<<24 - 1

// Overlay is vnet's <vnet:overlay xmlns:vnet='urn:vnet:network:1' vni='N'
// gateway='anycast'/>: the network spans hosts on a VXLAN segment whose
// control plane is BGP EVPN (FRR). Every host that defines the network with
// the same VNI joins the same layer-2 segment.
type Overlay struct {
	// VNI is the VXLAN network identifier, 1 to MaxVNI.
	VNI uint32
	// Gateway is how the network's gateway is placed: "anycast" (the only
	// kind, also when not written): every host's bridge carries the
	// network's addresses and MAC, so a guest keeps its gateway on any host.
	Gateway string
}

// OverlayGatewayMAC is the bridge MAC FillDefaults gives an overlay network
// that names none: derived from the VNI (02:76:6e = locally administered,
// "vn"), so every host that defines the network gets the same anycast MAC
// without copying it.
func OverlayGatewayMAC(vni uint32) string {
	return fmt.Sprintf("02:76:6e:%02x:%02x:%02x", byte(vni>>16), byte(vni>>8), byte(vni))
}

// parseOverlay reads vnet's <vnet:overlay> (any prefix bound to NetworkNS).
func parseOverlay(root *elem) (*Overlay, error) {
	var found *elem
	for _, it := range root.items {
		if it.el == nil || it.el.uri != NetworkNS {
			continue
		}
		if it.el.local != "overlay" {
			continue // <vnet:forward> (usermode.go) checks the others
		}
		if found != nil {
			return nil, xmlErr("only one <vnet:overlay> element is allowed in a network")
		}
		found = it.el
	}
	if found == nil {
		return nil, nil
	}
	o := &Overlay{}
	seenVNI := false
	for _, a := range found.attrs {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		if a.Name.Space != "" {
			return nil, xmlErr("unknown attribute '%s:%s' in <vnet:overlay>", a.Name.Space, a.Name.Local)
		}
		switch a.Name.Local {
		case "vni":
			v, err := strconv.ParseUint(strings.TrimSpace(a.Value), 10, 32)
			if err != nil || v < 1 || v > MaxVNI {
				return nil, xmlErr("invalid vni '%s' in <vnet:overlay>: must be 1 to %d", a.Value, MaxVNI)
			}
			o.VNI, seenVNI = uint32(v), true
		case "gateway":
			if a.Value != "anycast" {
				return nil, xmlErr("invalid gateway '%s' in <vnet:overlay>: the only kind is 'anycast'", a.Value)
			}
			o.Gateway = a.Value
		default:
			return nil, xmlErr("unknown attribute '%s' in <vnet:overlay>", a.Name.Local)
		}
	}
	if !seenVNI {
		return nil, xmlErr("<vnet:overlay> needs a vni")
	}
	return o, nil
}

// formatOverlay writes <vnet:overlay>, the last child of <network>.
func formatOverlay(w *writer, o *Overlay) {
	if o == nil {
		return
	}
	w.start("vnet:overlay").rattr("xmlns:vnet", NetworkNS).uattr("vni", uint(o.VNI)).attr("gateway", o.Gateway).empty()
}

// validateOverlay checks that an overlay network is one whose bridge vnet
// creates and routes for (NAT, route or isolated).
func validateOverlay(n *Network) error {
	if n.Overlay == nil {
		return nil
	}
	if n.User != nil {
		return Errorf(KindUnsupported, "network '%s': <vnet:overlay> needs forward mode nat, route or none (isolated), not 'user'", n.Name)
	}
	switch n.ForwardMode() {
	case "", "nat", "route":
	default:
		return Errorf(KindUnsupported, "network '%s': <vnet:overlay> needs forward mode nat, route or none (isolated), not '%s'", n.Name, n.ForwardMode())
	}
	return nil
}

// CheckOverlayConflict refuses an overlay whose VNI another network (any
// of others, the other definitions on this host) already uses: one VNI is
// one VXLAN device and one segment.
func CheckOverlayConflict(n *Network, others []*Network) error {
	if n.Overlay == nil {
		return nil
	}
	for _, o := range others {
		if o.Name != n.Name && o.Overlay != nil && o.Overlay.VNI == n.Overlay.VNI {
			return Errorf(KindOperationFailed, "vni %d of network '%s' is already used by network '%s'", n.Overlay.VNI, n.Name, o.Name)
		}
	}
	return nil
}
