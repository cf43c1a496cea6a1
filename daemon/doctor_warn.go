package daemon

import (
	"context"
	"time"

	"vnet/doctor"
	"vnet/firewall"
	"vnet/internal/ifindex"
	"vnet/network"
)

// Live warnings: when a watcher sees a change that can break networks from
// outside (a new nftables table or chain, a route or address, a forwarding
// sysctl flipped), the cheap checks of net-doctor run (no probe) and each
// new problem is logged and published as a Warning event naming the
// culprit, once per cause: a cause that goes away and comes back is
// warned about again.

// warnDebounce gathers a burst of events (a ruleset load, a VPN adding
// routes) into one run of the checks.
const warnDebounce = 100 * time.Millisecond

type warner struct {
	m    *Manager
	dh   doctorHost
	wake chan struct{}

	// warned: causes warned about that are still there. Only run's
	// goroutine touches it.
	warned map[string]bool
}

// startWarnings starts live warnings and their watchers as background
// goroutines (a host without net-doctor has none).
func (m *Manager) startWarnings() {
	dh, ok := m.host.(doctorHost)
	if !ok {
		return
	}
	w := &warner{m: m, dh: dh, wake: make(chan struct{}, 1), warned: map[string]bool{}}
	m.goBackground(w.run)
	m.goBackground(func(ctx context.Context) {
		if err := doctor.WatchRoutes(ctx, m.log, w.routeHint); err != nil {
			m.log.Warn("no route events: no live warnings about routes", "err", err)
		}
	})
	m.goBackground(func(ctx context.Context) {
		if err := network.WatchForwarding(ctx, m.log, w.hint); err != nil {
			m.log.Warn("no netconf events: no live warnings about forwarding", "err", err)
		}
	})
	m.goBackground(func(ctx context.Context) {
		err := firewall.Watch(ctx, firewall.Options{Logger: m.log}, func(c firewall.Change) {
			if _, ours := c.Vnet(); !ours {
				w.hint()
			}
		})
		if err != nil {
			m.log.Warn("no nftables events: no live warnings about foreign firewalls", "err", err)
		}
	})
}

// routeHint wakes the checks for a route or address added that may come
// from outside. Why the filter: every net-start and net-destroy adds or
// removes its bridge's address and routes, and a run of the checks covers
// every network; without it, starting or destroying N networks ran the
// checks of all of them about N times. What is added on a network's own
// bridge is vnet's doing (or drift that repair restores), and a removal
// cannot start a problem the checks look for (a foreign route, address or
// firewall taking a network's traffic).
func (w *warner) routeHint(link int, added bool) {
	if !added {
		return
	}
	if link != 0 {
		if name, err := ifindex.Name(link); err == nil && w.m.bridgeInUse(name) {
			return
		}
	}
	w.hint()
}

func (w *warner) hint() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *warner) run(ctx context.Context) {
	w.check(ctx) // what is wrong already at start
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(warnDebounce):
		}
		w.check(ctx)
	}
}

// check runs the cheap checks and warns about each new cause.
func (w *warner) check(ctx context.Context) {
	nets, own, err := w.m.doctorNetworks("", w.dh)
	if err != nil || len(nets) == 0 {
		return
	}
	uuids := map[string]string{}
	for _, n := range w.m.List() {
		uuids[n.Name] = n.UUID
	}
	now := map[string]bool{}
	for _, p := range doctor.Problems(doctor.Run(ctx, w.dh.doctorHost(), nets, doctor.Options{OwnPids: own, SkipResources: true})) {
		key := p.ID + "\x00" + p.Network + "\x00" + p.Detail
		now[key] = true
		if w.warned[key] {
			continue
		}
		w.m.log.Warn("net-doctor: "+p.Detail, "network", p.Network, "check", p.ID, "fix", p.Fix)
		w.m.events.publish(Event{Name: p.Network, UUID: uuids[p.Network], Type: EventWarning, Time: time.Now(), Detail: p.ID + ": " + p.Detail})
	}
	w.warned = now
}
