// Package netxml is vnet's model of libvirt network XML: the types of
// libvirt.org/go/libvirtxml, with our own parser (libvirt's checks,
// normalisation and error messages; libvirtxml's encoding/xml unmarshalling
// has none of them), libvirt's defaults, validation with libvirt's messages,
// and our own formatter that writes libvirt's exact byte format.
//
// It knows nothing about the host, processes or the daemon.
package netxml

import (
	"libvirt.org/go/libvirtxml"
)

// Network is one libvirt network definition. It embeds libvirtxml.Network (so
// n.Name, n.IPs, n.Forward … are promoted) and adds what libvirtxml lacks.
type Network struct {
	libvirtxml.Network

	// Title and Description are <title> and <description> (libvirt ≥ 9.7),
	// which libvirtxml does not model.
	Title       string
	Description string

	// Connections is the live number of guest interfaces attached to the
	// network, written as connections='N' on <network> unless Format gets
	// Inactive. Never read from XML (libvirt treats it as read-only).
	Connections uint
	// InterfaceConnections is the live number of guests using each forward
	// <interface dev> (keyed by dev), written like Connections.
	InterfaceConnections map[string]uint

	// User is vnet's forward mode 'user' (<vnet:forward mode='user'>,
	// usermode.go); nil for libvirt's modes.
	User *UserForward

	// Overlay is vnet's <vnet:overlay>: the network spans hosts over VXLAN
	// with a BGP EVPN control plane. nil for a network on one host.
	Overlay *Overlay
}

// ForwardMode returns the effective forward mode: "" for an isolated network
// (no <forward>), "nat" for a <forward> without mode, else the mode attribute.
func (n *Network) ForwardMode() string {
	if n.User != nil {
		return "user"
	}
	if n.Forward == nil {
		return ""
	}
	if n.Forward.Mode == "" {
		return "nat"
	}
	return n.Forward.Mode
}

// OwnsBridge reports whether vnet creates and manages the bridge of this network
// (forward modes nat, route, open, or isolated), as opposed to using a host
// bridge or macvtap/hostdev pools.
func (n *Network) OwnsBridge() bool {
	switch n.ForwardMode() {
	case "", "nat", "route", "open":
		return true
	}
	return false
}

// BridgeName returns the <bridge name>, or "" when none is set.
func (n *Network) BridgeName() string {
	if n.Bridge == nil {
		return ""
	}
	return n.Bridge.Name
}
