package daemon

import (
	"net"
	"slices"

	"vnet/network"
	netxml "vnet/xml"
)

// A port's <bandwidth> as libvirt applies it: the port's own rates shape
// and police its TAP (what libvirt's QEMU driver does on the guest's TAP;
// only when vnet has the TAP), and an inbound floor gets a class of its own
// on the network's bridge (libvirt's network driver, networkPlugBandwidth).
// The floor's class id is stored in the port (<bandwidth classID='N'>, as
// libvirt shows it), and the network's converge builds the floor classes
// of all its ports from the stored ports, so a re-created bridge gets them
// back.

// portFloor is the port's floor class on its network's bridge, if it has
// one: an inbound floor and the class id admitBandwidth gave it.
func portFloor(p *netxml.Port) (network.FloorPort, bool) {
	bw := p.Bandwidth
	if bw == nil || bw.Inbound == nil || bw.Inbound.Floor == nil || *bw.Inbound.Floor == 0 || bw.ClassID == 0 {
		return network.FloorPort{}, false
	}
	mac, err := net.ParseMAC(p.MAC.Address)
	if err != nil {
		return network.FloorPort{}, false
	}
	f := network.FloorPort{ClassID: uint32(bw.ClassID), MAC: mac, Floor: uint64(*bw.Inbound.Floor)}
	if bw.Inbound.Average != nil {
		f.Average = uint64(*bw.Inbound.Average)
	}
	return f, true
}

// portFloors are the floor classes the ports of the active network n have
// on its bridge. A floor needs the network's inbound QoS: a port admitted
// under an earlier definition that had it keeps its class id but gets no
// class (rather than failing the network's start).
func (m *Manager) portFloors(n *netxml.Network) []network.FloorPort {
	if !network.HasInboundQoS(n.Bandwidth) {
		return nil
	}
	var out []network.FloorPort
	for _, p := range m.ports.of(n.Name) {
		if f, ok := portFloor(p); ok {
			out = append(out, f)
		}
	}
	return out
}

// floorHost is a Host whose network converge builds the floor classes of
// the network's ports (the real host's bridge): the manager, which owns the
// ports, hands it portFloors.
type floorHost interface {
	usePortFloors(func(n *netxml.Network) []network.FloorPort)
}

// bindPortFloors gives the host the floors of the ports (NewManagerWith).
func (m *Manager) bindPortFloors() {
	if fh, ok := m.host.(floorHost); ok {
		fh.usePortFloors(m.portFloors)
	}
}

// admitBandwidth checks a new port's <bandwidth> against tc's ranges and
// libvirt's floor admission (networkCheckBandwidth: a forward mode with a
// vnet bridge, inbound QoS on the network, the sum of the floors within
// it) and completes it: a port with an inbound floor gets the network's
// lowest free class id (libvirt's classIdMap), any other none (the id shows
// the class the network gave the port; one in the request means nothing).
// It changes nothing on the host.
func (m *Manager) admitBandwidth(n *netxml.Network, p *netxml.Port) error {
	bw := p.Bandwidth
	if bw == nil {
		return nil
	}
	bw.ClassID = 0
	owner := p.MAC.Address
	if p.TAP != nil {
		owner = p.TAP.Dev
	}
	if err := network.CheckBandwidth(owner, bw); err != nil {
		return err
	}
	if bw.Inbound == nil || bw.Inbound.Floor == nil || *bw.Inbound.Floor == 0 {
		return nil
	}
	var sum uint64
	var used []uint32
	for _, q := range m.ports.of(n.Name) {
		if f, ok := portFloor(q); ok {
			sum += f.Floor
			used = append(used, f.ClassID)
		}
	}
	if err := network.CheckFloor(n.Name, n.BridgeName(), n.ForwardMode(), n.Bandwidth, p.MAC.Address, uint64(*bw.Inbound.Floor), sum); err != nil {
		return err
	}
	id, err := network.NextClassID(used)
	if err != nil {
		return err
	}
	bw.ClassID = uint(id)
	return nil
}

// plugFloor adds the new port's floor class to the bridge of the active
// network n (nothing for a port without one).
func (m *Manager) plugFloor(ph portHost, n *netxml.Network, p *netxml.Port) error {
	if _, ok := portFloor(p); !ok || ph == nil {
		return nil
	}
	_, err := ph.PlugFloor(n, p, m.portFloors(n))
	return err
}

// unplugFloor removes the port's floor class from the bridge of the active
// network n. It reports whether there was one to remove.
func (m *Manager) unplugFloor(ph portHost, n *netxml.Network, p *netxml.Port) (bool, error) {
	f, ok := portFloor(p)
	if !ok || ph == nil {
		return false, nil
	}
	plugged := m.portFloors(n)
	if !slices.ContainsFunc(plugged, func(g network.FloorPort) bool { return g.ClassID == f.ClassID }) {
		return false, nil
	}
	if _, err := ph.UnplugFloor(n, p, plugged); err != nil {
		return false, err
	}
	return true, nil
}

// replugFloor puts back the floor class of a port whose deletion failed
// after unplugFloor removed it. o.live is set.
func (m *Manager) replugFloor(ph portHost, o *netObj, p *netxml.Port) {
	f, _ := portFloor(p)
	others := slices.DeleteFunc(m.portFloors(o.live), func(g network.FloorPort) bool { return g.ClassID == f.ClassID })
	if _, err := ph.PlugFloor(o.live, p, others); err != nil {
		m.log.Warn("rollback: plug floor", "network", o.name, "port", p.UUID, "err", err)
	}
}
