package network

import (
	"fmt"

	netxml "vnet/xml"
)

// CheckHostLinks verifies that the host devices a network uses but does not
// own exist: the existing bridge of a forward mode='bridge' network, or the
// devices of a macvtap pool (bridge/private/vepa/passthrough with
// <interface dev> or <pf dev>). Nothing is changed: guests plug into these
// devices when they start.
func CheckHostLinks(n *netxml.Network) error {
	h, err := newHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	if n.ForwardMode() == "bridge" && n.BridgeName() != "" {
		link, err := h.linkByName(n.BridgeName())
		if err != nil {
			return fmt.Errorf("bridge %q: %w", n.BridgeName(), err)
		}
		if link == nil {
			return netxml.Errorf(netxml.KindInternal, "bridge '%s' of network '%s' does not exist on the host", n.BridgeName(), n.Name)
		}
		if link.Type() != "bridge" && link.Type() != "openvswitch" {
			return netxml.Errorf(netxml.KindInternal, "interface '%s' of network '%s' is a %s, not a bridge", n.BridgeName(), n.Name, link.Type())
		}
		return nil
	}
	var devs []string
	if n.Forward != nil {
		for _, i := range n.Forward.Interfaces {
			devs = append(devs, i.Dev)
		}
		for _, pf := range n.Forward.PFs {
			devs = append(devs, pf.Dev)
		}
	}
	if len(devs) == 0 {
		return netxml.Errorf(netxml.KindInternal, "network '%s' in forward mode '%s' names no bridge and no interface", n.Name, n.ForwardMode())
	}
	for _, d := range devs {
		if link, err := h.linkByName(d); err != nil {
			return fmt.Errorf("interface %q: %w", d, err)
		} else if link == nil {
			return netxml.Errorf(netxml.KindInternal, "%s", fmt.Sprintf("interface '%s' of network '%s' does not exist on the host", d, n.Name))
		}
	}
	return nil
}
