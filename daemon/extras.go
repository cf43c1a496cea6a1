package daemon

import (
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"vnet/daemon/api"
	netxml "vnet/xml"
)

// libvirt's virNetworkUpdateFlags.
const (
	updateAffectLive   = 1
	updateAffectConfig = 2
)

// Update applies one net-update edit (libvirt's command and section enums) to
// the live network, the persistent config, or both. live and config both false
// means "current": the live network when active, else the config. A live
// update rewrites dnsmasq's files and signals it (or restarts only dnsmasq when
// its conf changes); the network itself is not restarted.
func (m *Manager) Update(ref string, command, section, parentIndex int, xml string, live, config bool) (api.Network, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Network{}, err
	}
	defer o.mu.Unlock()
	if !live && !config {
		if o.active() {
			live = true
		} else {
			config = true
		}
	}
	if live && !o.active() {
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "network '%s' is not active", o.name)
	}
	if config && !o.persistent() {
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "cannot change persistent config of a transient network")
	}
	// Compute both results before changing anything, so a failure in either
	// leaves both untouched.
	var newDef, newLive *netxml.Network
	edit := func(n *netxml.Network) (*netxml.Network, error) {
		c := n.Clone()
		if err := netxml.Update(c, netxml.UpdateCommand(command), netxml.UpdateSection(section), parentIndex, xml); err != nil {
			return nil, err
		}
		if err := netxml.Validate(c); err != nil {
			return nil, err
		}
		return c, nil
	}
	if config {
		if newDef, err = edit(o.def); err != nil {
			return m.infoR(o), err
		}
	}
	if live {
		if newLive, err = edit(o.live); err != nil {
			return m.infoR(o), err
		}
	}
	if err := m.commitUpdate(o, newDef, newLive); err != nil {
		return m.infoR(o), err
	}
	m.mu.Lock()
	if newDef != nil {
		o.def = newDef
	}
	if newLive != nil {
		m.setLiveLocked(o, newLive)
	}
	info := m.info(o)
	m.mu.Unlock()
	return info, nil
}

// commitUpdate makes a net-update's new definitions (nil: unchanged) take
// effect on disk and on the host, all or nothing: the status and config files
// are written first, then the host is changed; when a step fails, what the
// earlier steps changed is put back, so host, disk and memory keep agreeing
// (a host left at the new definition while memory keeps the old one would be
// silently undone by the next repair). Rolling back rather than committing
// keeps the caller's view simple: an error means nothing changed. o.mu is held.
func (m *Manager) commitUpdate(o *netObj, newDef, newLive *netxml.Network) (err error) {
	type saved struct {
		save     func(name, xml string) error
		old, new string
	}
	var steps []saved
	if newLive != nil {
		oldText, err := netxml.Format(o.live, 0)
		if err != nil {
			return err
		}
		newText, err := netxml.Format(newLive, 0)
		if err != nil {
			return err
		}
		steps = append(steps, saved{m.store.SaveStatus, oldText, newText})
	}
	if newDef != nil {
		oldText, err := netxml.Format(o.def, netxml.Inactive)
		if err != nil {
			return err
		}
		newText, err := netxml.Format(newDef, netxml.Inactive)
		if err != nil {
			return err
		}
		steps = append(steps, saved{m.store.SaveConfig, oldText, newText})
	}
	done := 0
	defer func() {
		if err == nil {
			return
		}
		for _, st := range slices.Backward(steps[:done]) {
			if rerr := st.save(o.name, st.old); rerr != nil {
				m.log.Error("net-update rollback: restoring the stored definition failed", "network", o.name, "err", rerr)
			}
		}
	}()
	for _, st := range steps {
		if err := st.save(o.name, st.new); err != nil {
			return err
		}
		done++
	}
	if newLive != nil && !m.testDriver {
		if _, err := m.host.Converge(newLive); err != nil {
			// Put the host back to the running definition.
			if _, rerr := m.host.Converge(o.live); rerr != nil {
				m.log.Error("net-update rollback: restoring the network on the host failed", "network", o.name, "err", netxml.Message(rerr))
			}
			return err
		}
	}
	return nil
}

// Leases returns the current DHCP leases of an active network, optionally only
// those of one MAC address; expired leases are left out.
func (m *Manager) Leases(ref, mac string) ([]api.Lease, error) {
	if m.testDriver {
		return nil, netxml.Errorf(netxml.KindNotSupported, "virNetworkGetDHCPLeases")
	}
	o, err := m.lockRef(ref)
	if err != nil {
		return nil, err
	}
	defer o.mu.Unlock()
	n := o.current()
	if !o.active() {
		return []api.Lease{}, nil
	}
	raw, err := m.host.Leases(n)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []api.Lease{}
	for _, l := range raw {
		if l.ExpiryTime != 0 && l.ExpiryTime < now.Unix() {
			continue
		}
		if mac != "" && !strings.EqualFold(mac, l.MAC) {
			continue
		}
		l.Prefix = leasePrefix(n, l.IPAddr)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].MAC) < strings.ToLower(out[j].MAC) })
	return out, nil
}

// leasePrefix is the prefix length of the network's subnet holding addr.
func leasePrefix(n *netxml.Network, addr string) int {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return 0
	}
	for _, ip := range n.IPs {
		if p, err := netxml.IPNet(ip); err == nil && p.Masked().Contains(a) {
			return p.Bits()
		}
	}
	if a.Is4() {
		return 24
	}
	return 64
}

// DryRunStart returns what starting the network would do, and fails as the
// start would on validation and conflict checks. Nothing is changed.
func (m *Manager) DryRunStart(ref string) (api.Plan, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Plan{}, err
	}
	defer o.mu.Unlock()
	if o.active() {
		return api.Plan{}, netxml.Errorf(netxml.KindInvalidOperation, "network is already active")
	}
	return m.planFor(o.uuid, netxml.Live(o.def))
}

// DryRunCreate returns what net-create of xml would do. Nothing is changed.
func (m *Manager) DryRunCreate(xml string) (api.Plan, error) {
	m.mu.Lock()
	n, existing, err := m.prepareLocked(xml)
	m.mu.Unlock()
	if err != nil {
		return api.Plan{}, err
	}
	if existing != nil {
		return api.Plan{}, netxml.Errorf(netxml.KindOperationFailed, "network '%s' already exists with uuid %s", existing.name, existing.uuid)
	}
	return m.planFor(n.UUID, netxml.Live(n))
}

func (m *Manager) planFor(uuid string, live *netxml.Network) (api.Plan, error) {
	if err := netxml.Validate(live); err != nil {
		return api.Plan{}, err
	}
	m.mu.RLock()
	_, active := m.otherDefsLocked(uuid)
	err := netxml.CheckSubnetConflict(live, active)
	m.mu.RUnlock()
	if err != nil {
		return api.Plan{}, err
	}
	if err := m.host.Check(live); err != nil {
		return api.Plan{}, err
	}
	text, err := m.host.Plan(live)
	if err != nil {
		return api.Plan{}, err
	}
	return api.Plan{Network: live.Name, Text: text}, nil
}

// IsTestDriver reports whether this manager is the in-memory test driver.
func (m *Manager) IsTestDriver() bool { return m.testDriver }

// testFixtureXML is libvirt's test:///default network.
const testFixtureXML = `<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`

// NewTestDriver returns a manager like libvirt's test:///default driver: all
// state in memory, nothing touched on the host, one active persistent network
// 'default' (autostart off), and the test driver's known differences (destroy
// of an inactive network succeeds, undefine of an active one is refused, no
// DHCP leases).
func NewTestDriver(log *slog.Logger) *Manager {
	m := NewManagerWith(newMemStore(), nullHost{}, log)
	m.testDriver = true
	def, err := netxml.Parse([]byte(testFixtureXML))
	if err != nil {
		panic("test driver fixture: " + err.Error())
	}
	_ = m.store.SaveConfig(def.Name, testFixtureXML)
	m.byName[def.Name] = &netObj{name: def.Name, uuid: def.UUID, def: def, live: def.Clone()}
	return m
}

// nullHost is the test driver's host: it accepts everything and does nothing
// (its methods implement Host).
type nullHost struct{}

func (nullHost) Check(*netxml.Network) error                 { return nil }
func (nullHost) Start(*netxml.Network) error                 { return nil }
func (nullHost) Remove(*netxml.Network) error                { return nil }
func (nullHost) Forget(string) error                         { return nil }
func (nullHost) LinkExists(string) bool                      { return false }
func (nullHost) Detach()                                     {}
func (nullHost) Leases(*netxml.Network) ([]api.Lease, error) { return nil, nil }
func (nullHost) Plan(n *netxml.Network) (string, error) {
	return "# test driver: nothing would change on the host\n", nil
}
func (nullHost) Verify(*netxml.Network) ([]string, error)   { return nil, nil }
func (nullHost) Converge(*netxml.Network) ([]string, error) { return nil, nil }
