package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirtxml"

	"vnet/daemon/api"
	"vnet/internal/atomicfile"
	"vnet/network"
	netxml "vnet/xml"
)

// Network ports (libvirt's virNetworkPort*): a guest's connection to a
// network. A port may carry vnet's <vnet:tap>, a TAP device vnetd creates
// (or adopts) and keeps plugged into the network's bridge: re-plugged when
// the bridge is re-created (drift repair, net-destroy + net-start) or when
// the TAP left it. Ports outlive net-destroy (the TAP stays, unplugged) and
// daemon restarts (stored under <run-dir>/ports/NETWORK/UUID.xml, adopted
// without touching the TAP). A transient network takes its ports with it.

// portHost is what ports need from the machine. The real host implements it
// (ports_host.go); a Host without it (the test driver) keeps ports as
// bookkeeping only.
type portHost interface {
	// CheckPort fails, changing nothing, when the port's device cannot be
	// used (a foreign device of that name, an adopted device missing, an
	// unknown owner).
	CheckPort(n *netxml.Network, p *netxml.Port) error
	// EnsurePort converges the port's device: created when ours and
	// missing, plugged into the bridge of n when n is active (nil: leave
	// it unplugged), up. It returns what it fixed.
	EnsurePort(n *netxml.Network, p *netxml.Port) ([]string, error)
	// VerifyPort describes how the device differs, changing nothing.
	VerifyPort(n *netxml.Network, p *netxml.Port) ([]string, error)
	// DeletePort deletes the device vnet created; adopted ones stay.
	DeletePort(p *netxml.Port) error
	// OpenPort creates the transient port's TAP, not persistent, plugged
	// into the bridge of n, and returns its only fd (the bridge helper's
	// ports). IFF_VNET_HDR when vnetHdr.
	OpenPort(n *netxml.Network, p *netxml.Port, vnetHdr bool) (*os.File, error)
	// FreeTAPName picks the first vnetN not on the host and not taken.
	FreeTAPName(taken func(string) bool) (string, error)
	// CheckBandwidth fails, changing nothing, when this host cannot apply
	// the port's <bandwidth>: on its TAP (when it has one) and, for an
	// inbound floor, on the bridge of n next to the floors plugged.
	CheckBandwidth(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) error
	// PlugFloor adds the port's floor class to the bridge of n, next to
	// the floors plugged (libvirt's networkPlugBandwidth). It returns the
	// commands it ran.
	PlugFloor(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) ([]string, error)
	// UnplugFloor removes the port's floor class from the bridge of n;
	// plugged holds the floors there so far, the port's among them.
	UnplugFloor(n *netxml.Network, p *netxml.Port, plugged []network.FloorPort) ([]string, error)
}

// portRegistry holds the ports of every network, by network name then port
// uuid. Changes happen under the network's lock; mu guards the maps for
// readers without it (net-info's count, drift repair's device lookup).
type portRegistry struct {
	mu    sync.Mutex
	byNet map[string]map[string]*netxml.Port
}

func (r *portRegistry) put(network string, p *netxml.Port) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byNet == nil {
		r.byNet = map[string]map[string]*netxml.Port{}
	}
	if r.byNet[network] == nil {
		r.byNet[network] = map[string]*netxml.Port{}
	}
	r.byNet[network][p.UUID] = p
}

func (r *portRegistry) remove(network, uuid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byNet[network], uuid)
	if len(r.byNet[network]) == 0 {
		delete(r.byNet, network)
	}
}

func (r *portRegistry) get(network, uuid string) *netxml.Port {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byNet[network][uuid]
}

// of returns the network's ports sorted by uuid (libvirt sorts by the binary
// uuid, which is the order of the lower-case text).
func (r *portRegistry) of(network string) []*netxml.Port {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*netxml.Port, 0, len(r.byNet[network]))
	for _, p := range r.byNet[network] {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out
}

func (r *portRegistry) count(network string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byNet[network])
}

// byDev returns the network and port using the device dev.
func (r *portRegistry) byDev(dev string) (string, *netxml.Port) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for net, ports := range r.byNet {
		for _, p := range ports {
			if p.TAP != nil && p.TAP.Dev == dev {
				return net, p
			}
		}
	}
	return "", nil
}

// portsDir is <run-dir>/ports, or "" when the store is in memory.
func (m *Manager) portsDir() string {
	if st, ok := m.store.(*store); ok {
		return filepath.Join(filepath.Dir(st.runDir), "ports")
	}
	return ""
}

func (m *Manager) portPath(network, uuid string) string {
	return filepath.Join(m.portsDir(), network, uuid+".xml")
}

// savePort writes the port's status file (atomic, fsynced).
func (m *Manager) savePort(network string, p *netxml.Port) error {
	if m.portsDir() == "" {
		return nil
	}
	if err := safeName(network); err != nil {
		return err
	}
	text, err := netxml.FormatPort(p)
	if err != nil {
		return err
	}
	dir := filepath.Join(m.portsDir(), network)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	return atomicfile.Write(m.portPath(network, p.UUID), []byte(text), 0o600, atomicfile.Durable)
}

func (m *Manager) deletePortFile(network, uuid string) error {
	if m.portsDir() == "" {
		return nil
	}
	if err := removeIfExists(m.portPath(network, uuid)); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(m.portsDir(), network)) // only when empty
	return nil
}

// loadPorts reads the stored ports at daemon start. It touches no device:
// the networks' adoption converges them afterwards.
func (m *Manager) loadPorts() {
	dir := m.portsDir()
	if dir == "" {
		return
	}
	nets, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			m.log.Error("reading stored network ports", "err", err)
		}
		return
	}
	for _, nd := range nets {
		if !nd.IsDir() {
			continue
		}
		sub := filepath.Join(dir, nd.Name())
		_ = atomicfile.RemoveStale(sub)
		names, err := listXML(sub)
		if err != nil {
			m.log.Error("reading stored network ports", "network", nd.Name(), "err", err)
			continue
		}
		for _, name := range names {
			data, err := os.ReadFile(filepath.Join(sub, name+".xml"))
			var p *netxml.Port
			if err == nil {
				p, err = netxml.ParsePort(data)
			}
			if err != nil || p.UUID != name {
				m.log.Error("ignoring unreadable network port", "network", nd.Name(), "port", name, "err", err)
				continue
			}
			m.ports.put(nd.Name(), p)
		}
	}
}

func (m *Manager) portHost() portHost {
	ph, _ := m.host.(portHost)
	return ph
}

// convergePorts plugs every port's device into the bridge of the active
// network n (start, adoption, drift repair) and returns what it fixed.
// Failures are logged and reported as not fixed; they never fail the network.
func (m *Manager) convergePorts(n *netxml.Network) []string {
	ph := m.portHost()
	if ph == nil {
		return nil
	}
	var fixed []string
	for _, p := range m.ports.of(n.Name) {
		if !hasDevice(p) {
			continue
		}
		f, err := ph.EnsurePort(n, p)
		if errors.Is(err, network.ErrTAPGone) {
			m.portEnded(n, p)
			continue
		}
		if err != nil {
			m.log.Error("plugging network port failed", "network", n.Name, "port", p.UUID, "err", netxml.Message(err))
		}
		fixed = append(fixed, f...)
	}
	return fixed
}

// verifyPorts lists how the devices of the active network's ports drifted.
func (m *Manager) verifyPorts(n *netxml.Network) []string {
	ph := m.portHost()
	if ph == nil {
		return nil
	}
	var drift []string
	for _, p := range m.ports.of(n.Name) {
		if !hasDevice(p) {
			continue
		}
		d, err := ph.VerifyPort(n, p)
		if err != nil {
			d = append(d, err.Error())
		}
		drift = append(drift, d...)
	}
	return drift
}

// portsStopped runs after net-destroy: a transient network is gone, and so
// are its ports; a persistent one keeps them (their TAPs stay, unplugged,
// until net-start plugs them back). o.mu is held.
func (m *Manager) portsStopped(o *netObj) {
	if o.persistent() {
		// The ports stay, their devices out of service until net-start
		// (a TAP unplugged; a user-mode port's passt stopped, so its host
		// port forwards end with the network).
		if ph := m.portHost(); ph != nil {
			for _, p := range m.ports.of(o.name) {
				if !hasDevice(p) {
					continue
				}
				if _, err := ph.EnsurePort(nil, p); err != nil {
					m.log.Error("taking a port of a destroyed network out of service", "network", o.name, "port", p.UUID, "err", netxml.Message(err))
				}
			}
		}
		return
	}
	for _, p := range m.ports.of(o.name) {
		if err := m.dropPort(o, p); err != nil {
			m.log.Error("deleting network port of a destroyed transient network", "network", o.name, "port", p.UUID, "err", err)
		}
	}
}

// checkNoPorts refuses net-undefine of a network that still has ports.
func (m *Manager) checkNoPorts(o *netObj) error {
	if n := m.ports.count(o.name); n > 0 {
		return netxml.Errorf(netxml.KindInvalidOperation, "network '%s' still has %d network port(s); delete them first (net-port-list, net-port-delete)", o.name, n)
	}
	return nil
}

// networkByPortDev maps a device name (a netlink hint) to the network of the
// port using it.
func (m *Manager) networkByPortDev(dev string) string {
	net, _ := m.ports.byDev(dev)
	return net
}

// hasDevice reports whether the host side of the port is vnet's: a TAP
// (<vnet:tap>) or a passt socket (<vnet:passt>, user-mode networks).
func hasDevice(p *netxml.Port) bool { return p.TAP != nil || p.Passt != nil }

func plugNetwork(br, macTableManager string) *libvirtxml.NetworkPortPlug {
	return &libvirtxml.NetworkPortPlug{Network: &libvirtxml.NetworkPortPlugNetwork{Bridge: br, MacTableManager: macTableManager}}
}

func plugBridge(br string) *libvirtxml.NetworkPortPlug {
	return &libvirtxml.NetworkPortPlug{Bridge: &libvirtxml.NetworkPortPlugBridge{Bridge: br}}
}

func portInfo(network string, p *netxml.Port) api.Port {
	out := api.Port{UUID: p.UUID, Network: network, MAC: p.MAC.Address, OwnerName: p.Owner.Name, OwnerUUID: p.Owner.UUID}
	if p.TAP != nil {
		out.TAP = p.TAP.Dev
	}
	return out
}

func noPort(uuid string) error {
	return netxml.Errorf(netxml.KindNoNetworkPort, "Network port with UUID %s does not exist", uuid)
}

// portUUID parses a port reference as libvirt's
// virNetworkPortLookupByUUIDString does.
func portUUID(ref string) (string, error) {
	u, err := netxml.NormalizeUUID(ref)
	if err != nil || len(strings.TrimSpace(ref)) < 32 {
		return "", badPortRef{netxml.Errorf(netxml.KindInvalidArg, "uuidstr in virNetworkPortLookupByUUIDString must be a valid UUID")}
	}
	return u, nil
}

// badPortRef is a port reference that is no UUID: a failed lookup, like an
// unknown port, for the API's error code.
type badPortRef struct{ err error }

func (e badPortRef) Error() string { return e.err.Error() }
func (e badPortRef) Unwrap() error { return e.err }

// CreatePort creates a port on an active network from <networkport> XML
// (net-port-create): the plug is filled as libvirt's network driver does,
// and the port's TAP, if it has <vnet:tap>, is created (or adopted) and
// plugged. On failure nothing is left behind.
func (m *Manager) CreatePort(ref, xml string) (api.Port, error) {
	p, err := netxml.ParsePort([]byte(xml))
	if err != nil {
		return api.Port{}, err
	}
	if p.Passt != nil {
		return api.Port{}, netxml.Errorf(netxml.KindXML, "<vnet:passt> is filled in by vnetd for ports of user-mode networks; leave it out")
	}
	if p.TAP != nil && p.TAP.Transient && !p.TAP.Adopt {
		return api.Port{}, netxml.Errorf(netxml.KindXML, "<vnet:tap persist='no'> needs adopt='yes' here: a TAP that vnetd made without persistence would vanish at once (vnet-bridge-helper hands such TAPs to the guest)")
	}
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Port{}, err
	}
	defer o.mu.Unlock()
	if !o.active() {
		return api.Port{}, netxml.Errorf(netxml.KindInvalidOperation, "network '%s' is not active", o.name)
	}
	n := o.live
	if err := m.preparePort(n, p); err != nil {
		return api.Port{}, err
	}
	ph := m.portHost()
	if hasDevice(p) && ph != nil {
		if err := ph.CheckPort(n, p); err != nil {
			return api.Port{}, err
		}
	}
	if p.Bandwidth != nil && ph != nil {
		if err := ph.CheckBandwidth(n, p, m.portFloors(n)); err != nil {
			return api.Port{}, err
		}
	}
	// The status file goes first: after a crash the next start finds the
	// port and converges its TAP (created or not yet) and floor class.
	if err := m.savePort(o.name, p); err != nil {
		return api.Port{}, err
	}
	undo := func() {
		if hasDevice(p) && ph != nil {
			if derr := ph.DeletePort(p); derr != nil {
				m.log.Warn("rollback: delete tap", "network", o.name, "port", p.UUID, "err", derr)
			}
		}
		_ = m.deletePortFile(o.name, p.UUID)
	}
	if hasDevice(p) && ph != nil {
		if _, err := ph.EnsurePort(n, p); err != nil {
			undo()
			return api.Port{}, err
		}
	}
	if err := m.plugFloor(ph, n, p); err != nil {
		// The bridge's classes go back to the other ports' floors.
		if f, ok := portFloor(p); ok {
			if _, uerr := ph.UnplugFloor(n, p, append(m.portFloors(n), f)); uerr != nil {
				m.log.Warn("rollback: unplug floor", "network", o.name, "port", p.UUID, "err", uerr)
			}
		}
		undo()
		return api.Port{}, err
	}
	m.ports.put(o.name, p)
	info := portInfo(o.name, p)
	m.log.Info("network port created", "network", o.name, "port", p.UUID, "mac", info.MAC, "owner", info.OwnerName, "tap", info.TAP)
	m.emitPort(o, EventPortCreated, p.UUID)
	return info, nil
}

// preparePort checks a new port against the network and the other ports and
// completes it: libvirt's plug, the TAP's name, the floor's class id. It
// changes nothing.
func (m *Manager) preparePort(n *netxml.Network, p *netxml.Port) error {
	if p.Plug != nil {
		return netxml.Errorf(netxml.KindInternal, "Port reclaim not requested but plug type is not none")
	}
	if strings.HasPrefix(p.MAC.Address, "fe:") {
		return netxml.Errorf(netxml.KindXML, "Unable to use MAC address starting with reserved value 0xFE - '%s' - ", p.MAC.Address)
	}
	if m.ports.get(n.Name, p.UUID) != nil {
		return netxml.Errorf(netxml.KindNetworkPortExists, "Network port with UUID %s already exists", p.UUID)
	}
	for _, q := range m.ports.of(n.Name) {
		if q.MAC.Address == p.MAC.Address {
			return netxml.Errorf(netxml.KindNetworkPortExists, "with MAC %s on network '%s' (port %s)", p.MAC.Address, n.Name, q.UUID)
		}
	}
	br := n.BridgeName()
	switch {
	case n.OwnsBridge():
		if p.VirtualPort != nil {
			return netxml.Errorf(netxml.KindUnsupported, "<virtualport> not supported for network '%s' which uses IP forwarding", n.Name)
		}
		if p.VLAN != nil {
			return netxml.Errorf(netxml.KindUnsupported, "an interface connecting to network '%s' is requesting a vlan tag, but that is not supported for this type of network", n.Name)
		}
		mgr := ""
		if n.Bridge != nil {
			mgr = n.Bridge.MACTableManager
		}
		p.Plug = plugNetwork(br, mgr)
	case n.ForwardMode() == "bridge" && br != "":
		p.Plug = plugBridge(br)
	case n.ForwardMode() == "user":
		return m.prepareUserPort(n, p)
	default:
		return netxml.Errorf(netxml.KindUnsupported, "network ports on network '%s' (forward mode '%s') are not supported by vnet", n.Name, n.ForwardMode())
	}
	if err := m.prepareTAP(p); err != nil {
		return err
	}
	return m.admitBandwidth(n, p)
}

// prepareTAP checks the name of the port's TAP against the other ports and
// picks one when the port has none.
func (m *Manager) prepareTAP(p *netxml.Port) error {
	if p.TAP == nil {
		return nil
	}
	if p.TAP.Dev == "" {
		taken := func(dev string) bool { net, _ := m.ports.byDev(dev); return net != "" }
		ph := m.portHost()
		if ph == nil {
			for i := 0; ; i++ {
				if dev := fmt.Sprintf("vnet%d", i); !taken(dev) {
					p.TAP.Dev = dev
					break
				}
			}
			return nil
		}
		dev, err := ph.FreeTAPName(taken)
		if err != nil {
			return err
		}
		p.TAP.Dev = dev
		return nil
	}
	if net, q := m.ports.byDev(p.TAP.Dev); q != nil {
		return netxml.Errorf(netxml.KindOperationFailed, "device '%s' is already used by network port %s of network '%s'", p.TAP.Dev, q.UUID, net)
	}
	if m.host.LinkExists(p.TAP.Dev) && !p.TAP.Adopt && m.portHost() == nil {
		return netxml.Errorf(netxml.KindOperationFailed, "device '%s' already exists", p.TAP.Dev)
	}
	return nil
}

// DeletePort deletes a port (net-port-delete): its TAP when vnet created
// it, then its status file. Works on an inactive network too.
func (m *Manager) DeletePort(ref, portRef string) (api.Port, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Port{}, err
	}
	defer o.mu.Unlock()
	uuid, err := portUUID(portRef)
	if err != nil {
		return api.Port{}, err
	}
	p := m.ports.get(o.name, uuid)
	if p == nil {
		return api.Port{}, noPort(uuid)
	}
	if err := m.dropPort(o, p); err != nil {
		return api.Port{}, err
	}
	return portInfo(o.name, p), nil
}

// dropPort removes a port's floor class (while the network runs), its
// device (when ours; an adopted one loses the port's tc shaping), file and
// registry entry.
func (m *Manager) dropPort(o *netObj, p *netxml.Port) error {
	ph := m.portHost()
	unplugged := false
	if o.live != nil {
		var err error
		if unplugged, err = m.unplugFloor(ph, o.live, p); err != nil {
			return err
		}
	}
	if ph != nil && hasDevice(p) {
		if err := ph.DeletePort(p); err != nil {
			if unplugged {
				m.replugFloor(ph, o, p)
			}
			return err
		}
	}
	if err := m.deletePortFile(o.name, p.UUID); err != nil {
		return err
	}
	m.ports.remove(o.name, p.UUID)
	m.log.Info("network port deleted", "network", o.name, "port", p.UUID)
	m.emitPort(o, EventPortDeleted, p.UUID)
	return nil
}

func (m *Manager) emitPort(o *netObj, t EventType, port string) {
	m.events.publish(Event{Name: o.name, UUID: o.uuid, Type: t, Port: port, Time: time.Now()})
}

// ListPorts returns the network's ports sorted by uuid (net-port-list).
func (m *Manager) ListPorts(ref string) ([]api.Port, error) {
	o, err := m.lookup(ref, "any")
	if err != nil {
		return nil, err
	}
	out := []api.Port{}
	for _, p := range m.ports.of(o.name) {
		out = append(out, portInfo(o.name, p))
	}
	return out, nil
}

// PortXML returns a port's XML (net-port-dumpxml).
func (m *Manager) PortXML(ref, portRef string) (string, error) {
	o, err := m.lookup(ref, "any")
	if err != nil {
		return "", err
	}
	uuid, err := portUUID(portRef)
	if err != nil {
		return "", err
	}
	p := m.ports.get(o.name, uuid)
	if p == nil {
		return "", noPort(uuid)
	}
	return netxml.FormatPort(p)
}
