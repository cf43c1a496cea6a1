package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"vnet/daemon/api"
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
	// Verify checks every part of an active network and describes what
	// differs from its definition (nothing = healthy). It changes nothing.
	Verify(n *netxml.Network) ([]string, error)
	// Repair checks every part of an active network and re-creates what is
	// missing or differs, leaving the rest untouched. It returns what it fixed.
	Repair(n *netxml.Network) ([]string, error)
	// Remove tears down exactly what Ensure creates for the network.
	Remove(n *netxml.Network) error
	// Forget drops per-network state that outlives a run (leases) on undefine.
	Forget(name string) error
	// LinkExists reports whether a network interface of that name exists.
	LinkExists(name string) bool
	// Detach stops supervising the host parts but leaves them running
	// (daemon shutdown leaves networks up).
	Detach()
	// Leases returns the DHCP leases dnsmasq handed out on the network.
	Leases(n *netxml.Network) ([]api.Lease, error)
	// Plan describes, as commands and files, what Ensure would do on a host
	// without the network. It changes nothing.
	Plan(n *netxml.Network) (string, error)
}

// realHost is the Host of a real machine (or of the network namespace the
// daemon runs in).
type realHost struct {
	fw  firewall.Backend
	dns *dnsmasq.Manager
	log *slog.Logger

	// retiring holds bridges taken out of service whose deletion the
	// kernel is still finishing (see network.RetireBridge).
	mu       sync.Mutex
	retiring map[string]<-chan error
}

// waitRetired blocks until a bridge of that name being deleted is gone, so
// a new start never adopts a dying bridge.
func (h *realHost) waitRetired(name string) {
	h.mu.Lock()
	ch := h.retiring[name]
	h.mu.Unlock()
	if ch == nil {
		return
	}
	if err := <-ch; err != nil {
		h.log.Warn("deleting bridge", "bridge", name, "err", err)
	}
}

// retire takes the bridge out of service now and lets the kernel finish
// deleting it in the background.
func (h *realHost) retire(name string) error {
	h.waitRetired(name)
	done, err := network.RetireBridge(name)
	if err != nil {
		return err
	}
	fwd := make(chan error, 1)
	h.mu.Lock()
	if h.retiring == nil {
		h.retiring = map[string]<-chan error{}
	}
	h.retiring[name] = fwd
	h.mu.Unlock()
	go func() {
		err := <-done
		h.mu.Lock()
		if h.retiring[name] == fwd {
			delete(h.retiring, name)
		}
		h.mu.Unlock()
		fwd <- err
		close(fwd)
	}()
	return nil
}

// waitAllRetired waits for every pending bridge deletion (daemon shutdown).
func (h *realHost) waitAllRetired() {
	h.mu.Lock()
	names := make([]string, 0, len(h.retiring))
	for n := range h.retiring {
		names = append(names, n)
	}
	h.mu.Unlock()
	for _, n := range names {
		h.waitRetired(n)
	}
}

// Check implements Host.
func (h *realHost) Check(n *netxml.Network) error {
	if !n.OwnsBridge() {
		return nil
	}
	return network.CheckHostConflicts(n)
}

// Ensure implements Host.
func (h *realHost) Ensure(n *netxml.Network, undo bool) error {
	_, err := h.ensure(n, undo)
	return err
}

// Repair implements Host.
func (h *realHost) Repair(n *netxml.Network) ([]string, error) { return h.ensure(n, false) }

// Verify implements Host.
func (h *realHost) Verify(n *netxml.Network) ([]string, error) {
	if !n.OwnsBridge() {
		return nil, nil
	}
	var drift []string
	if err := network.VerifyBridge(n); err != nil {
		drift = append(drift, err.Error())
	}
	plan, err := firewall.PlanFor(n)
	if err != nil {
		return drift, err
	}
	if err := h.fw.Verify(plan); err != nil {
		drift = append(drift, err.Error())
	}
	if dnsmasq.Needed(n) && h.dns.Pid(n.Name) == 0 {
		drift = append(drift, fmt.Sprintf("dnsmasq of network '%s' not running", n.Name))
	}
	return drift, nil
}

// ensure brings every part of the network to its desired state. With undo it
// is a start: it applies everything and, on failure, removes what it created.
// Without undo it is an adoption or a repair: it checks each part first and
// changes only what differs, so a healthy network is left exactly as it is
// (no flapped bridge, no replaced rules, no restarted dnsmasq). It returns
// what it found broken and fixed.
func (h *realHost) ensure(n *netxml.Network, undo bool) (repaired []string, err error) {
	if !n.OwnsBridge() {
		return nil, checkForeignModes(n)
	}
	if err := checkUnsupported(n); err != nil {
		return nil, err
	}
	plan, err := firewall.PlanFor(n)
	if err != nil {
		return nil, err
	}
	bridge := n.BridgeName()
	h.waitRetired(bridge)
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
	if !undo {
		if verr := network.VerifyBridge(n); verr != nil {
			repaired = append(repaired, verr.Error())
		}
	}
	createdBridge, err = network.EnsureBridge(n)
	if err != nil {
		return repaired, err
	}
	if createdBridge {
		if err = network.MarkOwned(bridge, n.Name); err != nil {
			return repaired, err
		}
	}
	t.step("bridge")
	changed, err := network.EnsureForwarding(n)
	if err != nil {
		return repaired, err
	}
	t.step("sysctl")
	for _, c := range changed {
		h.log.Info("changed host sysctl", "network", n.Name, "sysctl", c)
	}
	apply := undo || createdBridge
	if !apply {
		// Rules match interfaces by index: a re-created bridge needs them
		// re-applied even if they are all still there.
		if verr := h.fw.Verify(plan); verr != nil {
			repaired = append(repaired, verr.Error())
			apply = true
		}
	}
	if apply {
		if err = h.fw.Apply(plan); err != nil {
			return repaired, fmt.Errorf("network '%s': apply firewall rules: %w", n.Name, err)
		}
		appliedFW = true
	}
	t.step("firewall")
	if dnsmasq.Needed(n) {
		if !undo && h.dns.Pid(n.Name) == 0 {
			repaired = append(repaired, fmt.Sprintf("dnsmasq of network '%s' not running", n.Name))
		}
		if err = h.dns.Start(n); err != nil {
			return repaired, err
		}
		t.step("dnsmasq")
	}
	return repaired, nil
}

// Remove implements Host.
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
		if err := h.retire(n.BridgeName()); err != nil {
			errs = append(errs, err)
		}
		t.step("bridge")
	}
	return errors.Join(errs...)
}

// Forget implements Host.
func (h *realHost) Forget(name string) error { return h.dns.Forget(name) }

// LinkExists implements Host.
func (h *realHost) LinkExists(name string) bool {
	h.mu.Lock()
	_, dying := h.retiring[name]
	h.mu.Unlock()
	return dying || network.LinkExists(name)
}

// Detach implements Host.
func (h *realHost) Detach() {
	h.dns.Detach()
	h.waitAllRetired()
}

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

// Leases implements Host.
func (h *realHost) Leases(n *netxml.Network) ([]api.Lease, error) {
	raw, err := h.dns.Leases(n.Name)
	if err != nil {
		return nil, err
	}
	out := make([]api.Lease, 0, len(raw))
	for _, l := range raw {
		a := api.Lease{MAC: l.MAC, IPAddr: l.IP.String(), Hostname: l.Hostname, ClientID: l.ClientID, IAID: l.IAID, Protocol: "ipv4"}
		if l.IP.Is6() && !l.IP.Is4In6() {
			a.Protocol = "ipv6"
		}
		if !l.Expiry.IsZero() {
			a.ExpiryTime = l.Expiry.Unix()
		}
		out = append(out, a)
	}
	return out, nil
}

// Plan implements Host.
func (h *realHost) Plan(n *netxml.Network) (string, error) {
	if !n.OwnsBridge() {
		if err := checkForeignModes(n); err != nil {
			return "", err
		}
		return fmt.Sprintf("# forward mode '%s': guests use host devices directly; nothing changes on the host at start\n", n.ForwardMode()), nil
	}
	if err := checkUnsupported(n); err != nil {
		return "", err
	}
	var b strings.Builder
	br := n.BridgeName()
	fmt.Fprintf(&b, "# bridge %s\n", br)
	if network.LinkExists(br) {
		fmt.Fprintf(&b, "# %s exists: adopted, only differences are changed\n", br)
	} else {
		stp, delay := 1, 0
		if n.Bridge != nil {
			if n.Bridge.STP == "off" {
				stp = 0
			}
			fmt.Sscan(n.Bridge.Delay, &delay)
		}
		fmt.Fprintf(&b, "ip link add %s type bridge stp_state %d forward_delay %d\n", br, stp, delay*100)
	}
	if n.MAC != nil && n.MAC.Address != "" {
		fmt.Fprintf(&b, "ip link set %s address %s\n", br, n.MAC.Address)
	}
	if n.MTU != nil && n.MTU.Size != 0 {
		fmt.Fprintf(&b, "ip link set %s mtu %d\n", br, n.MTU.Size)
	}
	v6 := len(n.IPsOf("ipv6")) > 0
	fmt.Fprintf(&b, "sysctl -w net.ipv6.conf.%s.accept_ra=0 net.ipv6.conf.%s.autoconf=0 net.ipv6.conf.%s.disable_ipv6=%d\n", br, br, br, map[bool]int{true: 0, false: 1}[v6])
	for _, ip := range n.IPs {
		p, err := netxml.IPNet(ip)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "ip addr add %s dev %s\n", p, br)
	}
	fmt.Fprintf(&b, "ip link set %s up\n", br)
	for _, r := range n.Routes {
		fmt.Fprintf(&b, "ip route add %s/%s via %s dev %s", r.Address, routePrefix(r.Prefix, r.Netmask), r.Gateway, br)
		if r.Metric != "" {
			fmt.Fprintf(&b, " metric %s", r.Metric)
		}
		b.WriteString("\n")
	}
	switch n.ForwardMode() {
	case "nat", "route", "open":
		b.WriteString("sysctl -w net.ipv4.ip_forward=1\n")
		if v6 {
			b.WriteString("sysctl -w net.ipv6.conf.all.forwarding=1\n")
		}
	}
	plan, err := firewall.PlanFor(n)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "# firewall (%s)\n", h.fw.Name())
	b.WriteString(renderFirewall(h.fw.Name(), plan))
	if dnsmasq.Needed(n) {
		b.WriteString("# dnsmasq\n")
		b.WriteString(strings.Join(h.dns.Argv(n.Name), " ") + "\n")
		files, err := h.dns.PlannedFiles(n)
		if err != nil {
			return "", err
		}
		paths := make([]string, 0, len(files))
		for p := range files {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			fmt.Fprintf(&b, "# file %s\n%s", p, files[p])
			if files[p] != "" && !strings.HasSuffix(files[p], "\n") {
				b.WriteString("\n")
			}
		}
	}
	return b.String(), nil
}

func routePrefix(prefix uint, netmask string) string {
	if netmask != "" {
		if m := net.ParseIP(netmask).To4(); m != nil {
			ones, _ := net.IPv4Mask(m[0], m[1], m[2], m[3]).Size()
			return fmt.Sprint(ones)
		}
	}
	return fmt.Sprint(prefix)
}

// renderFirewall prints the plan as the commands of the active backend.
func renderFirewall(backend string, p *firewall.Plan) string {
	switch backend {
	case "nftables":
		return firewall.RenderNft(p)
	case "iptables":
		return firewall.RenderIptables(p)
	default:
		return fmt.Sprintf("# no text rendering for the %s backend\n", backend)
	}
}

// checkForeignModes handles the forward modes whose devices vnet does not
// own: an existing host bridge (mode='bridge' with <bridge name>) or a
// macvtap device pool (bridge/private/vepa/passthrough with <interface>s).
// Starting such a network creates nothing (no bridge, firewall or dnsmasq, as
// in libvirt): it checks that the devices exist. Guests attach at their own
// start. hostdev (PCI passthrough) needs a hypervisor and is refused.
func checkForeignModes(n *netxml.Network) error {
	switch n.ForwardMode() {
	case "bridge", "private", "vepa", "passthrough":
		if n.VirtualPort != nil && n.VirtualPort.Params != nil && n.VirtualPort.Params.OpenVSwitch != nil {
			return netxml.Errorf(netxml.KindUnsupported, "network '%s': Open vSwitch bridges are not supported", n.Name)
		}
		return network.CheckHostLinks(n)
	default:
		return netxml.Errorf(netxml.KindUnsupported, "forward mode '%s' of network '%s' is not supported: vnet manages no PCI device assignment", n.ForwardMode(), n.Name)
	}
}

// checkUnsupported refuses, before anything changes, the parts of a
// bridge-owning network that would need host state vnet does not manage yet,
// rather than starting the network without them.
func checkUnsupported(n *netxml.Network) error {
	switch {
	case n.Bandwidth != nil:
		return netxml.Errorf(netxml.KindUnsupported, "network '%s': network-wide <bandwidth> (tc shaping on the bridge) is not supported yet", n.Name)
	case n.Domain != nil && n.Domain.Register == "yes":
		return netxml.Errorf(netxml.KindUnsupported, "network '%s': <domain register='yes'> (registering guest names with the host's resolver) is not supported yet", n.Name)
	case n.Bridge != nil && n.Bridge.MACTableManager == "libvirt":
		return netxml.Errorf(netxml.KindUnsupported, "network '%s': <bridge macTableManager='libvirt'> is not supported yet", n.Name)
	}
	return nil
}
