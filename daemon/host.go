package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"vnet/daemon/api"
	"vnet/dnsmasq"
	"vnet/firewall"
	"vnet/network"
	"vnet/network/frr"
	netxml "vnet/xml"
)

// Host is what the manager needs from the machine: everything that brings a
// network's desired state into being or removes it. The real implementation
// drives netlink, /proc/sys, the firewall and dnsmasq through one converge per
// network; unit tests use a fake.
type Host interface {
	// Check fails when the network cannot start on this host (a subnet already
	// routed or addressed elsewhere, …). It changes nothing.
	Check(n *netxml.Network) error
	// Start brings the network up: Converge, and when that fails, it removes
	// what this call created, leaving the host as it was.
	Start(n *netxml.Network) error
	// Converge brings the network's bridge, sysctls, firewall rules and
	// dnsmasq to their desired state, changing only what differs: on a
	// healthy network it changes nothing (no flapped bridge, no replaced
	// rules, no restarted dnsmasq). It returns what it found wrong and
	// fixed. Adoption at daemon start, drift repair and net-update use it.
	Converge(n *netxml.Network) (fixed []string, err error)
	// Verify describes what differs from the network's definition (nothing =
	// healthy): what Converge would fix. It changes nothing.
	Verify(n *netxml.Network) ([]string, error)
	// Remove tears down exactly what Start creates for the network.
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
	// Plan returns, as commands and files, the steps Start would run on
	// this host now (--dry-run). It changes nothing.
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

	// portFloors returns the floor classes of the network's ports (set
	// by the manager, which owns the ports; nil: none).
	portFloors func(n *netxml.Network) []network.FloorPort

	// overlay is this host's overlay settings (nil: none; networks with
	// <vnet:overlay> are refused), read from overlayPath at start.
	overlay     *frr.Settings
	overlayPath string
	// stamps spares the periodic check reading dnsmasq's files while
	// they are unchanged (nil: always read).
	stamps *fileStamps
	// conflicts spares the conflict check of a start its dumps while
	// nothing on the host overlaps (nil: always dump).
	conflicts *network.HostIndex

	// remote holds, per overlay network, the DHCP names of guests on
	// other hosts (overlay_names.go), served by this host's dnsmasq.
	// namesDir keeps them across vnetd restarts ("": only in memory);
	// loaded tells which networks' file was read.
	namesMu  sync.Mutex
	remote   map[string][]remoteName
	loaded   map[string]bool
	namesDir string
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
	network.FlushRetired()
	if err := <-ch; err != nil {
		h.log.Warn("deleting bridge", "bridge", name, "err", err)
	}
}

// retire takes the network's bridge out of service now and lets the kernel
// finish deleting it in the background. A link of that name vnet did not
// create for the network is left alone.
func (h *realHost) retire(name, networkName string) error {
	h.waitRetired(name)
	done, err := network.RetireBridge(name, networkName)
	if errors.Is(err, network.ErrNotOurs) {
		h.log.Warn("leaving a link vnet did not create", "network", networkName, "err", err)
		return nil
	}
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
	if n.ForwardMode() == "user" {
		return netxml.Errorf(netxml.KindOperationUnsupported, "network '%s' has forward mode 'user': it runs in its user's session vnetd (vnetd --session), not in the system one", n.Name)
	}
	if !n.OwnsBridge() {
		return nil
	}
	return h.conflicts.CheckHostConflicts(n)
}

// converged is what one converge did, for Start's rollback.
type converged struct {
	plan          *firewall.Plan
	createdBridge bool               // this call created the bridge
	vxlan         *network.VXLANSpec // the overlay's VXLAN device (nil: none)
	appliedFW     bool               // this call applied the firewall rules
}

// converge brings every part of the network to its desired state through ex,
// in order bridge → (overlay: VXLAN device) → sysctls → firewall → bandwidth →
// dnsmasq → (overlay: FRR). Each part reads the live
// state (read-only) and issues only the changes that are needed as steps:
// with network.Apply they are made (start, adoption, repair), with
// network.Record only recorded (verify, --dry-run). There is no other code
// path that changes a network's host state.
//
// pass, when not nil, is shared by the checks of every network.
func (h *realHost) converge(n *netxml.Network, ex network.Executor, pass *hostPass) (c converged, err error) {
	var fwPass *firewall.Pass
	if pass != nil {
		fwPass = pass.fw
	}
	if !n.OwnsBridge() {
		return c, checkForeignModes(n)
	}
	if err := checkUnsupported(n); err != nil {
		return c, err
	}
	if n.Bandwidth != nil {
		if err := network.CheckBandwidthSupport(n.BridgeName(), n.Bandwidth, h.bandwidthOptions(n)); err != nil {
			return c, fmt.Errorf("network '%s': %w", n.Name, err)
		}
	}
	// An overlay network is served as this host's view of it (overlay
	// MTU, DHCP slice); every part below converges that view.
	if n, c.vxlan, err = h.overlayView(n); err != nil {
		return c, err
	}
	if c.plan, err = firewall.PlanFor(n); err != nil {
		return c, err
	}
	h.waitRetired(n.BridgeName())
	t := newStepTimer()
	defer func() {
		h.log.Debug("converge network", "network", n.Name, "live", ex.Live(), "steps", t.String(), "err", err)
	}()

	// newBridge: this call created the bridge (or, recording, would).
	newBridge, err := network.ConvergeBridge(n, ex)
	c.createdBridge = newBridge && ex.Live()
	if err != nil {
		return c, err
	}
	t.step("bridge")
	if c.vxlan != nil {
		if err = network.ConvergeVXLAN(*c.vxlan, ex); err != nil {
			return c, fmt.Errorf("network '%s': %w", n.Name, err)
		}
		t.step("vxlan")
	}
	if err = network.ConvergeForwarding(n, ex); err != nil {
		return c, err
	}
	t.step("sysctl")
	if err = h.convergeFirewall(n, c.plan, ex, fwPass, newBridge, &c.appliedFW); err != nil {
		return c, err
	}
	t.step("firewall")
	// Last, as libvirt does: the bridge's tc state shares the root htb
	// qdisc with the firewall's DHCP checksum fix, which it keeps.
	if n.Bandwidth != nil {
		if err = network.ConvergeBandwidth(n.BridgeName(), n.Bandwidth, h.bandwidthOptions(n), ex); err != nil {
			return c, fmt.Errorf("network '%s': %w", n.Name, err)
		}
		t.step("bandwidth")
	}
	if dnsmasq.Needed(n) {
		if err = h.convergeDnsmasq(n, ex, newBridge); err != nil {
			return c, err
		}
		t.step("dnsmasq")
	}
	// FRR's configuration is the host's, not the network's: one check of
	// every network converges it once, not once per overlay.
	if c.vxlan != nil && (pass == nil || !pass.frrDone) {
		h.convergeFRR(n, ex)
		if pass != nil {
			pass.frrDone = true
		}
		t.step("frr")
	}
	return c, nil
}

// convergeFirewall applies the network's rules when they differ from the
// plan, or always on a new bridge: rules match interfaces by index, so a
// re-created bridge needs them re-applied even if they are all still there.
func (h *realHost) convergeFirewall(n *netxml.Network, plan *firewall.Plan, ex network.Executor, pass *firewall.Pass, newBridge bool, applied *bool) error {
	var problem string
	if !newBridge {
		var verr error
		if pv, ok := h.fw.(firewall.PassVerifier); ok && pass != nil {
			verr = pv.VerifyPass(plan, pass)
		} else {
			verr = h.fw.Verify(plan)
		}
		if verr == nil {
			return nil
		}
		problem = verr.Error()
	}
	var detail string
	if !ex.Live() {
		// Only a recording needs the text: Describe reads the live
		// rules, which a start or repair need not pay for twice.
		d, err := h.fw.Describe(plan)
		if err != nil {
			return fmt.Errorf("network '%s': firewall: %w", n.Name, err)
		}
		detail = d
	}
	return ex.Run(network.Step{
		Problem: problem,
		Cmd:     fmt.Sprintf("# firewall (%s): replace the rules of network '%s' in one transaction", h.fw.Name(), n.Name),
		Detail:  detail,
		Do: func() error {
			// The backends name what they touched, never the network.
			if err := h.fw.Apply(plan); err != nil {
				return fmt.Errorf("network '%s': firewall: %w", n.Name, err)
			}
			*applied = true
			return nil
		},
	})
}

// convergeDnsmasq starts the network's dnsmasq when it does not run, adopts
// one that runs unsupervised (daemon restart), rewrites files that differ
// from the definition (dnsmasq then reloads or restarts), and restarts one
// that served a bridge since re-created (newBridge): its DHCP socket and its
// netlink filter name the old bridge's index.
func (h *realHost) convergeDnsmasq(n *netxml.Network, ex network.Executor, newBridge bool) error {
	files, err := h.dns.PlannedFiles(n)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	start := func() error { return h.withPortOwners(n, h.dns.Start(n)) }
	argv := strings.Join(h.dns.Argv(n.Name), " ")
	pid := h.dns.Pid(n.Name)
	if pid == 0 {
		return ex.Run(network.Step{Problem: fmt.Sprintf("dnsmasq of network '%s' not running", n.Name), Cmd: argv, Detail: fileDetail(paths, files), Do: start})
	}
	if newBridge {
		return ex.Run(network.Step{
			Problem: fmt.Sprintf("dnsmasq of network '%s' serves a bridge that was re-created", n.Name),
			Cmd:     fmt.Sprintf("# dnsmasq (pid %d): restart it for the new bridge", pid),
			Do: func() error {
				if err := h.dns.Stop(n.Name); err != nil {
					return err
				}
				return start()
			},
		})
	}
	var differ []string
	for _, p := range paths {
		if !h.stamps.same(p, files[p]) {
			differ = append(differ, p)
		}
	}
	if len(differ) > 0 {
		return ex.Run(network.Step{
			Problem: fmt.Sprintf("dnsmasq of network '%s': %s differs from the definition", n.Name, strings.Join(differ, ", ")),
			Cmd:     fmt.Sprintf("# dnsmasq (pid %d): rewrite %s, reload or restart", pid, strings.Join(differ, ", ")),
			Detail:  fileDetail(differ, files),
			Do:      start,
		})
	}
	if !h.dns.Supervised(n.Name) {
		// Not drift: a dnsmasq left running by an earlier daemon.
		return ex.Run(network.Step{Cmd: fmt.Sprintf("# dnsmasq (pid %d) already serves the network: adopt it", pid), Do: start})
	}
	return nil
}

// fileDetail prints files (by path, in the order of paths) for a dry run.
func fileDetail(paths []string, files map[string]string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "# file %s\n%s", p, files[p])
		if files[p] != "" && !strings.HasSuffix(files[p], "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// run returns the executor that changes the host for network n, logging
// every step (at debug level: the end-to-end test compares these lines with
// the dry run).
func (h *realHost) run(n *netxml.Network) *network.Apply {
	return &network.Apply{OnStep: func(s network.Step) {
		h.log.Debug("host step", "network", n.Name, "step", s.Cmd)
	}}
}

// Start implements Host.
func (h *realHost) Start(n *netxml.Network) error {
	ex := h.run(n)
	c, err := h.converge(n, ex, nil)
	logChanges(h.log, n, ex.Ran)
	if err == nil {
		return nil
	}
	// Undo in reverse order exactly what this start created.
	if c.appliedFW {
		if rerr := h.fw.Remove(c.plan); rerr != nil {
			h.log.Warn("rollback: remove firewall rules", "network", n.Name, "err", rerr)
		}
	}
	if c.vxlan != nil && c.createdBridge {
		if rerr := network.DeleteVXLAN(c.vxlan.Name, n.Name); rerr != nil {
			h.log.Warn("rollback: delete vxlan device", "network", n.Name, "err", rerr)
		}
	}
	if c.createdBridge {
		if rerr := network.DeleteBridge(n.BridgeName(), n.Name); rerr != nil {
			h.log.Warn("rollback: delete bridge", "network", n.Name, "err", rerr)
		}
	}
	return err
}

// Converge implements Host.
func (h *realHost) Converge(n *netxml.Network) ([]string, error) {
	ex := h.run(n)
	_, err := h.converge(n, ex, nil)
	logChanges(h.log, n, ex.Ran)
	return network.Problems(ex.Ran), err
}

// Verify implements Host: Converge with the recording executor.
func (h *realHost) Verify(n *netxml.Network) ([]string, error) {
	var rec network.Record
	_, err := h.converge(n, &rec, nil)
	return network.Problems(rec.Steps), err
}

// hostPass is what the converges of one check of every network share:
// the host's links, addresses and sysctls, the nftables generation. Each
// only ever confirms a part as healthy (see network.Snapshot).
type hostPass struct {
	net *network.Snapshot
	fw  *firewall.Pass
	// frrDone: FRR's host-wide configuration was converged in this pass.
	frrDone bool
}

func newHostPass() *hostPass {
	snap := network.NewSnapshot()
	return &hostPass{net: snap, fw: &firewall.Pass{LinkIndex: snap.LinkIndex}}
}

// convergePass implements passHost.
func (h *realHost) convergePass(n *netxml.Network, pass *hostPass) ([]string, error) {
	ex := h.run(n)
	ex.Pass = pass.net
	_, err := h.converge(n, ex, pass)
	logChanges(h.log, n, ex.Ran)
	return network.Problems(ex.Ran), err
}

// verifyPass implements passHost.
func (h *realHost) verifyPass(n *netxml.Network, pass *hostPass) ([]string, error) {
	rec := network.Record{Pass: pass.net}
	// A verification only looks: it must not mark FRR converged for the
	// networks of this pass that act.
	_, err := h.converge(n, &rec, &hostPass{net: pass.net, fw: pass.fw})
	return network.Problems(rec.Steps), err
}

// logChanges logs the host-wide settings a converge changed (Step.Global:
// forwarding sysctls): they outlive the network, so an admin must be able to
// find who changed them.
func logChanges(log *slog.Logger, n *netxml.Network, ran []network.Step) {
	for _, s := range ran {
		if s.Global {
			log.Info("changed host setting", "network", n.Name, "step", s.Cmd)
		}
	}
}

// Remove implements Host.
func (h *realHost) Remove(n *netxml.Network) error {
	var errs []error
	t := newStepTimer()
	defer func() { h.log.Debug("remove network", "network", n.Name, "steps", t.String()) }()
	if err := h.dns.Stop(n.Name); err != nil {
		errs = append(errs, err)
	}
	if files, err := h.dns.PlannedFiles(n); err == nil {
		for p := range files {
			h.stamps.forget(p)
		}
	}
	t.step("dnsmasq")
	if n.OwnsBridge() {
		if plan, err := firewall.PlanFor(n); err != nil {
			errs = append(errs, err)
		} else if err := h.fw.Remove(plan); err != nil {
			errs = append(errs, fmt.Errorf("network '%s': firewall: %w", n.Name, err))
		}
		t.step("firewall")
		if n.Overlay != nil {
			if err := network.DeleteVXLAN(network.VXLANName(n.Overlay.VNI), n.Name); err != nil {
				errs = append(errs, fmt.Errorf("network '%s': %w", n.Name, err))
			}
			t.step("vxlan")
			h.setRemoteNames(n.Name, nil) // and their file
		}
		if err := h.retire(n.BridgeName(), n.Name); err != nil {
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

// Plan implements Host: converge with the recording executor, so it lists
// exactly the steps a start would run on this host now.
func (h *realHost) Plan(n *netxml.Network) (string, error) {
	if !n.OwnsBridge() {
		if err := checkForeignModes(n); err != nil {
			return "", err
		}
		return fmt.Sprintf("# forward mode '%s': guests use host devices directly; nothing changes on the host at start\n", n.ForwardMode()), nil
	}
	var rec network.Record
	if _, err := h.converge(n, &rec, nil); err != nil {
		return "", err
	}
	if len(rec.Steps) == 0 {
		return fmt.Sprintf("# network '%s' is in place: nothing to change\n", n.Name), nil
	}
	return network.Commands(rec.Steps), nil
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

// bandwidthOptions are the tc options of the network's bridge: libvirt's
// swapped directions, and the floor classes of its ports, so that a start
// or a re-created bridge has them all.
func (h *realHost) bandwidthOptions(n *netxml.Network) network.BandwidthOptions {
	var floors []network.FloorPort
	if h.portFloors != nil {
		floors = h.portFloors(n)
	}
	return network.NetworkBandwidthOptions(floors)
}

// checkUnsupported refuses, before anything changes, the parts of a
// bridge-owning network that would need host state vnet does not manage yet,
// rather than starting the network without them.
func checkUnsupported(n *netxml.Network) error {
	switch {
	case n.Domain != nil && n.Domain.Register == "yes":
		return netxml.Errorf(netxml.KindUnsupported, "network '%s': <domain register='yes'> (registering guest names with the host's resolver) is not supported yet", n.Name)
	case n.Bridge != nil && n.Bridge.MACTableManager == "libvirt":
		return netxml.Errorf(netxml.KindUnsupported, "network '%s': <bridge macTableManager='libvirt'> is not supported yet", n.Name)
	}
	return nil
}
