package daemon

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"sync"

	"libvirt.org/go/libvirtxml"

	"vnet/daemon/api"
	"vnet/doctor"
	"vnet/network"
	"vnet/network/frr"
	netxml "vnet/xml"
)

// overlayView returns the network as this host serves it when it has a
// <vnet:overlay>, and the desired state of its VXLAN device: the bridge MTU
// lowered by the VXLAN overhead unless the definition sets one (dnsmasq's
// DHCP MTU option follows it), STP off (BPDUs would cross the overlay
// between bridges that share the anycast MAC), every DHCP range cut to
// this host's slice, and the DHCP names of guests on other hosts as
// <dns><host> entries. Without an overlay it returns n itself.
func (h *realHost) overlayView(n *netxml.Network) (*netxml.Network, *network.VXLANSpec, error) {
	if n.Overlay == nil {
		return n, nil, nil
	}
	s := h.overlay
	if s == nil {
		return nil, nil, netxml.Errorf(netxml.KindInvalidOperation,
			"network '%s' has <vnet:overlay> but this host has no overlay settings (%s)", n.Name, h.overlayPath)
	}
	v := n.Clone()
	// Also a check that the VTEP address is on this host, with or
	// without an MTU in the definition.
	mtu, err := network.OverlayMTU(s.VTEP)
	if err != nil {
		return nil, nil, netxml.Errorf(netxml.KindOperationFailed, "network '%s': overlay: %v", n.Name, err)
	}
	if v.MTU == nil || v.MTU.Size == 0 {
		v.MTU = &libvirtxml.NetworkMTU{Size: uint(mtu)}
	}
	if v.Bridge != nil {
		v.Bridge.STP = "off"
	}
	for _, ip := range v.IPs {
		if ip.DHCP == nil {
			continue
		}
		for i, r := range ip.DHCP.Ranges {
			start, end, err := dhcpSlice(r.Start, r.End, s.Slice, s.Slices)
			if err != nil {
				return nil, nil, netxml.Errorf(netxml.KindInvalidOperation, "network '%s': DHCP range %s-%s: %v", n.Name, r.Start, r.End, err)
			}
			ip.DHCP.Ranges[i].Start, ip.DHCP.Ranges[i].End = start, end
		}
	}
	h.addRemoteNames(v)
	spec := &network.VXLANSpec{
		Name: network.VXLANName(n.Overlay.VNI), Network: n.Name, Bridge: n.BridgeName(),
		VNI: n.Overlay.VNI, Local: s.VTEP, MTU: int(v.MTU.Size),
	}
	return v, spec, nil
}

// served is the network as this host serves it (overlayView), for the
// parts that only read it (a port's TAP takes the overlay's MTU); n itself
// when it has no overlay or its view cannot be computed (the network's own
// converge reports why).
func (h *realHost) served(n *netxml.Network) *netxml.Network {
	if n == nil || n.Overlay == nil {
		return n
	}
	if v, _, err := h.overlayView(n); err == nil {
		return v
	}
	return n
}

// dhcpSlice cuts the range start-end into count equal parts and returns the
// index-th (0-based; the last part takes the remainder), so that hosts with
// different indexes never lease the same address.
func dhcpSlice(start, end string, index, count int) (string, string, error) {
	a, err1 := netip.ParseAddr(start)
	b, err2 := netip.ParseAddr(end)
	if err1 != nil || err2 != nil || a.Is4() != b.Is4() || b.Less(a) {
		return "", "", fmt.Errorf("not a range")
	}
	if count <= 1 {
		return start, end, nil
	}
	lo, hi := new(big.Int).SetBytes(a.AsSlice()), new(big.Int).SetBytes(b.AsSlice())
	size := new(big.Int).Sub(hi, lo)
	size.Add(size, big.NewInt(1))
	part := new(big.Int).Div(size, big.NewInt(int64(count)))
	if part.Sign() == 0 {
		return "", "", fmt.Errorf("%s addresses cannot be split between %d hosts", size, count)
	}
	first := new(big.Int).Add(lo, new(big.Int).Mul(part, big.NewInt(int64(index))))
	last := new(big.Int).Add(first, part)
	last.Sub(last, big.NewInt(1))
	if index == count-1 {
		last = hi
	}
	toAddr := func(x *big.Int) string {
		buf := make([]byte, len(a.AsSlice()))
		x.FillBytes(buf)
		ip, _ := netip.AddrFromSlice(buf)
		return ip.String()
	}
	return toAddr(first), toAddr(last), nil
}

// convergeFRR brings FRR's BGP EVPN configuration to this host's overlay
// settings. FRR is a service of its own: when it is unreachable the
// network's data plane still stands, so its failure is logged (and found
// again by the next verification), never a reason to fail or tear down a
// network.
func (h *realHost) convergeFRR(n *netxml.Network, ex network.Executor) {
	if err := frr.NewVTY(h.overlay).Converge(ex); err != nil {
		h.log.Warn("overlay control plane", "network", n.Name, "err", err)
	}
}

// OverlayStatus implements overlayHost.
func (h *realHost) OverlayStatus(n *netxml.Network) (*api.Overlay, error) {
	if n.Overlay == nil {
		return nil, nil
	}
	st, err := h.frrStatus(n, h.readBGP)
	return h.apiOverlay(n, st, err), nil
}

// readBGP reads FRR's host-wide BGP state (frr.VTY.BGP).
func (h *realHost) readBGP() (*frr.BGP, error) { return frr.NewVTY(h.overlay).BGP() }

// frrStatus reads FRR's view of n's overlay, with the host-wide BGP state
// from bgp (a caller reading many overlays reads it once).
func (h *realHost) frrStatus(n *netxml.Network, bgp func() (*frr.BGP, error)) (*frr.Status, error) {
	if h.overlay == nil {
		return nil, fmt.Errorf("this host has no overlay settings (%s)", h.overlayPath)
	}
	b, err := bgp()
	if err != nil {
		return nil, err
	}
	return frr.NewVTY(h.overlay).StatusWith(b, n.Overlay.VNI)
}

// apiOverlay is n's overlay as net-info shows it: FRR's view st, or err
// saying why it could not be read.
func (h *realHost) apiOverlay(n *netxml.Network, st *frr.Status, err error) *api.Overlay {
	o := &api.Overlay{VNI: n.Overlay.VNI, Device: network.VXLANName(n.Overlay.VNI), Peers: []api.OverlayPeer{}}
	if h.overlay != nil {
		o.VTEP = h.overlay.VTEP.String()
	}
	if err != nil {
		o.Error = err.Error()
		return o
	}
	o.VNIKnown = st.VNIKnown
	o.RemoteVTEPs = st.RemoteVTEPs
	o.LocalMACs = st.LocalMACs
	o.RemoteMACs = st.RemoteMACs
	for _, p := range st.Peers {
		o.Peers = append(o.Peers, api.OverlayPeer{Address: p.Address, State: p.State, Up: p.Up(), Uptime: p.Uptime, Prefixes: p.Prefixes})
	}
	return o
}

// doctorOverlays gives every active overlay network of nets FRR's view of
// its overlay for net-doctor's checks (doctor.checkOverlay says what is
// wrong with it), reading FRR's host-wide BGP state once for all of them.
func (h *realHost) doctorOverlays(nets []doctor.Network, live func(name string) *netxml.Network) {
	bgp := sync.OnceValues(h.readBGP)
	vtysh := ""
	if h.overlay != nil {
		vtysh = frr.NewVTY(h.overlay).Command()
	}
	for i := range nets {
		if !nets[i].Active {
			continue
		}
		n := live(nets[i].Name)
		if n == nil || n.Overlay == nil {
			continue
		}
		d := &doctor.Overlay{VNI: n.Overlay.VNI, Device: network.VXLANName(n.Overlay.VNI), Vtysh: vtysh}
		var err error
		if d.FRR, err = h.frrStatus(n, bgp); err != nil {
			d.Err = err.Error()
		}
		nets[i].Overlay = d
	}
}

// overlayHost is the part of a Host that reads an overlay's control plane
// (the real host; the test driver has none).
type overlayHost interface {
	// OverlayStatus returns FRR's view of the network's overlay (nil for a
	// network without one). FRR being unreachable is reported in the
	// result's Error, not as an error.
	OverlayStatus(n *netxml.Network) (*api.Overlay, error)
}

var _ overlayHost = (*realHost)(nil)

// OverlayStatus returns the overlay state of an active network (BGP
// peers, VNI, remote VTEPs and MACs as FRR sees them), or nil when the
// network has no overlay, is not active or the host cannot tell (test
// driver). net-info shows it.
func (m *Manager) OverlayStatus(ref string) (*api.Overlay, error) {
	live, err := m.liveOverlay(ref)
	if err != nil || live == nil {
		return nil, err
	}
	oh, ok := m.host.(overlayHost)
	if !ok {
		return nil, nil
	}
	return oh.OverlayStatus(live)
}

// liveOverlay returns the running definition of the network ref when it is
// active and has an overlay (nil otherwise).
func (m *Manager) liveOverlay(ref string) (*netxml.Network, error) {
	o, err := m.lookup(ref, "any")
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	live := o.live
	m.mu.RUnlock()
	if live == nil || live.Overlay == nil {
		return nil, nil
	}
	return live, nil
}

// activeVXLANs returns the VXLAN device names of the active overlay
// networks (what PruneVXLANs keeps at daemon start).
func (m *Manager) activeVXLANs() map[string]bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	keep := map[string]bool{}
	for _, o := range m.byName {
		if o.live != nil && o.live.Overlay != nil {
			keep[network.VXLANName(o.live.Overlay.VNI)] = true
		}
	}
	return keep
}

// watchFRR hints every network when this host's FRR (bgpd) starts again,
// so that overlays get their BGP EVPN configuration back at once instead of
// at the next periodic check. Nothing to watch without overlay settings.
func (m *Manager) watchFRR(ctx context.Context, r *repairer) {
	h, ok := m.host.(*realHost)
	if !ok || h.overlay == nil {
		return
	}
	frr.WatchRestarts(ctx, h.overlay, func() {
		m.log.Info("FRR (bgpd) started: checking the overlay networks")
		r.hint(allNetworks)
	})
}
