package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"vnet/dnsmasq"
	"vnet/firewall"
	"vnet/network"
	netxml "vnet/xml"
)

// Host is what the manager needs from the machine: everything that brings a
// network's desired state into being or removes it. The real implementation
// drives netlink, the firewall and dnsmasq; unit tests use a fake.
type Host interface {
	// Check fails when the network cannot start on this host (a subnet already
	// routed or addressed elsewhere, …). It changes nothing.
	Check(n *netxml.Network) error
	// Ensure brings the network's bridge, firewall rules, sysctls and dnsmasq
	// to their desired state. It is idempotent: on a network that is already
	// up it changes nothing (daemon restart, repair). When it fails and undo is
	// true, it removes what this call created, leaving the host as it was.
	Ensure(n *netxml.Network, undo bool) error
	// Remove tears down exactly what Ensure creates for the network.
	Remove(n *netxml.Network) error
	// Forget drops per-network state that outlives a run (leases) on undefine.
	Forget(name string) error
	// LinkExists reports whether a network interface of that name exists.
	LinkExists(name string) bool
	// Detach stops supervising the host parts but leaves them running
	// (daemon shutdown leaves networks up).
	Detach()
}

// realHost is the Host of a real machine (or of the network namespace the
// daemon runs in).
type realHost struct {
	fw  firewall.Backend
	dns *dnsmasq.Manager
	log *slog.Logger
}

func (h *realHost) Check(n *netxml.Network) error {
	if !n.OwnsBridge() {
		return nil
	}
	return network.CheckHostConflicts(n)
}

func (h *realHost) Ensure(n *netxml.Network, undo bool) (err error) {
	if !n.OwnsBridge() {
		// forward mode bridge/macvtap/hostdev: issue "Fidelity" implements them.
		return netxml.Errorf(netxml.KindUnsupported, "forward mode '%s' is not supported yet", n.ForwardMode())
	}
	plan, err := firewall.PlanFor(n)
	if err != nil {
		return err
	}
	bridge := n.BridgeName()
	var createdBridge, appliedFW bool
	t := newStepTimer()
	defer func() { h.log.Debug("ensure network", "network", n.Name, "steps", t.String(), "err", err) }()
	defer func() {
		if err == nil || !undo {
			return
		}
		// Undo in reverse order exactly what this start did.
		if appliedFW {
			if rerr := h.fw.Remove(plan); rerr != nil {
				h.log.Warn("rollback: remove firewall rules", "network", n.Name, "err", rerr)
			}
		}
		if createdBridge {
			if rerr := network.DeleteBridge(bridge); rerr != nil {
				h.log.Warn("rollback: delete bridge", "network", n.Name, "bridge", bridge, "err", rerr)
			}
		}
	}()
	createdBridge, err = network.EnsureBridge(n)
	if err != nil {
		return err
	}
	t.step("bridge")
	changed, err := network.EnsureForwarding(n)
	if err != nil {
		return err
	}
	t.step("sysctl")
	for _, c := range changed {
		h.log.Info("changed host sysctl", "network", n.Name, "sysctl", c)
	}
	if err = h.fw.Apply(plan); err != nil {
		return fmt.Errorf("network '%s': apply firewall rules: %w", n.Name, err)
	}
	appliedFW = true
	t.step("firewall")
	if dnsmasq.Needed(n) {
		if err = h.dns.Start(n); err != nil {
			return err
		}
		t.step("dnsmasq")
	}
	return nil
}

func (h *realHost) Remove(n *netxml.Network) error {
	var errs []error
	t := newStepTimer()
	defer func() { h.log.Debug("remove network", "network", n.Name, "steps", t.String()) }()
	if err := h.dns.Stop(n.Name); err != nil {
		errs = append(errs, err)
	}
	t.step("dnsmasq")
	if n.OwnsBridge() {
		if plan, err := firewall.PlanFor(n); err != nil {
			errs = append(errs, err)
		} else if err := h.fw.Remove(plan); err != nil {
			errs = append(errs, err)
		}
		t.step("firewall")
		if err := network.DeleteBridge(n.BridgeName()); err != nil {
			errs = append(errs, err)
		}
		t.step("bridge")
	}
	return errors.Join(errs...)
}

func (h *realHost) Forget(name string) error    { return h.dns.Forget(name) }
func (h *realHost) LinkExists(name string) bool { return network.LinkExists(name) }
func (h *realHost) Detach()                     { h.dns.Detach() }

// stepTimer records how long each step of an operation took, for debug logs
// and for finding where a slow start spends its time.
type stepTimer struct {
	last  time.Time
	steps []string
}

func newStepTimer() *stepTimer { return &stepTimer{last: time.Now()} }

func (t *stepTimer) step(name string) {
	now := time.Now()
	t.steps = append(t.steps, fmt.Sprintf("%s=%.2fms", name, float64(now.Sub(t.last).Microseconds())/1000))
	t.last = now
}

func (t *stepTimer) String() string { return strings.Join(t.steps, " ") }
