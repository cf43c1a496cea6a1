package daemon

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"vnet/daemon/api"
	"vnet/network"
	"vnet/passt"
	netxml "vnet/xml"
)

// The session daemon (vnetd --session): one user's vnetd, without root. It
// runs only networks of vnet's forward mode 'user', which have nothing on
// the host but their ports: each port is a passt keeper (package passt)
// owning the port's UNIX socket and the guest's passt.

// sessionHost is the Host of a session daemon.
type sessionHost struct {
	passt *passt.Manager
}

var (
	_ Host     = (*sessionHost)(nil)
	_ portHost = (*sessionHost)(nil)
)

// Check implements Host: only user-mode networks, with port forwards the
// user may bind.
func (h *sessionHost) Check(n *netxml.Network) error {
	if n.ForwardMode() != "user" {
		return netxml.Errorf(netxml.KindOperationUnsupported, "network '%s' has forward mode '%s': a session vnetd runs only networks of forward mode 'user' (<vnet:forward mode='user'>); bridges need the system vnetd", n.Name, modeName(n))
	}
	if _, err := h.passt.Binary(); err != nil {
		return netxml.Errorf(netxml.KindOperationFailed, "network '%s': %s", n.Name, err.Error())
	}
	return checkPrivilegedPorts(n)
}

func modeName(n *netxml.Network) string {
	if m := n.ForwardMode(); m != "" {
		return m
	}
	return "none (isolated)"
}

// checkPrivilegedPorts refuses host ports below the kernel's
// net.ipv4.ip_unprivileged_port_start unless vnetd may bind them
// (CAP_NET_BIND_SERVICE): passt, run as this user, could not.
func checkPrivilegedPorts(n *netxml.Network) error {
	if n.User == nil || hasBindCap() {
		return nil
	}
	limit := 1024
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			limit = v
		}
	}
	for _, pf := range n.User.PortForwards {
		for _, r := range pf.Ranges {
			if r.Exclude != "yes" && int(r.Start) < limit {
				return netxml.Errorf(netxml.KindOperationFailed, "network '%s': port forward %s %d: ports below %d need CAP_NET_BIND_SERVICE, which this vnetd does not have", n.Name, pf.Proto, r.Start, limit)
			}
		}
	}
	return nil
}

// hasBindCap reports whether the process has CAP_NET_BIND_SERVICE in its
// effective set.
func hasBindCap() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<10) != 0 // CAP_NET_BIND_SERVICE
		}
	}
	return false
}

// Start implements Host: a user-mode network has nothing on the host.
func (h *sessionHost) Start(n *netxml.Network) error { return h.Check(n) }

// Converge implements Host.
func (h *sessionHost) Converge(n *netxml.Network) ([]string, error) { return nil, nil }

// Verify implements Host.
func (h *sessionHost) Verify(n *netxml.Network) ([]string, error) { return nil, nil }

// Remove implements Host.
func (h *sessionHost) Remove(n *netxml.Network) error { return nil }

// Forget implements Host.
func (h *sessionHost) Forget(string) error { return nil }

// LinkExists implements Host: a session daemon makes no links.
func (h *sessionHost) LinkExists(string) bool { return false }

// Detach implements Host: the keepers keep running.
func (h *sessionHost) Detach() { h.passt.Detach() }

// Leases implements Host. passt keeps no lease database (it hands every
// port's guest the network's one address), so there is nothing to list: an
// error says so rather than an empty list that reads as "no guest asked".
func (h *sessionHost) Leases(n *netxml.Network) ([]api.Lease, error) {
	return nil, netxml.Errorf(netxml.KindOperationUnsupported,
		"network '%s' is a user-mode network: passt keeps no DHCP leases (each port's guest gets the network's address, shown by net-dumpxml)", n.Name)
}

// Plan implements Host.
func (h *sessionHost) Plan(n *netxml.Network) (string, error) {
	args, err := passt.Args(n)
	if err != nil {
		return "", err
	}
	return "# per port: a passt keeper on <run-dir>/passt/UUID.socket running\npasst " + strings.Join(args, " ") + " --fd 3\n", nil
}

// CheckPort implements portHost.
func (h *sessionHost) CheckPort(n *netxml.Network, p *netxml.Port) error {
	if err := h.passt.Check(p.UUID); err != nil {
		return netxml.Errorf(netxml.KindOperationFailed, "%s", err.Error())
	}
	return checkPrivilegedPorts(n)
}

// EnsurePort implements portHost: the port's keeper runs (started or
// adopted) while its network is active (n not nil), and is stopped while it
// is not: a destroyed network forwards no host ports.
func (h *sessionHost) EnsurePort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	if p.Passt == nil {
		return nil, nil
	}
	if n == nil {
		if h.passt.Verify(p.UUID) != nil {
			return nil, nil // not running
		}
		if err := h.passt.Stop(p.UUID); err != nil {
			return nil, netxml.Errorf(netxml.KindOperationFailed, "%s", err.Error())
		}
		return []string{fmt.Sprintf("passt of port %s stopped", p.UUID)}, nil
	}
	args, err := passt.Args(n)
	if err != nil {
		return nil, err
	}
	fixed, err := h.passt.Ensure(p.UUID, args)
	if err != nil {
		return nil, netxml.Errorf(netxml.KindOperationFailed, "%s", err.Error())
	}
	return fixed, nil
}

// VerifyPort implements portHost.
func (h *sessionHost) VerifyPort(n *netxml.Network, p *netxml.Port) ([]string, error) {
	if p.Passt == nil {
		return nil, nil
	}
	return h.passt.Verify(p.UUID), nil
}

// DeletePort implements portHost.
func (h *sessionHost) DeletePort(p *netxml.Port) error {
	if p.Passt == nil {
		return nil
	}
	return h.passt.Stop(p.UUID)
}

// OpenPort implements portHost: no TAPs in a session.
func (h *sessionHost) OpenPort(*netxml.Network, *netxml.Port, bool) (*os.File, error) {
	return nil, fmt.Errorf("a session vnetd makes no TAPs")
}

// FreeTAPName implements portHost.
func (h *sessionHost) FreeTAPName(func(string) bool) (string, error) {
	return "", fmt.Errorf("a session vnetd makes no TAPs")
}

// CheckBandwidth implements portHost.
func (h *sessionHost) CheckBandwidth(*netxml.Network, *netxml.Port, []network.FloorPort) error {
	return nil
}

// PlugFloor implements portHost.
func (h *sessionHost) PlugFloor(*netxml.Network, *netxml.Port, []network.FloorPort) ([]string, error) {
	return nil, nil
}

// UnplugFloor implements portHost.
func (h *sessionHost) UnplugFloor(*netxml.Network, *netxml.Port, []network.FloorPort) ([]string, error) {
	return nil, nil
}

// prepareUserPort completes a port of a user-mode network: no plug (there
// is no bridge), the passt socket for QEMU.
func (m *Manager) prepareUserPort(n *netxml.Network, p *netxml.Port) error {
	unsupported := func(what string) error {
		return netxml.Errorf(netxml.KindUnsupported, "%s is not supported on network '%s' (forward mode 'user': each port is a passt socket)", what, n.Name)
	}
	switch {
	case p.TAP != nil:
		return unsupported("<vnet:tap>")
	case p.Bandwidth != nil:
		return unsupported("<bandwidth>")
	case p.VLAN != nil:
		return unsupported("<vlan>")
	case p.VirtualPort != nil:
		return unsupported("<virtualport>")
	}
	sh, ok := m.host.(*sessionHost)
	if !ok {
		return netxml.Errorf(netxml.KindOperationUnsupported, "network '%s' has forward mode 'user': it runs in a session vnetd", n.Name)
	}
	p.Passt = &netxml.Passt{Socket: sh.passt.Socket(p.UUID)}
	return nil
}
