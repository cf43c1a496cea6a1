package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"vnet/daemon/api"
	"vnet/doctor"
	netxml "vnet/xml"
)

// doctorHost is what net-doctor needs from a Host beyond the Host
// interface: the machine's readers and the pids of vnet's own processes.
// The real host implements it; a host without it (the test driver) has
// nothing to diagnose.
type doctorHost interface {
	doctorHost() doctor.Host
	// dnsmasqPid returns the pid of the network's dnsmasq (0: none).
	dnsmasqPid(name string) int
	// upstreams returns the servers the network's dnsmasq forwards to.
	upstreams(n *netxml.Network) []netip.AddrPort
}

func (h *realHost) doctorHost() doctor.Host                      { return &doctor.Live{} }
func (h *realHost) dnsmasqPid(name string) int                   { return h.dns.Pid(name) }
func (h *realHost) upstreams(n *netxml.Network) []netip.AddrPort { return h.dns.Upstreams(n) }

// withPortOwners adds to a dnsmasq start failure over a port in use the
// processes that hold the network's DNS/DHCP ports (dnsmasq itself only
// says "Address already in use").
func (h *realHost) withPortOwners(n *netxml.Network, err error) error {
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		return err
	}
	live := &doctor.Live{}
	socks, serr := live.Sockets([]uint16{53, 67, 547}, []int{os.Getpid()})
	if serr != nil {
		return err
	}
	// Other networks' dnsmasqs share 0.0.0.0:67 (SO_REUSEADDR, bound to
	// their bridge): they are not in the way.
	ourDir := ""
	if argv := h.dns.Argv(n.Name); len(argv) > 1 {
		ourDir = filepath.Dir(strings.TrimPrefix(argv[1], "--conf-file="))
	}
	var held []string
	for _, s := range doctor.PortConflicts(socks, doctorNetwork(n, false)) {
		if s.Comm == "dnsmasq" && ourDir != "" {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.Pid))
			if strings.Contains(string(cmd), "--conf-file="+ourDir+"/") {
				continue
			}
		}
		held = append(held, fmt.Sprintf("%s %s is held by %s", s.Proto, s.Local, doctor.DescribeOwner(s)))
	}
	if len(held) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(held, "; "))
}

// Doctor runs net-doctor's checks for the network ref, or for every active
// network when ref is empty, and returns every result (passes too). An
// inactive network named by ref gets the checks that matter before a start
// (firewall, port owners, overlapping routes, resources). It changes
// nothing on the host but for the DHCP/DNS probe's throwaway veth.
func (m *Manager) Doctor(ctx context.Context, ref string) (api.DoctorReport, error) {
	// One diagnosis at a time: each probe plugs a veth into the bridge, and
	// the read-only socket lets anyone ask.
	doctorRuns.Lock()
	defer doctorRuns.Unlock()
	dh, _ := m.host.(doctorHost)
	nets, own, err := m.doctorNetworks(ref, dh)
	if err != nil {
		return api.DoctorReport{}, err
	}
	if dh == nil {
		// No report rather than an empty one, which would read as "no
		// problems found".
		return api.DoctorReport{}, netxml.Errorf(netxml.KindOperationUnsupported,
			"net-doctor diagnoses the host's networking, which this daemon does not manage (test driver or session daemon)")
	}
	report := api.DoctorReport{Checks: []api.DoctorCheck{}}
	// FRR's view of the overlays (vtysh: only here, not in the live
	// warnings, which run on every route or firewall event).
	if rh, ok := m.host.(*realHost); ok {
		rh.doctorOverlays(nets, func(name string) *netxml.Network {
			live, _ := m.liveOverlay(name)
			return live
		})
	}
	for _, r := range doctor.Run(ctx, dh.doctorHost(), nets, doctor.Options{Probe: true, OwnPids: own}) {
		report.Checks = append(report.Checks, api.DoctorCheck(r))
	}
	return report, nil
}

// doctorRuns serialises Doctor calls.
var doctorRuns sync.Mutex

// doctorNetworks describes the networks to check, and the pids of vnet's
// processes (vnetd, every network's dnsmasq).
func (m *Manager) doctorNetworks(ref string, dh doctorHost) ([]doctor.Network, []int, error) {
	var objs []*netObj
	if ref != "" {
		o, err := m.lookup(ref, "any")
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, o)
	}
	own := []int{os.Getpid()}
	m.mu.RLock()
	type item struct {
		def    *netxml.Network
		active bool
	}
	var items []item
	for _, o := range m.byName {
		if o.live != nil && dh != nil {
			own = append(own, dh.dnsmasqPid(o.name))
		}
		if ref == "" && o.live != nil {
			items = append(items, item{o.live, true})
		}
	}
	for _, o := range objs {
		if d := o.current(); d != nil {
			items = append(items, item{d, o.live != nil})
		}
	}
	m.mu.RUnlock()
	sort.Slice(items, func(i, j int) bool { return items[i].def.Name < items[j].def.Name })
	var nets []doctor.Network
	for _, it := range items {
		if !it.def.OwnsBridge() || it.def.BridgeName() == "" {
			continue
		}
		dn := doctorNetwork(it.def, it.active)
		if dn.DNS && dh != nil {
			dn.Upstreams = dh.upstreams(it.def)
		}
		if it.active && dh != nil {
			dn.DnsmasqPid = dh.dnsmasqPid(it.def.Name)
			for _, p := range m.ports.of(it.def.Name) {
				if p.TAP != nil && p.TAP.Dev != "" {
					dn.TAPs = append(dn.TAPs, p.TAP.Dev)
				}
			}
		}
		nets = append(nets, dn)
	}
	return nets, own, nil
}

// doctorNetwork describes a network's definition for the checks.
func doctorNetwork(n *netxml.Network, active bool) doctor.Network {
	d := doctor.Network{
		Name: n.Name, Bridge: n.BridgeName(), Forward: n.ForwardMode(), ForwardDev: n.ForwardDev(),
		Active: active,
		DNS:    n.DNS == nil || n.DNS.Enable != "no",
	}
	for _, ip := range n.IPs {
		p, err := netxml.IPNet(ip)
		if err != nil {
			continue
		}
		d.Addrs = append(d.Addrs, p)
		if netxml.HasDHCP(ip) {
			if p.Addr().Is4() {
				d.DHCPv4 = true
				d.DHCPv4Pool = d.DHCPv4Pool || len(ip.DHCP.Ranges) > 0
			} else {
				d.DHCPv6 = true
			}
		}
	}
	if len(d.Addrs) == 0 {
		d.DNS = false // no dnsmasq without an address
	}
	if n.MTU != nil {
		d.MTU = int(n.MTU.Size)
	}
	return d
}
