package daemon

import (
	"context"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"vnet/firewall"

	netxml "vnet/xml"
)

// Drift repair: when someone else changes what we own (a flushed ruleset, a
// deleted bridge or address, a killed dnsmasq), the network is restored. Kernel
// events (netlink, the nftables monitor) give hints within milliseconds; a
// slow periodic check catches anything without an event. Each hint is
// debounced (a `nft flush ruleset` produces a burst of events) and repairs are
// rate-limited per network, so a tool fighting us cannot make us spin.

const (
	repairDebounce = 30 * time.Millisecond
	repairBurst    = 5               // repairs allowed back to back per network
	repairRefill   = 2 * time.Second // one more repair allowed per interval
)

type repairer struct {
	m    *Manager
	wake chan struct{}
	// now and retry are time.Now and repairRefill; tests use a fake clock
	// and a short retry.
	now   func() time.Time
	retry time.Duration

	mu      sync.Mutex
	pending map[string]bool // network names; allNetworks = every active one
	limits  map[string]*rate.Limiter
	limited map[string]bool // a rate-limit warning was logged
}

const allNetworks = "\x00all"

func newRepairer(m *Manager) *repairer {
	return &repairer{
		m: m, wake: make(chan struct{}, 1), now: time.Now, retry: repairRefill,
		pending: map[string]bool{}, limits: map[string]*rate.Limiter{}, limited: map[string]bool{},
	}
}

// hint asks for a check of one network, or of all with allNetworks.
func (r *repairer) hint(name string) {
	r.mu.Lock()
	r.pending[name] = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// linkChanged maps a netlink hint (a link name) to the network owning it.
func (r *repairer) linkChanged(link string) {
	if link == "" {
		r.hint(allNetworks)
		return
	}
	if name := r.m.networkByBridge(link); name != "" {
		r.hint(name)
	}
	if name := r.m.networkByPortDev(link); name != "" {
		r.hint(name) // a port's TAP changed (e.g. left the bridge)
	}
}

// tableChanged maps an nftables hint to networks. A change in vnet's
// shared tables concerns the network whose chain changed, or every network
// when it is in the tables' layout (or the table itself); an overlay's DHCP
// guard is the bridge table vnet-overlay-DEVICE. A change in a foreign
// table matters only to the iptables backend, whose rules live in
// iptables-nft's tables.
func (r *repairer) tableChanged(c firewall.Change, foreignMatters bool) {
	if br, ok := c.Vnet(); ok {
		if br == "" {
			r.hint(allNetworks)
			return
		}
		// An overlay's DHCP guard is vnet-overlay-DEVICE.
		br = strings.TrimPrefix(br, "overlay-")
		if name := r.m.networkByBridge(br); name != "" {
			r.hint(name)
		}
		return
	}
	if c.Table == "" || foreignMatters {
		r.hint(allNetworks)
	}
}

// run repairs what the hints name until ctx is done; every interval it checks
// all active networks.
func (r *repairer) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.hint(allNetworks)
		case <-r.wake:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(repairDebounce):
		}
		r.mu.Lock()
		pending := r.pending
		r.pending = map[string]bool{}
		r.mu.Unlock()
		names := map[string]bool{}
		if pending[allNetworks] {
			for _, n := range r.m.List() {
				if n.Active {
					names[n.Name] = true
				}
			}
		}
		for n := range pending {
			if n != allNetworks {
				names[n] = true
			}
		}
		var cpu0 time.Duration
		t0 := time.Now()
		if pending[allNetworks] {
			cpu0 = processCPU()
		}
		// A check of every network reads the host's links, addresses
		// and host-wide sysctls once for all of them.
		var pass *hostPass
		if pending[allNetworks] {
			pass = newHostPass()
		}
		for name := range names {
			r.repair(name, pass)
		}
		if pending[allNetworks] {
			// The CPU of the whole process: at idle, what a pass costs.
			r.m.log.Debug("checked every network", "networks", len(names),
				"took", time.Since(t0).Round(time.Microsecond), "cpu", (processCPU() - cpu0).Round(time.Microsecond))
		}
	}
}

// processCPU is the CPU time (user + system) the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// limiter returns the network's repair limiter.
func (r *repairer) limiter(name string) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.limits[name]
	if l == nil {
		l = rate.NewLimiter(rate.Every(repairRefill), repairBurst)
		r.limits[name] = l
	}
	return l
}

// repair checks the network and fixes what drifted, in one pass: the
// converge reads each part once and changes only what differs, so a healthy
// network costs one read and a drifted one is not read twice. Only a pass
// that changed something takes a token; once the tokens are gone, the
// network is only verified (the recording converge) until one is back.
//
// pass, when not nil, is shared by a check of every network.
func (r *repairer) repair(name string, pass *hostPass) {
	o, err := r.m.lookup(name, "name")
	if err != nil {
		return
	}
	if !o.mu.TryLock() {
		// An operation on the network is running; it converges the
		// state itself. Look again shortly.
		time.AfterFunc(100*time.Millisecond, func() { r.hint(name) })
		return
	}
	defer o.mu.Unlock()
	if o.removed || o.live == nil {
		return
	}
	live := o.live
	lim := r.limiter(name)
	if lim.TokensAt(r.now()) < 1 {
		drift, err := r.verify(live, pass)
		drift = append(drift, r.m.verifyPorts(live)...)
		if err == nil && len(drift) == 0 {
			r.setLimited(name, false)
			return
		}
		if r.setLimited(name, true) {
			r.m.log.Warn("network keeps drifting; repairs are rate-limited (is another tool fighting over it?)", "network", name, "drift", strings.Join(drift, "; "))
		}
		time.AfterFunc(r.retry, func() { r.hint(name) })
		return
	}
	repaired, err := r.converge(live, pass)
	if err == nil {
		repaired = append(repaired, r.m.convergePorts(live)...)
	}
	if err != nil || len(repaired) > 0 {
		lim.AllowN(r.now(), 1)
	}
	if len(repaired) > 0 {
		r.m.log.Warn("repaired network drift", "network", name, "repaired", strings.Join(repaired, "; "))
		r.m.emit(o, EventRepaired)
	}
	if err != nil {
		r.m.log.Error("repairing network failed", "network", name, "err", netxml.Message(err))
		time.AfterFunc(r.retry, func() { r.hint(name) })
		return
	}
	if len(repaired) == 0 {
		r.setLimited(name, false)
	}
}

// passHost is a Host whose converges can share what one check of every
// network reads of the host (hostPass) instead of reading it per network.
type passHost interface {
	convergePass(n *netxml.Network, pass *hostPass) ([]string, error)
	verifyPass(n *netxml.Network, pass *hostPass) ([]string, error)
}

// converge is Host.Converge, with the pass where the host takes it.
func (r *repairer) converge(n *netxml.Network, pass *hostPass) ([]string, error) {
	if ph, ok := r.m.host.(passHost); ok && pass != nil {
		return ph.convergePass(n, pass)
	}
	return r.m.host.Converge(n)
}

// verify is Host.Verify, with the pass where the host takes it.
func (r *repairer) verify(n *netxml.Network, pass *hostPass) ([]string, error) {
	if ph, ok := r.m.host.(passHost); ok && pass != nil {
		return ph.verifyPass(n, pass)
	}
	return r.m.host.Verify(n)
}

// setLimited records whether the network is rate-limited and reports
// whether it just became so (the warning is logged once per episode).
func (r *repairer) setLimited(name string, on bool) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first = on && !r.limited[name]
	if on {
		r.limited[name] = true
	} else {
		delete(r.limited, name)
	}
	return first
}

// bridgeInUse reports whether br is the bridge or VXLAN device of an active
// network or of one being started.
func (m *Manager) bridgeInUse(br string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, ok := m.liveDevs[br]; ok {
		return true
	}
	for _, o := range m.byName {
		if o.starting != nil && slices.Contains(liveDevices(o.starting), br) {
			return true
		}
	}
	return false
}

// networkByBridge returns the active network whose bridge (or overlay
// VXLAN device) is br.
func (m *Manager) networkByBridge(br string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.liveDevs[br]
}
