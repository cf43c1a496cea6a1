package daemon

import (
	"errors"
	"net"

	"vnet/network"
	netxml "vnet/xml"
)

// tapSpec is the desired state of a port's TAP: plugged into the bridge of n
// when n is not nil.
func tapSpec(n *netxml.Network, p *netxml.Port, withOwner bool) (network.TAPSpec, error) {
	t := p.TAP
	s := network.TAPSpec{Name: t.Dev, Port: p.UUID, Adopt: t.Adopt, MultiQueue: t.Queues > 1}
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

// realHost plugs ports' TAPs.
var _ portHost = (*realHost)(nil)

// CheckPort implements portHost.
func (h *realHost) CheckPort(n *netxml.Network, p *netxml.Port) error {
	s, err := tapSpec(n, p, true)
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

// EnsurePort implements portHost.
func (h *realHost) EnsurePort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	s, err := tapSpec(n, p, !p.TAP.Adopt)
	if err != nil {
		return nil, err
	}
	return network.EnsureTAP(s)
}

// VerifyPort implements portHost.
func (h *realHost) VerifyPort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	s, err := tapSpec(n, p, false)
	if err != nil {
		return nil, err
	}
	var drift *network.DriftError
	if err := network.VerifyTAP(s); errors.As(err, &drift) {
		return []string{err.Error()}, nil
	} else if err != nil {
		return nil, err
	}
	return nil, nil
}

// DeletePort implements portHost.
func (h *realHost) DeletePort(p *netxml.Port) error {
	if p.TAP == nil || p.TAP.Adopt {
		return nil
	}
	return network.DeleteTAP(p.TAP.Dev, p.UUID)
}

// FreeTAPName implements portHost.
func (h *realHost) FreeTAPName(taken func(string) bool) (string, error) {
	return network.FreeTAPName(taken)
}
