package daemon

import (
	"errors"
	"fmt"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// The third octets tried for the default network's 192.168.N.0/24 at its
// first definition: libvirt's 122 first, then 123, 124 … 254.
const (
	defaultFirstSubnet = 122
	defaultLastSubnet  = 254
)

// defineDefault defines the embedded 'default' network where it does not
// collide with what the host already has, typically libvirt's own default
// network on virbr0 and 192.168.122.0/24. The subnet is the first
// 192.168.N.0/24 (N = 122 … 254) that no other definition uses
// (netxml.CheckSubnetConflict) and no address or route of another host
// interface overlaps (Host.Check: the rule net-start applies); the bridge is
// the lowest virbrN that is free (FillDefaults' rule, as for any network
// without a bridge name). On a host without either, that is the embedded
// network unchanged: virbr0 and 192.168.122.0/24. It only reads the host.
//
// Only the first definition is placed this way: an existing definition is
// never rewritten, and a later conflict is reported by net-start.
func (m *Manager) defineDefault() (api.Network, error) {
	third := m.freeDefaultSubnet()
	n, err := m.Define(netxml.DefaultNetworkAt(third))
	if err != nil {
		return n, err
	}
	if n.Bridge != "virbr0" || third != defaultFirstSubnet {
		m.log.Warn("virbr0 or 192.168.122.0/24 is already in use on this host (libvirt's default network?): the default network takes the next free bridge and subnet",
			"bridge", n.Bridge, "subnet", fmt.Sprintf("192.168.%d.0/24", third))
	}
	return n, nil
}

// freeDefaultSubnet returns the third octet of the first 192.168.N.0/24
// that is free for the default network, or 122 when none is (or the host
// cannot be read): net-start then reports what holds it.
func (m *Manager) freeDefaultSubnet() int {
	m.mu.RLock()
	all, _ := m.otherDefsLocked("")
	m.mu.RUnlock()
	for third := defaultFirstSubnet; third <= defaultLastSubnet; third++ {
		n, err := netxml.Parse([]byte(netxml.DefaultNetworkAt(third)))
		if err != nil {
			m.log.Error("the embedded default network does not parse", "err", err)
			return defaultFirstSubnet
		}
		if netxml.CheckSubnetConflict(n, all) != nil {
			continue
		}
		err = m.host.Check(n)
		var inUse *netxml.Error
		switch {
		case err == nil:
			return third
		case errors.As(err, &inUse):
			continue
		default:
			m.log.Warn("cannot look for a free subnet for the default network; it keeps 192.168.122.0/24", "err", err)
			return defaultFirstSubnet
		}
	}
	m.log.Warn("192.168.122.0/24 to 192.168.254.0/24 are all in use; the default network keeps 192.168.122.0/24")
	return defaultFirstSubnet
}
