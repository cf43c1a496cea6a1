package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"vnet/daemon/api"
	"vnet/network"
	netxml "vnet/xml"
)

// netObj is one network known to the daemon. Its mutex serialises operations on
// this network, so unrelated networks proceed in parallel.
type netObj struct {
	mu sync.Mutex

	// The fields below are read under Manager.mu (RLock) for listing and
	// written with both netObj.mu and Manager.mu held.
	name string
	uuid string
	def  *netxml.Network // persistent definition; nil for a transient network
	live *netxml.Network // running definition; nil when inactive
	// starting reserves the subnets and bridge of a start in progress, so
	// that a concurrent start sees them; the network is not active yet.
	starting  *netxml.Network
	autostart bool
	removed   bool // dropped from the registry while a caller waited for mu
}

func (o *netObj) persistent() bool { return o.def != nil }

// liveDevices are the links of a running definition that link events name:
// its bridge and its overlay's VXLAN device.
func liveDevices(n *netxml.Network) []string {
	devs := []string{n.BridgeName()}
	if n.Overlay != nil {
		devs = append(devs, network.VXLANName(n.Overlay.VNI))
	}
	return devs
}

// setLiveLocked sets the running definition of o (nil: inactive) and keeps
// liveDevs current. m.mu is held for writing.
func (m *Manager) setLiveLocked(o *netObj, n *netxml.Network) {
	if o.live != nil {
		for _, d := range liveDevices(o.live) {
			if m.liveDevs[d] == o.name {
				delete(m.liveDevs, d)
			}
		}
	}
	o.live = n
	if n != nil {
		for _, d := range liveDevices(n) {
			if d != "" {
				m.liveDevs[d] = o.name
			}
		}
	}
}
func (o *netObj) active() bool { return o.live != nil }

// current returns the definition the network is known by: the live one while
// active, else the persistent one.
func (o *netObj) current() *netxml.Network {
	if o.live != nil {
		return o.live
	}
	return o.def
}

// Manager is the registry of networks and the operations on them.
type Manager struct {
	mu     sync.RWMutex
	byName map[string]*netObj
	// liveDevs maps the bridge (and overlay VXLAN device) of every active
	// network to its name (setLiveLocked keeps it): link events are mapped
	// to networks at each start and destroy, a scan of all per event.
	liveDevs map[string]string
	store    Store
	host     Host
	log      *slog.Logger
	events   broker
	ports    portRegistry // network ports, see ports.go
	// acl is vnet-bridge-helper's access list (guestacl.go); nil denies
	// every call.
	acl *guestACL
	// testDriver gives libvirt's test driver semantics (see NewTestDriver).
	testDriver bool

	// ready is closed once the daemon finished starting (see HoldReady).
	readyMu sync.Mutex
	ready   chan struct{}
	// bg tracks the background goroutines (drift repair and its watchers),
	// stopped and joined by Shutdown before the host is detached.
	bgMu     sync.Mutex
	bgCancel context.CancelFunc
	bgCtx    context.Context
	bg       sync.WaitGroup
}

// NewManager returns a manager over the given directories and host.
func NewManager(configDir, runDir string, host Host, log *slog.Logger) (*Manager, error) {
	st, err := newStore(configDir, runDir)
	if err != nil {
		return nil, err
	}
	return NewManagerWith(st, host, log), nil
}

// NewManagerWith returns a manager over any Store and Host (the test driver
// uses memory and a host that touches nothing).
func NewManagerWith(st Store, host Host, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ready := make(chan struct{})
	close(ready)
	m := &Manager{byName: map[string]*netObj{}, liveDevs: map[string]string{}, store: st, host: host, log: log, ready: ready}
	m.bindPortFloors()
	return m
}

// HoldReady makes Ready block until the returned release is called. The
// daemon holds it while it adopts and autostarts networks, so that no front
// door (local API, D-Bus) answers from a half-started state.
func (m *Manager) HoldReady() (release func()) {
	ch := make(chan struct{})
	m.readyMu.Lock()
	m.ready = ch
	m.readyMu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Ready returns a channel that is closed once the manager may serve
// requests. Every front door waits for it before answering.
func (m *Manager) Ready() <-chan struct{} {
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	return m.ready
}

// goBackground runs f in a background goroutine that Shutdown cancels and
// waits for.
func (m *Manager) goBackground(f func(ctx context.Context)) {
	m.bgMu.Lock()
	if m.bgCtx == nil {
		m.bgCtx, m.bgCancel = context.WithCancel(context.Background())
	}
	ctx := m.bgCtx
	m.bg.Add(1)
	m.bgMu.Unlock()
	go func() {
		defer m.bg.Done()
		f(ctx)
	}()
}

// stopBackground cancels every background goroutine and waits until all
// have returned.
func (m *Manager) stopBackground() {
	m.bgMu.Lock()
	if m.bgCancel != nil {
		m.bgCancel()
	}
	m.bgMu.Unlock()
	m.bg.Wait()
}

func noNetworkName(ref string) error {
	return netxml.Errorf(netxml.KindNoNetwork, "no network with matching name '%s'", ref)
}

func noNetworkUUID(ref string) error {
	return netxml.Errorf(netxml.KindNoNetwork, "no network with matching uuid '%s'", ref)
}

// lookup finds a network by name or UUID. by is "name", "uuid" or "any" (a
// 36-character ref is tried as a UUID first, then as a name, as virsh does).
func (m *Manager) lookup(ref, by string) (*netObj, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	byUUID := func() *netObj {
		u, err := netxml.NormalizeUUID(ref)
		if err != nil {
			return nil
		}
		for _, o := range m.byName {
			if o.uuid == u {
				return o
			}
		}
		return nil
	}
	switch by {
	case "name":
		if o := m.byName[ref]; o != nil {
			return o, nil
		}
		return nil, noNetworkName(ref)
	case "uuid":
		if o := byUUID(); o != nil {
			return o, nil
		}
		return nil, noNetworkUUID(ref)
	default:
		if len(ref) == 36 {
			if o := byUUID(); o != nil {
				return o, nil
			}
		}
		if o := m.byName[ref]; o != nil {
			return o, nil
		}
		return nil, noNetworkName(ref)
	}
}

// lockRef looks a network up and locks it, retrying when it was removed while
// we waited for its lock.
func (m *Manager) lockRef(ref string) (*netObj, error) {
	for {
		o, err := m.lookup(ref, "any")
		if err != nil {
			return nil, err
		}
		o.mu.Lock()
		if !o.removed {
			return o, nil
		}
		o.mu.Unlock()
	}
}

func (m *Manager) info(o *netObj) api.Network {
	n := api.Network{
		Name:       o.name,
		UUID:       o.uuid,
		Active:     o.active(),
		Persistent: o.persistent(),
		Autostart:  o.autostart,
	}
	if d := o.current(); d != nil {
		n.Bridge = d.BridgeName()
	}
	n.Ports = m.ports.count(o.name)
	return n
}

// List returns every network, sorted by name.
func (m *Manager) List() []api.Network {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]api.Network, 0, len(m.byName))
	keys := make(map[string]string, len(m.byName))
	for _, o := range m.byName {
		out = append(out, m.info(o))
		keys[o.name] = strings.ToLower(o.name)
	}
	// Lower-cased once per network, not at every comparison.
	sort.Slice(out, func(i, j int) bool { return keys[out[i].Name] < keys[out[j].Name] })
	return out
}

// Get returns one network.
func (m *Manager) Get(ref, by string) (api.Network, error) {
	o, err := m.lookup(ref, by)
	if err != nil {
		return api.Network{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info(o), nil
}

// XML returns the live XML of an active network, or the persistent one when
// inactive is set or the network is not running.
func (m *Manager) XML(ref string, inactive bool) (string, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return "", err
	}
	defer o.mu.Unlock()
	d := o.current()
	flags := netxml.Flags(0)
	if inactive {
		flags = netxml.Inactive
		if o.def != nil {
			d = o.def
		}
	}
	return netxml.Format(d, flags)
}

// otherDefs returns every definition and live definition of networks other
// than uuid, and the live definitions of the active ones.
func (m *Manager) otherDefsLocked(uuid string) (all, active []*netxml.Network) {
	for _, o := range m.byName {
		if o.uuid == uuid {
			continue
		}
		if o.def != nil {
			all = append(all, o.def)
		}
		if o.live != nil {
			all = append(all, o.live)
			active = append(active, o.live)
		} else if o.starting != nil {
			all = append(all, o.starting)
			active = append(active, o.starting)
		}
	}
	return all, active
}

// prepare parses, completes and validates XML for define or create. It holds
// m.mu so that name/uuid/bridge checks see a consistent registry; the caller
// must hold it for writing.
func (m *Manager) prepareLocked(xml string) (*netxml.Network, *netObj, error) {
	n, err := netxml.Parse([]byte(xml))
	if err != nil {
		return nil, nil, err
	}
	existing := m.byName[n.Name]
	if n.UUID == "" && existing != nil {
		// libvirt's parser invents a uuid, which then clashes with the
		// existing network's: redefining needs the uuid (net-edit keeps it).
		return nil, nil, netxml.Errorf(netxml.KindOperationFailed, "network '%s' already exists with uuid %s", existing.name, existing.uuid)
	}
	// A UUID given in the XML must not belong to a network of another name.
	if n.UUID != "" {
		for _, o := range m.byName {
			if o.uuid == n.UUID && o.name != n.Name {
				if o.active() {
					return nil, nil, netxml.Errorf(netxml.KindOperationFailed, "network '%s' is already active as '%s'", o.uuid, o.name)
				}
				return nil, nil, netxml.Errorf(netxml.KindOperationFailed, "network '%s' is already defined with uuid %s", o.name, o.uuid)
			}
		}
	}
	if existing != nil && n.UUID != existing.uuid {
		return nil, nil, netxml.Errorf(netxml.KindOperationFailed, "network '%s' already exists with uuid %s", existing.name, existing.uuid)
	}
	// Redefining without <bridge name> or <mac> keeps the ones generated before.
	if existing != nil && n.OwnsBridge() {
		if prev := existing.current(); prev != nil {
			if n.BridgeName() == "" && prev.BridgeName() != "" {
				if n.Bridge == nil {
					n.Bridge = prev.Bridge
				} else {
					n.Bridge.Name = prev.BridgeName()
				}
			}
			if n.MAC == nil && prev.MAC != nil {
				n.MAC = prev.MAC
			}
		}
	}
	all, _ := m.otherDefsLocked(n.UUID)
	taken := func(br string) bool {
		for _, d := range all {
			if d.BridgeName() == br {
				return true
			}
		}
		return m.host.LinkExists(br)
	}
	if err := netxml.FillDefaults(n, taken); err != nil {
		return nil, nil, err
	}
	if err := netxml.Validate(n); err != nil {
		return nil, nil, err
	}
	// libvirt's test driver checks only names and uuids (virNetworkObjAssignDef);
	// bridge and subnet conflicts are checks of the real network driver.
	if !m.testDriver {
		if err := netxml.CheckBridgeConflict(n, all); err != nil {
			return nil, nil, err
		}
		if err := netxml.CheckOverlayConflict(n, all); err != nil {
			return nil, nil, err
		}
	}
	return n, existing, nil
}

// Define stores a persistent definition (net-define). On an active network the
// new definition takes effect at its next start.
func (m *Manager) Define(xml string) (api.Network, error) {
	m.mu.Lock()
	n, existing, err := m.prepareLocked(xml)
	if err != nil {
		m.mu.Unlock()
		return api.Network{}, err
	}
	o := existing
	if o == nil {
		o = &netObj{name: n.Name, uuid: n.UUID}
		m.byName[n.Name] = o
		o.mu.Lock()
	} else if !o.mu.TryLock() {
		// Rare: an operation is running on this network. Wait for it without
		// holding the registry, then re-validate from the start.
		m.mu.Unlock()
		o.mu.Lock()
		o.mu.Unlock()
		return m.Define(xml)
	}
	m.mu.Unlock()
	defer o.mu.Unlock()

	text, err := netxml.Format(n, netxml.Inactive)
	if err == nil {
		err = m.store.SaveConfig(n.Name, text)
	}
	if err != nil {
		if existing == nil {
			m.mu.Lock()
			m.dropLocked(o)
			m.mu.Unlock()
		}
		return api.Network{}, err
	}
	m.mu.Lock()
	o.def = n
	info := m.info(o)
	m.mu.Unlock()
	m.emit(o, EventDefined)
	return info, nil
}

// Create defines a transient network and starts it (net-create).
func (m *Manager) Create(xml string) (api.Network, error) {
	m.mu.Lock()
	n, existing, err := m.prepareLocked(xml)
	if err != nil {
		m.mu.Unlock()
		return api.Network{}, err
	}
	if existing != nil {
		m.mu.Unlock()
		if existing.active() {
			return api.Network{}, netxml.Errorf(netxml.KindOperationFailed, "network '%s' is already active", n.Name)
		}
		// libvirt starts a defined, inactive network from the new XML as a
		// transient override; we keep it simple and refuse with its message.
		return api.Network{}, netxml.Errorf(netxml.KindOperationFailed, "network '%s' already exists with uuid %s", existing.name, existing.uuid)
	}
	o := &netObj{name: n.Name, uuid: n.UUID}
	o.mu.Lock()
	m.byName[n.Name] = o
	m.mu.Unlock()
	defer o.mu.Unlock()
	if err := m.startLocked(o, n); err != nil {
		m.mu.Lock()
		m.dropLocked(o)
		m.mu.Unlock()
		return api.Network{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info(o), nil
}

// Start starts a defined network (net-start).
func (m *Manager) Start(ref string) (api.Network, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Network{}, err
	}
	defer o.mu.Unlock()
	if o.active() {
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "network is already active")
	}
	if err := m.startLocked(o, o.def); err != nil {
		return m.infoR(o), err
	}
	return m.infoR(o), nil
}

// dropLocked removes a network from the registry; callers waiting for its
// lock see removed and look it up again. m.mu is held for writing.
func (m *Manager) dropLocked(o *netObj) {
	o.removed = true
	delete(m.byName, o.name)
}

func (m *Manager) infoR(o *netObj) api.Network {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info(o)
}

// startLocked brings def up on the host. o.mu is held.
func (m *Manager) startLocked(o *netObj, def *netxml.Network) (err error) {
	t := newStepTimer()
	defer func() { m.log.Debug("start network", "network", o.name, "steps", t.String(), "err", err) }()
	live := netxml.Live(def)
	if err := netxml.Validate(live); err != nil {
		return err
	}
	// Reserve: while the subnet check runs and until the start finishes, other
	// starts must see this network as active. The registry lock makes the
	// check and the reservation one step.
	m.mu.Lock()
	_, active := m.otherDefsLocked(o.uuid)
	if !m.testDriver {
		if err := netxml.CheckSubnetConflict(live, active); err != nil {
			m.mu.Unlock()
			return err
		}
	}
	o.starting = live
	m.mu.Unlock()
	unreserve := func() {
		m.mu.Lock()
		o.starting = nil
		m.mu.Unlock()
	}
	t.step("validate")
	if err := m.host.Check(live); err != nil {
		unreserve()
		return err
	}
	t.step("check")
	text, err := netxml.Format(live, 0)
	if err != nil {
		unreserve()
		return err
	}
	// The status file is written first: if we crash mid-start, the next
	// daemon start finds it and completes the start (Converge).
	if err := m.store.SaveStatus(o.name, text); err != nil {
		unreserve()
		return err
	}
	t.step("status")
	if err := m.host.Start(live); err != nil {
		_ = m.store.DeleteStatus(o.name)
		unreserve()
		return err
	}
	t.step("host")
	m.mu.Lock()
	o.starting = nil
	m.setLiveLocked(o, live)
	m.mu.Unlock()
	m.convergePorts(live) // ports outlive a destroy: plug their TAPs back
	m.log.Info("network started", "network", o.name, "bridge", live.BridgeName())
	m.emit(o, EventStarted)
	return nil
}

// Destroy stops an active network (net-destroy). A transient network is gone
// afterwards.
func (m *Manager) Destroy(ref string) (api.Network, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Network{}, err
	}
	defer o.mu.Unlock()
	if !o.active() {
		if m.testDriver {
			return m.infoR(o), nil
		}
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "network '%s' is not active", o.name)
	}
	t := newStepTimer()
	defer func() { m.log.Debug("destroy network", "network", o.name, "steps", t.String()) }()
	err = m.host.Remove(o.live)
	t.step("host")
	if serr := m.store.DeleteStatus(o.name); serr != nil {
		err = errors.Join(err, serr)
	}
	t.step("status")
	m.mu.Lock()
	m.setLiveLocked(o, nil)
	if !o.persistent() {
		m.dropLocked(o)
	}
	info := m.info(o)
	m.mu.Unlock()
	m.portsStopped(o) // a transient network takes its ports along
	t.step("ports")
	m.emit(o, EventStopped)
	t.step("events")
	if err != nil {
		m.log.Warn("network stopped with errors", "network", o.name, "err", err)
		return info, fmt.Errorf("network '%s' stopped, but cleaning up failed: %w", o.name, err)
	}
	m.log.Info("network stopped", "network", o.name)
	return info, nil
}

// Undefine removes a persistent definition (net-undefine). An active network
// keeps running as a transient one, as in libvirt.
func (m *Manager) Undefine(ref string) (api.Network, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Network{}, err
	}
	defer o.mu.Unlock()
	if !o.persistent() {
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "network '%s' is not persistent", o.name)
	}
	if m.testDriver && o.active() {
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "Network '%s' is still running", o.name)
	}
	if err := m.checkNoPorts(o); err != nil {
		return m.infoR(o), err
	}
	if err := m.store.DeleteConfig(o.name); err != nil {
		return m.infoR(o), err
	}
	if !o.active() {
		if err := m.host.Forget(o.name); err != nil {
			m.log.Warn("forget leases", "network", o.name, "err", err)
		}
	}
	m.mu.Lock()
	o.def = nil
	o.autostart = false
	if !o.active() {
		m.dropLocked(o)
	}
	info := m.info(o)
	m.mu.Unlock()
	m.emit(o, EventUndefined)
	return info, nil
}

// SetAutostart marks or unmarks a persistent network for autostart.
func (m *Manager) SetAutostart(ref string, on bool) (api.Network, error) {
	o, err := m.lockRef(ref)
	if err != nil {
		return api.Network{}, err
	}
	defer o.mu.Unlock()
	if !o.persistent() {
		return m.infoR(o), netxml.Errorf(netxml.KindInvalidOperation, "cannot set autostart for transient network")
	}
	if err := m.store.SetAutostart(o.name, on); err != nil {
		return m.infoR(o), err
	}
	m.mu.Lock()
	o.autostart = on
	info := m.info(o)
	m.mu.Unlock()
	return info, nil
}

func (m *Manager) emit(o *netObj, t EventType) {
	m.events.publish(Event{Name: o.name, UUID: o.uuid, Type: t, Time: time.Now()})
}

// Load reads the stored definitions and the status of active networks and
// adopts the active ones: whatever already runs on the host is kept as it is,
// and only what is missing is re-created.
func (m *Manager) Load(ctx context.Context) error {
	names, err := m.register()
	if err != nil {
		return err
	}
	m.adoptAll(ctx, names)
	return nil
}

// LoadInBackground is Load with the adoption left to a background task
// (Shutdown waits for it): the active networks are registered, listed and
// locked at once, and each is adopted under its lock, so a request for a
// network waits until it is adopted while the others are served. A daemon
// with a thousand networks is ready in a fraction of a second.
func (m *Manager) LoadInBackground() error {
	names, err := m.register()
	if err != nil {
		return err
	}
	m.goBackground(func(ctx context.Context) {
		t0 := time.Now()
		m.adoptAll(ctx, names)
		m.log.Info("adopted every active network", "networks", len(names), "took", time.Since(t0).Round(time.Millisecond))
	})
	return nil
}

// register reads the definitions and the status files and registers the
// active networks as active; it returns their names for adoptAll.
func (m *Manager) register() ([]string, error) {
	configs, err := m.store.Configs()
	if err != nil {
		return nil, fmt.Errorf("read definitions: %w", err)
	}
	for _, name := range sortedKeys(configs) {
		n, err := netxml.Parse(configs[name])
		if err != nil {
			m.log.Error("ignoring invalid network definition", "network", name, "err", err)
			continue
		}
		if n.Name != name {
			m.log.Error("ignoring network definition whose name does not match its file", "file", name, "name", n.Name)
			continue
		}
		m.byName[name] = &netObj{name: name, uuid: n.UUID, def: n, autostart: m.store.Autostart(name)}
	}
	m.loadPorts() // before adoption, which plugs them
	statuses, err := m.store.Statuses()
	if err != nil {
		return nil, fmt.Errorf("read network status: %w", err)
	}
	var names []string
	for _, name := range sortedKeys(statuses) {
		live, err := netxml.Parse(statuses[name])
		if err != nil || live.Name != name {
			m.log.Error("dropping unreadable network status", "network", name, "err", err)
			_ = m.store.DeleteStatus(name)
			continue
		}
		o := m.byName[name]
		if o == nil {
			o = &netObj{name: name, uuid: live.UUID}
			m.byName[name] = o
		}
		m.setLiveLocked(o, live)
		names = append(names, name)
	}
	return names, nil
}

// adoptWorkers is how many networks are adopted at once: adoption waits on
// the kernel (netlink round trips), so a few run side by side.
const adoptWorkers = 4

// adoptAll adopts the registered active networks, a few at a time.
func (m *Manager) adoptAll(ctx context.Context, names []string) {
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(adoptWorkers, len(names)) {
		wg.Go(func() {
			for name := range work {
				m.adopt(name)
			}
		})
	}
	for _, name := range names {
		select {
		case work <- name:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}

// adopt converges one registered active network under its lock: a healthy
// network is left untouched, what is missing is re-created, and a network
// that cannot be restored is removed entirely.
func (m *Manager) adopt(name string) {
	m.mu.RLock()
	o := m.byName[name]
	m.mu.RUnlock()
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	live := o.live
	if o.removed || live == nil {
		return // destroyed meanwhile
	}
	repaired, err := m.host.Converge(live)
	if err != nil {
		// Half a network helps nobody: remove what there is, so the
		// network is either fully up or fully down (e.g. after a crash
		// in the middle of a start that was going to fail).
		m.log.Error("active network could not be restored; stopping it", "network", name, "err", netxml.Message(err))
		if rerr := m.host.Remove(live); rerr != nil {
			m.log.Error("removing the rest of the network", "network", name, "err", rerr)
		}
		_ = m.store.DeleteStatus(name)
		m.mu.Lock()
		m.setLiveLocked(o, nil)
		if o.def == nil {
			m.dropLocked(o)
		}
		m.mu.Unlock()
		return
	}
	repaired = append(repaired, m.convergePorts(live)...)
	if len(repaired) > 0 {
		m.log.Warn("adopted active network and restored what was missing", "network", name, "repaired", strings.Join(repaired, "; "))
	} else {
		m.log.Info("adopted active network", "network", name, "bridge", live.BridgeName())
	}
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Autostart starts every persistent network marked for autostart that is not
// active. Failures are logged; they do not stop the others.
func (m *Manager) Autostart() {
	m.mu.RLock()
	var names []string
	for name, o := range m.byName {
		if o.autostart && !o.active() && o.persistent() {
			names = append(names, name)
		}
	}
	m.mu.RUnlock()
	sort.Strings(names)
	for _, name := range names {
		if _, err := m.Start(name); err != nil {
			m.log.Error("autostart failed", "network", name, "err", netxml.Message(err))
		}
	}
}

// Shutdown stops drift repair and its watchers, waits until they have
// returned, then detaches from the host parts without stopping networks: after
// it, nothing of the manager touches the host.
func (m *Manager) Shutdown() {
	m.stopBackground()
	m.host.Detach()
}
