package daemon

import (
	"errors"
	"net"
	"os"
	"slices"

	"vnet/network"
	netxml "vnet/xml"
)

// tapSpec is the desired state of a port's TAP: plugged into the bridge of n
// when n is not nil.
func tapSpec(n *netxml.Network, p *netxml.Port, withOwner bool) (network.TAPSpec, error) {
	t := p.TAP
	s := network.TAPSpec{Name: t.Dev, Port: p.UUID, Adopt: t.Adopt, Transient: t.Transient, MultiQueue: t.Queues > 1}
	if n != nil {
		s.Bridge = n.BridgeName()
		if n.MTU != nil {
			s.MTU = int(n.MTU.Size)
		}
	}
	hostMAC, err := netxml.HostMAC(p.MAC.Address)
	if err != nil {
		return s, err
	}
	if s.MAC, err = net.ParseMAC(hostMAC); err != nil {
		return s, err
	}
	if withOwner {
		if s.Owner, s.Group, err = network.ResolveOwner(t.User, t.Group); err != nil {
			return s, netxml.Errorf(netxml.KindInvalidArg, "%s", err.Error())
		}
	}
	return s, nil
}

// realHost plugs ports' TAPs and their floor classes.
var (
	_ portHost  = (*realHost)(nil)
	_ floorHost = (*realHost)(nil)
)

// CheckPort implements portHost.
func (h *realHost) CheckPort(n *netxml.Network, p *netxml.Port) error {
	s, err := tapSpec(h.served(n), p, true)
	if err != nil {
		return err
	}
	if err := network.CheckTAP(s); err != nil {
		if errors.Is(err, network.ErrNotOurs) {
			return netxml.Errorf(netxml.KindOperationFailed, "Network interface '%s' already exists and was not created by vnet for this port; to plug it, use <vnet:tap dev='%s' adopt='yes'/>", s.Name, s.Name)
		}
		return netxml.Errorf(netxml.KindOperationFailed, "%s", err.Error())
	}
	return nil
}

// EnsurePort implements portHost: the TAP, then the port's <bandwidth> on
// it (after the plug, so a TAP re-created or re-plugged gets its shaping
// back in the same converge).
func (h *realHost) EnsurePort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	s, err := tapSpec(h.served(n), p, !p.TAP.Adopt)
	if err != nil {
		return nil, err
	}
	fixed, err := network.EnsureTAP(s)
	if err != nil || p.Bandwidth == nil || !network.LinkExists(s.Name) {
		// An adopted device that is gone has nothing to shape.
		return fixed, err
	}
	ex := &network.Apply{}
	err = network.ConvergeBandwidth(s.Name, p.Bandwidth, network.PortBandwidthOptions(), ex)
	return append(fixed, network.Problems(ex.Ran)...), err
}

// VerifyPort implements portHost.
func (h *realHost) VerifyPort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	s, err := tapSpec(h.served(n), p, false)
	if err != nil {
		return nil, err
	}
	var drift *network.DriftError
	var out []string
	if err := network.VerifyTAP(s); errors.As(err, &drift) {
		out = append(out, err.Error())
	} else if err != nil {
		return nil, err
	}
	if p.Bandwidth == nil || !network.LinkExists(s.Name) {
		return out, nil
	}
	d, err := network.VerifyBandwidth(s.Name, p.Bandwidth, network.PortBandwidthOptions())
	return append(out, d...), err
}

// DeletePort implements portHost. An adopted device stays, without the
// port's tc shaping.
func (h *realHost) DeletePort(p *netxml.Port) error {
	switch {
	case p.TAP == nil:
		return nil
	case p.TAP.Adopt && p.Bandwidth != nil:
		return network.RemoveBandwidth(p.TAP.Dev)
	case p.TAP.Adopt:
		return nil
	}
	return network.DeleteTAP(p.TAP.Dev, p.UUID)
}

// CheckBandwidth implements portHost.
func (h *realHost) CheckBandwidth(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) error {
	if p.TAP != nil {
		if err := network.CheckBandwidthSupport(p.TAP.Dev, p.Bandwidth, network.PortBandwidthOptions()); err != nil {
			return err
		}
	}
	if f, ok := portFloor(p); ok {
		return network.CheckBandwidthSupport(n.BridgeName(), n.Bandwidth, network.NetworkBandwidthOptions(append(slices.Clone(plugged), f)))
	}
	return nil
}

// PlugFloor implements portHost.
func (h *realHost) PlugFloor(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) ([]string, error) {
	f, ok := portFloor(p)
	if !ok {
		return nil, nil
	}
	return network.PlugFloor(n.BridgeName(), n.Bandwidth, network.NetworkBandwidthOptions(plugged), f)
}

// UnplugFloor implements portHost.
func (h *realHost) UnplugFloor(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) ([]string, error) {
	f, ok := portFloor(p)
	if !ok {
		return nil, nil
	}
	return network.UnplugFloor(n.BridgeName(), n.Bandwidth, network.NetworkBandwidthOptions(plugged), f.ClassID)
}

// usePortFloors implements floorHost.
func (h *realHost) usePortFloors(floors func(n *netxml.Network) []network.FloorPort) {
	h.portFloors = floors
}

// OpenPort implements portHost.
func (h *realHost) OpenPort(n *netxml.Network, p *netxml.Port, vnetHdr bool) (*os.File, error) {
	s, err := tapSpec(n, p, true)
	if err != nil {
		return nil, err
	}
	f, err := network.OpenTAP(s, vnetHdr)
	if err != nil {
		return nil, netxml.Errorf(netxml.KindOperationFailed, "%s", err.Error())
	}
	return f, nil
}

// FreeTAPName implements portHost.
func (h *realHost) FreeTAPName(taken func(string) bool) (string, error) {
	return network.FreeTAPName(taken)
}
